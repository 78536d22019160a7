//! `#[projection(...)]`: [`parse`] reads the attribute into a raw model,
//! [`check`] judges it against the struct into a checked model, [`expand`]
//! writes the `Row` impl and the registration. The struct is always
//! re-emitted as written.

use proc_macro2::TokenStream;
use syn::DeriveInput;

use crate::diagnostics;

mod check;
mod expand;
mod parse;

/// Expands `#[projection(args)]` on `item`: the item, its `Row` impl and its
/// registration; or the item, every error found and a stub `Row` impl that
/// keeps follow-on errors (in the user's `impl Projection`) away.
pub(crate) fn attribute(args: TokenStream, item: TokenStream) -> TokenStream {
    diagnostics::attribute(
        item,
        "`#[projection]` goes on a struct with named fields: the projection's row",
        |input: &DeriveInput, errors| {
            let raw = parse::parse(args, input, errors);
            match check::check(&raw, errors) {
                Some(projection) if errors.is_empty() => expand::expand(&projection),
                _ => expand::stub(input),
            }
        },
    )
}
