//! Stage 1: reads `#[command(...)]`'s arguments into a raw model, judging
//! nothing. Only attribute syntax errors surface here.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{DeriveInput, Expr, Ident, Token, Type};

use crate::diagnostics::Errors;

/// The attribute and the item it is on, as written.
pub(super) struct RawCommand<'a> {
    /// The attribute's options; `None` when they are not even syntax, so
    /// nothing is reported as missing on top of the syntax error.
    pub(super) options: Option<Vec<RawOption>>,
    pub(super) input: &'a DeriveInput,
}

/// One `key` or `key = value` inside `#[command(...)]`.
pub(super) struct RawOption {
    pub(super) key: Ident,
    pub(super) value: Option<RawValue>,
}

/// An option's value: a type for `aggregate` (so `aggregate = a::B` and
/// friends parse), an expression for every other key.
pub(super) enum RawValue {
    Type(Type),
    Expr(Expr),
}

impl Parse for RawOption {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key = Ident::parse_any(input)?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(if key == "aggregate" {
                RawValue::Type(input.parse()?)
            } else {
                RawValue::Expr(input.parse()?)
            })
        } else {
            None
        };
        Ok(Self { key, value })
    }
}

/// Reads the attribute arguments `args` for `input`, recording syntax errors.
pub(super) fn parse<'a>(
    args: TokenStream,
    input: &'a DeriveInput,
    errors: &mut Errors,
) -> RawCommand<'a> {
    let options = match Punctuated::<RawOption, Token![,]>::parse_terminated.parse2(args) {
        Ok(options) => Some(options.into_iter().collect()),
        Err(error) => {
            errors.push(error);
            None
        }
    };
    RawCommand { options, input }
}

impl RawCommand<'_> {
    /// The first `aggregate = Type` written, if any: even an invalid
    /// command's stub impl names the aggregate the user meant.
    pub(super) fn aggregate(&self) -> Option<&Type> {
        self.options
            .iter()
            .flatten()
            .find_map(|option| match &option.value {
                Some(RawValue::Type(ty)) if option.key == "aggregate" => Some(ty),
                _ => None,
            })
    }
}

impl ToTokens for RawValue {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            Self::Type(ty) => ty.to_tokens(tokens),
            Self::Expr(expr) => expr.to_tokens(tokens),
        }
    }
}
