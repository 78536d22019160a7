//! `#[query(...)]`: [`parse`] reads the attribute into a raw model,
//! [`check`] judges it and the struct into a checked model, [`expand`]
//! writes the `Query` impl. The struct is always re-emitted as written.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::DeriveInput;

use crate::diagnostics::Errors;

mod check;
mod expand;
mod parse;

/// Expands `#[query(args)]` on `item`: the item and its impl, or the item,
/// every error found and a stub impl that keeps follow-on errors away.
pub(crate) fn attribute(args: TokenStream, item: TokenStream) -> TokenStream {
    let input = match syn::parse2::<DeriveInput>(item.clone()) {
        Ok(input) => input,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "`#[query]` goes on a struct with named fields: the query's parameters",
            )
            .to_compile_error();
            return quote! { #error #item };
        }
    };
    let mut errors = Errors::default();
    let raw = parse::parse(args, &input, &mut errors);
    let query = check::check(&raw, &mut errors);
    match (errors.finish(), query) {
        (None, Some(query)) => {
            let implementation = expand::expand(&query);
            quote! { #item #implementation }
        }
        (error, _) => {
            let error = error.map(|error| error.to_compile_error());
            let stub = expand::stub(&input);
            quote! { #item #error #stub }
        }
    }
}
