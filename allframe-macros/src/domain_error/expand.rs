//! Stage 3: writes `impl ::allframe::DomainError` from the checked model,
//! or a stub impl when checking failed. `Display` and `Error` stay the
//! user's (usually `thiserror`); the trait's supertraits report them.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::{Generics, Ident, parse_quote};

use super::check::{DomainError, Refusal, Shape};

/// The `DomainError` impl for a checked type.
pub(super) fn expand(error: &DomainError<'_>) -> TokenStream {
    let refusals: Vec<&Refusal<'_>> = match &error.shape {
        Shape::Struct(refusal) => vec![refusal],
        Shape::Enum(refusals) => refusals.iter().collect(),
    };
    let codes = refusals
        .iter()
        .map(|Refusal { code, status, .. }| quote!((#code, #status)));
    let (code, status) = match &error.shape {
        Shape::Struct(Refusal { code, status, .. }) => (quote!(#code), quote!(#status)),
        Shape::Enum(refusals) => {
            // An enum without variants has no value to match on by reference.
            let scrutinee = if refusals.is_empty() {
                quote!(*self)
            } else {
                quote!(self)
            };
            let codes = refusals
                .iter()
                .map(|Refusal { ident, code, .. }| quote!(Self::#ident { .. } => #code,));
            let statuses = refusals
                .iter()
                .map(|Refusal { ident, status, .. }| quote!(Self::#ident { .. } => #status,));
            (
                quote!(match #scrutinee { #(#codes)* }),
                quote!(match #scrutinee { #(#statuses)* }),
            )
        }
    };
    let header = header(error.ident, error.generics);
    quote! {
        #header {
            const CODES: &'static [(&'static str, u16)] = &[#(#codes),*];

            fn code(&self) -> &'static str {
                #code
            }

            fn status(&self) -> u16 {
                #status
            }
        }
    }
}

/// An impl that type-checks whenever the type is an `Error`, emitted beside
/// the errors so its uses do not also report "not a domain error".
pub(super) fn stub(ident: &Ident, generics: &Generics) -> TokenStream {
    let header = header(ident, generics);
    quote! {
        #header {
            const CODES: &'static [(&'static str, u16)] = &[];

            fn code(&self) -> &'static str {
                ::core::panic!("invalid #[derive(DomainError)]")
            }
        }
    }
}

/// `impl DomainError for Type`, spanned at the type's name so a missing
/// `Error` impl is reported there. A generic type's impl is bounded on the
/// supertraits, which then hold wherever it is used as a domain error.
fn header(ident: &Ident, generics: &Generics) -> TokenStream {
    let mut generics = generics.clone();
    if !generics.params.is_empty() {
        generics.make_where_clause().predicates.push(parse_quote! {
            Self: ::std::error::Error + ::core::marker::Send + ::core::marker::Sync + 'static
        });
    }
    let (impl_generics, type_generics, where_clause) = generics.split_for_impl();
    quote_spanned! {ident.span()=>
        impl #impl_generics ::allframe::DomainError for #ident #type_generics #where_clause
    }
}
