//! `#[command(...)]`: [`parse`] reads the attribute into a raw model,
//! [`check`] judges it and the struct into a checked model, [`expand`]
//! writes the impl. The struct is always re-emitted as written.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::DeriveInput;

use crate::diagnostics::Errors;

pub(crate) mod check;
mod expand;
mod parse;

/// Expands `#[command(args)]` on `item`: the item and its impl, or the item,
/// every error found and a stub impl that keeps follow-on errors away.
pub(crate) fn attribute(args: TokenStream, item: TokenStream) -> TokenStream {
    let input = match syn::parse2::<DeriveInput>(item.clone()) {
        Ok(input) => input,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "`#[command]` goes on a struct with named fields",
            )
            .to_compile_error();
            return quote! { #error #item };
        }
    };
    let mut errors = Errors::default();
    let raw = parse::parse(args, &input, &mut errors);
    let command = check::check(&raw, &mut errors);
    match (errors.finish(), command) {
        (None, Some(command)) => {
            let implementation = expand::expand(&command);
            quote! { #item #implementation }
        }
        (error, _) => {
            let error = error.map(|error| error.to_compile_error());
            let stub = expand::stub(&input, raw.aggregate());
            quote! { #item #error #stub }
        }
    }
}
