//! `#[command_handler]`: [`parse`] splits the function's signature,
//! [`check`] judges its shape, [`expand`] writes the handler type and its
//! registration. The function itself is always re-emitted as written, so
//! it stays callable directly.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::ItemFn;

use crate::diagnostics::Errors;

pub(crate) mod check;
mod expand;
pub(crate) mod parse;

/// Expands `#[command_handler]` on `item`: the function, its handler type
/// and registration; or the function and every error found. Nothing
/// refers to the handler type by name, so no stub is needed.
pub(crate) fn attribute(args: TokenStream, item: TokenStream) -> TokenStream {
    let function = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "`#[command_handler]` goes on an `async fn`",
            )
            .to_compile_error();
            return quote! { #error #item };
        }
    };
    let mut errors = Errors::default();
    let raw = parse::parse(args, &function);
    let handler = check::check(&raw, &mut errors);
    match (errors.finish(), handler) {
        (None, Some(handler)) => {
            let handler = expand::expand(&handler);
            quote! { #item #handler }
        }
        (error, _) => {
            let error = error.map(|error| error.to_compile_error());
            quote! { #item #error }
        }
    }
}
