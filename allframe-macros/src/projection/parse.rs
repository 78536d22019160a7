//! Stage 1: reads `#[projection(...)]`'s arguments into a raw model,
//! judging nothing. Only attribute syntax errors surface here.

use proc_macro2::TokenStream;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{DeriveInput, Expr, Path, Token, parenthesized};

use crate::diagnostics::Errors;

/// The attribute and the item it is on, as written.
pub(super) struct RawProjection<'a> {
    /// The attribute's options; `None` when they are not even syntax, so
    /// nothing is reported as missing on top of the syntax error.
    pub(super) options: Option<Vec<RawOption>>,
    pub(super) input: &'a DeriveInput,
}

/// One option: `key`, `key = value` or `key(item, ...)`.
pub(super) struct RawOption {
    pub(super) key: Path,
    pub(super) form: Form,
}

/// How an option was written.
pub(super) enum Form {
    /// `key` alone.
    Flag,
    /// `key = value`.
    Value(Expr),
    /// `key(item, ...)`.
    List(Vec<Expr>),
}

impl Parse for RawOption {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key = Path::parse_mod_style(input)?;
        let form = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Form::Value(input.parse()?)
        } else if input.peek(syn::token::Paren) {
            let content;
            parenthesized!(content in input);
            let items = Punctuated::<Expr, Token![,]>::parse_terminated(&content)?;
            Form::List(items.into_iter().collect())
        } else {
            Form::Flag
        };
        Ok(Self { key, form })
    }
}

/// Reads the attribute arguments `args` for `input`, recording syntax errors.
pub(super) fn parse<'a>(
    args: TokenStream,
    input: &'a DeriveInput,
    errors: &mut Errors,
) -> RawProjection<'a> {
    let options = match Punctuated::<RawOption, Token![,]>::parse_terminated.parse2(args) {
        Ok(options) => Some(options.into_iter().collect()),
        Err(error) => {
            errors.push(error);
            None
        }
    };
    RawProjection { options, input }
}
