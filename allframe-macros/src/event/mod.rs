//! `#[derive(Event)]`: [`parse`] reads the input into a raw model, [`check`]
//! judges it into a checked model, [`expand`] writes the impl.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::DeriveInput;

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

/// Every mistake found so far, so all of them are reported in one pass.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    /// Records `error`.
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// Records `message` at the span of `tokens`.
    fn at(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// The combined error, if anything was recorded.
    fn finish(self) -> Option<syn::Error> {
        self.0
    }
}
