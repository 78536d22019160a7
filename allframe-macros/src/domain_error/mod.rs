//! `#[derive(DomainError)]`: [`parse`] reads the input into a raw model,
//! [`check`] judges it into a checked model, [`expand`] writes the impl.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

use crate::diagnostics::Errors;

mod check;
mod expand;
mod parse;

/// Expands `#[derive(DomainError)]` on `input`: the impl, or every error
/// found plus a stub impl that keeps follow-on errors away.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let raw = parse::parse(input, &mut errors);
    let domain_error = check::check(raw, &mut errors);
    let error = errors.finish().map(|error| error.to_compile_error());
    match (error, domain_error) {
        (None, Some(domain_error)) => expand::expand(&domain_error),
        // A union cannot be an `Error` worth stubbing.
        (error, None) => quote! { #error },
        (error, Some(_)) => {
            let stub = expand::stub(&input.ident, &input.generics);
            quote! { #error #stub }
        }
    }
}
