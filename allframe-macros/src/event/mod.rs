//! `#[derive(Event)]`: [`parse`] reads the input into a raw model, [`check`]
//! judges it into a checked model, [`expand`] writes the impl.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

use crate::diagnostics::Errors;

mod check;
mod expand;
mod parse;

/// Expands `#[derive(Event)]` on `input`: the impl, or every error found
/// plus a stub impl that keeps follow-on errors away.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let raw = parse::parse(input, &mut errors);
    let event = check::check(raw, &mut errors);
    match (errors.finish(), event) {
        (None, Some(event)) => expand::expand(&event),
        (error, _) => {
            let error = error.map(|error| error.to_compile_error());
            let stub = expand::stub(&input.ident, &input.generics);
            quote! { #error #stub }
        }
    }
}
