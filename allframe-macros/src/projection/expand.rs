//! Stage 3: writes the `Row` impl (name, key, indexed fields) and the
//! projection's registration.
//!
//! The registration requires the row type to implement `Projection`, so a
//! row without its `impl Projection` is reported at the struct's name by
//! that trait's own message. The key is turned into a string with
//! `ToString` at the key field's type, so a key that cannot be is reported
//! there.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{DeriveInput, parse_quote};

use super::check::Projection;
use crate::command::check::wire::wire_names;
use crate::schema::{fields_object, wire_name};

/// The `Row` impl and the registration.
pub(super) fn expand(projection: &Projection<'_>) -> TokenStream {
    let Projection {
        ident,
        name,
        key: (key, key_type),
        indexed,
        ..
    } = projection;
    let version = projection.version.unwrap_or(1);
    let private = quote!(::allframe::__private);
    // Clients name the key and the filters as they see the fields: by
    // their serde names.
    let renamed = wire_names(&projection.schema_attrs, projection.fields);
    let key_name = wire_name(&renamed, key);
    let indexed_names: Vec<String> = indexed
        .iter()
        .map(|field| wire_name(&renamed, field))
        .collect();
    let key_string = quote_spanned! {key_type.span()=>
        <#key_type as ::std::string::ToString>::to_string(&self.#key)
    };
    let entries = indexed.iter().zip(&indexed_names).map(|(field, name)| {
        quote! {
            if let ::core::option::Option::Some(__value) = #private::index_value(&self.#field) {
                __entries.push((#name, __value));
            }
        }
    });
    let count = indexed.len();
    let schema = fields_object(&projection.schema_attrs, projection.fields, &renamed);
    let row_name = ident.unraw().to_string();
    let registration = quote_spanned! {ident.span()=>
        #private::ProjectionRegistration::new::<#ident>(
            ::core::concat!(::core::module_path!(), "::", #row_name)
        )
    };
    quote! {
        impl #private::Row for #ident {
            const NAME: &'static str = #name;
            const KEY: &'static str = #key_name;
            const INDEXED_BY: &'static [&'static str] = &[#(#indexed_names),*];
            const VERSION: u32 = #version;

            fn key(&self) -> ::std::string::String {
                #key_string
            }

            fn index(&self) -> ::std::vec::Vec<(&'static str, ::std::string::String)> {
                let mut __entries = ::std::vec::Vec::with_capacity(#count);
                #(#entries)*
                __entries
            }

            fn schema() -> #private::WireSchema {
                #schema
            }
        }

        // Rows are answers too: a query's output type can hold them.
        impl #private::utoipa::PartialSchema for #ident {
            fn schema() -> #private::utoipa::openapi::RefOr<#private::utoipa::openapi::schema::Schema> {
                <Self as #private::Row>::schema().to_utoipa().0
            }
        }

        impl #private::utoipa::ToSchema for #ident {
            fn name() -> ::std::borrow::Cow<'static, str> {
                ::std::borrow::Cow::Borrowed(#row_name)
            }

            fn schemas(
                schemas: &mut ::std::vec::Vec<(
                    ::std::string::String,
                    #private::utoipa::openapi::RefOr<#private::utoipa::openapi::schema::Schema>,
                )>,
            ) {
                schemas.extend(<Self as #private::Row>::schema().to_utoipa().1);
            }
        }

        #private::inventory::submit! {
            #registration
        }
    }
}

/// A `Row` impl for a row whose attribute has mistakes, so the user's
/// `impl Projection` does not add errors of its own.
pub(super) fn stub(input: &DeriveInput) -> TokenStream {
    if !matches!(input.data, syn::Data::Struct(_)) {
        return TokenStream::new();
    }
    let ident = &input.ident;
    let mut generics = input.generics.clone();
    // Bounded on the supertraits, which come from derives that may be
    // missing; `for<'__a>` keeps a trivially false bound from being
    // rejected outright.
    generics.make_where_clause().predicates.push(parse_quote! {
        for<'__a> Self: ::allframe::__private::serde::Serialize
            + ::allframe::__private::serde::de::DeserializeOwned
            + ::core::marker::Send
            + ::core::marker::Sync
            + 'static
    });
    let (impl_generics, type_generics, where_clause) = generics.split_for_impl();
    let unreachable = quote!(::core::panic!("invalid #[projection]"));
    quote! {
        impl #impl_generics ::allframe::__private::Row for #ident #type_generics #where_clause {
            const NAME: &'static str = "invalid";
            const KEY: &'static str = "invalid";
            const INDEXED_BY: &'static [&'static str] = &[];

            fn key(&self) -> ::std::string::String {
                #unreachable
            }

            fn index(&self) -> ::std::vec::Vec<(&'static str, ::std::string::String)> {
                #unreachable
            }
        }
    }
}
