//! `#[projection(...)]`: [`parse`] reads the attribute into a raw model,
//! [`check`] judges it against the struct into a checked model, [`expand`]
//! writes the `Row` impl and the registration. The struct is always
//! re-emitted as written.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::DeriveInput;

use crate::diagnostics::Errors;

mod check;
mod expand;
mod parse;

/// Expands `#[projection(args)]` on `item`: the item, its `Row` impl and its
/// registration; or the item, every error found and a stub `Row` impl that
/// keeps follow-on errors (in the user's `impl Projection`) away.
pub(crate) fn attribute(args: TokenStream, item: TokenStream) -> TokenStream {
    let input = match syn::parse2::<DeriveInput>(item.clone()) {
        Ok(input) => input,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "`#[projection]` goes on a struct with named fields: the projection's row",
            )
            .to_compile_error();
            return quote! { #error #item };
        }
    };
    let mut errors = Errors::default();
    let raw = parse::parse(args, &input, &mut errors);
    let projection = check::check(&raw, &mut errors);
    match (errors.finish(), projection) {
        (None, Some(projection)) => {
            let implementation = expand::expand(&projection);
            quote! { #item #implementation }
        }
        (error, _) => {
            let error = error.map(|error| error.to_compile_error());
            let stub = expand::stub(&input);
            quote! { #item #error #stub }
        }
    }
}
