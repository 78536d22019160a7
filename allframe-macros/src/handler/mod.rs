//! `#[command_handler]`: [`parse`] splits the function's signature,
//! [`check`] judges its shape, [`expand`] writes the handler type and its
//! registration. The function itself is always re-emitted as written, so
//! it stays callable directly.

use proc_macro2::TokenStream;
use syn::ItemFn;

use crate::diagnostics;

pub(crate) mod check;
pub(crate) mod expand;
pub(crate) mod parse;

/// Expands `#[command_handler]` on `item`: the function, its handler type
/// and registration; or the function and every error found. Nothing
/// refers to the handler type by name, so no stub is needed.
pub(crate) fn attribute(args: TokenStream, item: TokenStream) -> TokenStream {
    diagnostics::attribute(
        item,
        "`#[command_handler]` goes on an `async fn`",
        |function: &ItemFn, errors| {
            let raw = parse::parse(args, function);
            match check::check(&raw, errors) {
                Some(handler) if errors.is_empty() => expand::expand(&handler),
                _ => TokenStream::new(),
            }
        },
    )
}
