//! Error collection shared by every macro: each stage records mistakes at
//! their own spans and keeps going, so one compile shows all of them.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};

/// The shape every attribute macro shares: parses `item` as `T` (a
/// `misplaced` error when it is not one), lets `generate` record its
/// mistakes and return what follows the item — the implementation, or when
/// anything was recorded a stub that keeps follow-on errors away — and
/// re-emits the item as written, every error, then that.
pub(crate) fn attribute<T: syn::parse::Parse>(
    item: TokenStream,
    misplaced: &str,
    generate: impl FnOnce(&T, &mut Errors) -> TokenStream,
) -> TokenStream {
    let parsed = match syn::parse2::<T>(item.clone()) {
        Ok(parsed) => parsed,
        Err(_) => {
            let error = syn::Error::new(Span::call_site(), misplaced).to_compile_error();
            return quote! { #error #item };
        }
    };
    let mut errors = Errors::default();
    let generated = generate(&parsed, &mut errors);
    let error = errors.finish().map(|error| error.to_compile_error());
    quote! { #item #error #generated }
}

/// Every mistake found so far, so all of them are reported in one pass.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    /// Records `error`.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// Records `message` at the span of `tokens`.
    pub(crate) fn at(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Records `message` at `span`.
    pub(crate) fn at_span(&mut self, span: proc_macro2::Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Records everything `other` recorded, after what is here.
    pub(crate) fn append(&mut self, other: Errors) {
        if let Some(error) = other.0 {
            self.push(error);
        }
    }

    /// Whether nothing was recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The combined error, if anything was recorded.
    pub(crate) fn finish(self) -> Option<syn::Error> {
        self.0
    }
}

/// Walks the items of an `#[attr(key = value, ...)]` list for `what` (e.g.
/// "event"): a key in `misplaced` gets its message, an unknown key gets the
/// list of `allowed` keys, a repeated key and any form other than
/// `key = value` (shown by the key's example) are reported, each at its own
/// span. Each accepted key and its value go to `accept` as they come, so
/// errors about values stay in source order with the others.
pub(crate) fn key_values(
    items: &[syn::Meta],
    what: &str,
    allowed: &[(&'static str, &'static str)],
    misplaced: &[(&'static str, &'static str)],
    errors: &mut Errors,
    mut accept: impl FnMut(&'static str, &syn::Expr, &mut Errors),
) {
    let mut seen: Vec<&'static str> = Vec::new();
    for item in items {
        let path = item.path();
        let key = path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        if let Some((_, message)) = misplaced.iter().find(|(name, _)| *name == key) {
            errors.at(path, message);
            continue;
        }
        let Some(&(name, example)) = allowed.iter().find(|(name, _)| *name == key) else {
            let written = quote::quote!(#path).to_string().replace(' ', "");
            let expected: Vec<String> = allowed
                .iter()
                .map(|(name, _)| format!("`{name}`"))
                .collect();
            errors.at(
                path,
                format!(
                    "unknown {what} option `{written}`; expected {}",
                    expected.join(" or ")
                ),
            );
            continue;
        };
        if seen.contains(&name) {
            errors.at(path, format!("duplicate {what} option `{name}`"));
            continue;
        }
        seen.push(name);
        match item {
            syn::Meta::NameValue(pair) => accept(name, &pair.value, errors),
            other => errors.at(other, format!("expected `{example}`")),
        }
    }
}
