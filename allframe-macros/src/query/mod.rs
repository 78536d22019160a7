//! `#[query(...)]`: [`parse`] reads the attribute into a raw model,
//! [`check`] judges it and the struct into a checked model, [`expand`]
//! writes the `Query` impl. The struct is always re-emitted as written.

use proc_macro2::TokenStream;
use syn::DeriveInput;

use crate::diagnostics;

mod check;
mod expand;
mod parse;

/// Expands `#[query(args)]` on `item`: the item and its impl, or the item,
/// every error found and a stub impl that keeps follow-on errors away.
pub(crate) fn attribute(args: TokenStream, item: TokenStream) -> TokenStream {
    diagnostics::attribute(
        item,
        "`#[query]` goes on a struct with named fields: the query's parameters",
        |input: &DeriveInput, errors| {
            let raw = parse::parse(args, input, errors);
            match check::check(&raw, errors) {
                Some(query) if errors.is_empty() => expand::expand(&query),
                _ => expand::stub(input),
            }
        },
    )
}
