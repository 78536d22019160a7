//! Stage 1: reads `#[query(...)]`'s arguments into a raw model, judging
//! nothing. Only attribute syntax errors surface here.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{DeriveInput, Meta, Token};

use crate::diagnostics::Errors;

/// The attribute and the item it is on, as written.
pub(super) struct RawQuery<'a> {
    /// The attribute's options; `None` when they are not even syntax.
    pub(super) options: Option<Vec<Meta>>,
    pub(super) input: &'a DeriveInput,
}

/// Reads the attribute arguments `args` for `input`, recording syntax errors.
pub(super) fn parse<'a>(
    args: TokenStream,
    input: &'a DeriveInput,
    errors: &mut Errors,
) -> RawQuery<'a> {
    let options = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args) {
        Ok(options) => Some(options.into_iter().collect()),
        Err(error) => {
            errors.push(error);
            None
        }
    };
    RawQuery { options, input }
}
