//! Stage 3: writes `impl ::allframe::Command` from the checked model, or a
//! stub impl when checking failed. The struct itself is re-emitted as
//! written by [`super::attribute`].

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Type, parse_quote};

use super::check::Command;

/// The `Command` impl for a checked command.
pub(super) fn expand(command: &Command<'_>) -> TokenStream {
    let Command {
        ident,
        name,
        create,
        aggregate,
        ..
    } = command;
    // Type errors land on the user's tokens: a struct missing a supertrait
    // derive on its name, a non-aggregate on the `aggregate` path, an id
    // that is not `ToString` on the field's type.
    let header = quote_spanned!(ident.span()=> impl ::allframe::Command for #ident);
    let aggregate = quote_spanned!(aggregate.span()=> type Aggregate = #aggregate;);
    let aggregate_id = match command.id {
        Some(field) => {
            let field_ident = &field.ident;
            let to_string = quote_spanned!(field.ty.span()=>
                ::std::string::ToString::to_string(&self.#field_ident)
            );
            quote!(::core::option::Option::Some(#to_string))
        }
        None => quote!(::core::option::Option::None),
    };
    let wire_field = (!command.wire_names.is_empty()).then(|| {
        let (rust, wire): (Vec<_>, Vec<_>) = command.wire_names.iter().cloned().unzip();
        quote! {
            fn wire_field(rust_field: &str) -> &str {
                match rust_field {
                    #(#rust => #wire,)*
                    _ => rust_field,
                }
            }
        }
    });
    let schema =
        crate::schema::fields_object(&command.schema_attrs, command.fields, &command.wire_names);
    quote! {
        #header {
            const NAME: &'static str = #name;
            const CREATE: bool = #create;
            #aggregate

            fn aggregate_id(&self) -> ::core::option::Option<::std::string::String> {
                #aggregate_id
            }

            #wire_field

            fn schema() -> ::allframe::__private::WireSchema {
                #schema
            }
        }
    }
}

/// An impl emitted beside the errors so uses of the type as a command do
/// not also report "not a command". Without a usable aggregate it names a
/// private empty one. Unions get no stub: they cannot have the supertraits.
pub(super) fn stub(input: &DeriveInput, aggregate: Option<&Type>) -> TokenStream {
    if let Data::Union(_) = input.data {
        return TokenStream::new();
    }
    let ident = &input.ident;
    let mut generics = input.generics.clone();
    // The supertraits come from other derives, which may have failed or be
    // missing. Bounding on them makes the stub apply only where they hold;
    // the `for<'__a>` keeps the compiler from rejecting a bound that is
    // trivially false for a non-generic struct.
    generics.make_where_clause().predicates.push(parse_quote! {
        for<'__a> Self: ::core::clone::Clone
            + ::allframe::__private::serde::Serialize
            + ::allframe::__private::serde::de::DeserializeOwned
            + ::allframe::__private::garde::Validate<Context = ()>
            + ::core::marker::Send
            + ::core::marker::Sync
            + 'static
    });
    let (impl_generics, type_generics, where_clause) = generics.split_for_impl();
    let unreachable = quote!(::core::panic!("invalid #[command]"));
    let (aggregate, no_aggregate) = match aggregate {
        Some(aggregate) => (quote!(#aggregate), None),
        None => (quote!(__AllFrameNoAggregate), Some(no_aggregate())),
    };
    quote! {
        const _: () = {
            #no_aggregate

            impl #impl_generics ::allframe::Command for #ident #type_generics #where_clause {
                const NAME: &'static str = "invalid";
                const CREATE: bool = false;
                type Aggregate = #aggregate;

                fn aggregate_id(&self) -> ::core::option::Option<::std::string::String> {
                    #unreachable
                }

                fn schema() -> ::allframe::__private::WireSchema {
                    #unreachable
                }
            }
        };
    }
}

/// A private aggregate with no events, for stubs of commands that name none.
fn no_aggregate() -> TokenStream {
    quote! {
        #[derive(::core::default::Default)]
        pub struct __AllFrameNoAggregate;

        #[derive(::allframe::Event)]
        pub enum __AllFrameNoEvent {}

        impl ::allframe::Aggregate for __AllFrameNoAggregate {
            type Event = __AllFrameNoEvent;
            const CATEGORY: &'static str = "invalid";

            fn apply(&mut self, event: &__AllFrameNoEvent) {
                match *event {}
            }
        }
    }
}
