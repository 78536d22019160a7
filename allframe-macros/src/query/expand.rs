//! Stage 3: writes `impl ::allframe::Query` from the checked model,
//! or a stub impl when checking failed.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::{Data, DeriveInput, parse_quote};

use super::check::Query;

/// The `Query` impl for a checked query.
pub(super) fn expand(query: &Query<'_>) -> TokenStream {
    let Query { ident, name, .. } = query;
    // A struct missing a supertrait derive is reported at its name.
    let header = quote_spanned!(ident.span()=> impl ::allframe::Query for #ident);
    let wire_field = (!query.wire_names.is_empty()).then(|| {
        let (rust, wire): (Vec<_>, Vec<_>) = query.wire_names.iter().cloned().unzip();
        quote! {
            fn wire_field(rust_field: &str) -> &str {
                match rust_field {
                    #(#rust => #wire,)*
                    _ => rust_field,
                }
            }
        }
    });
    let schema = crate::schema::fields_object(&query.schema_attrs, query.fields, &query.wire_names);
    quote! {
        #header {
            const NAME: &'static str = #name;

            #wire_field

            fn schema() -> ::allframe::__private::WireSchema {
                #schema
            }
        }
    }
}

/// An impl emitted beside the errors so uses of the type as a query do not
/// also report "not a query". Unions get none: they cannot have the
/// supertraits.
pub(super) fn stub(input: &DeriveInput) -> TokenStream {
    if let Data::Union(_) = input.data {
        return TokenStream::new();
    }
    let ident = &input.ident;
    let mut generics = input.generics.clone();
    // Bounded on the supertraits, which come from derives that may be
    // missing; `for<'__a>` keeps a trivially false bound from being
    // rejected outright.
    generics.make_where_clause().predicates.push(parse_quote! {
        for<'__a> Self: ::allframe::__private::serde::de::DeserializeOwned
            + ::allframe::__private::garde::Validate<Context = ()>
            + ::core::marker::Send
            + ::core::marker::Sync
            + 'static
    });
    let (impl_generics, type_generics, where_clause) = generics.split_for_impl();
    quote! {
        impl #impl_generics ::allframe::Query for #ident #type_generics #where_clause {
            const NAME: &'static str = "invalid";

            fn schema() -> ::allframe::__private::WireSchema {
                ::core::panic!("invalid #[query]")
            }
        }
    }
}
