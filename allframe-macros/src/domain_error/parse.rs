//! Stage 1: reads the derive input and its `#[domain_error(...)]`
//! attributes into a raw model, judging nothing. Only attribute syntax
//! errors surface here.

use syn::punctuated::Punctuated;
use syn::{Attribute, Data, DeriveInput, Generics, Ident, Meta, Token};

use crate::diagnostics::Errors;

/// The input as written.
pub(super) struct RawDomainError<'a> {
    pub(super) ident: &'a Ident,
    pub(super) generics: &'a Generics,
    /// Options from `#[domain_error(...)]` on the type itself.
    pub(super) options: Vec<Meta>,
    pub(super) body: RawBody<'a>,
    /// `#[domain_error]` attributes written on fields, where none belong.
    pub(super) field_attrs: Vec<&'a Attribute>,
}

/// What kind of type the derive was put on.
pub(super) enum RawBody<'a> {
    Enum(Vec<RawVariant<'a>>),
    Struct,
    Union(&'a Token![union]),
}

/// An enum variant as written.
pub(super) struct RawVariant<'a> {
    pub(super) ident: &'a Ident,
    /// Options from `#[domain_error(...)]` on the variant.
    pub(super) options: Vec<Meta>,
}

/// Reads `input`, recording attribute syntax errors in `errors`.
pub(super) fn parse<'a>(input: &'a DeriveInput, errors: &mut Errors) -> RawDomainError<'a> {
    let mut field_attrs = Vec::new();
    let body = match &input.data {
        Data::Enum(data) => RawBody::Enum(
            data.variants
                .iter()
                .map(|variant| {
                    field_attrs.extend(attrs_on_fields(&variant.fields));
                    RawVariant {
                        ident: &variant.ident,
                        options: options(&variant.attrs, errors),
                    }
                })
                .collect(),
        ),
        Data::Struct(data) => {
            field_attrs.extend(attrs_on_fields(&data.fields));
            RawBody::Struct
        }
        Data::Union(data) => RawBody::Union(&data.union_token),
    };
    RawDomainError {
        ident: &input.ident,
        generics: &input.generics,
        options: options(&input.attrs, errors),
        body,
        field_attrs,
    }
}

fn is_domain_error_attr(attr: &Attribute) -> bool {
    attr.path().is_ident("domain_error")
}

fn attrs_on_fields(fields: &syn::Fields) -> impl Iterator<Item = &Attribute> {
    fields
        .iter()
        .flat_map(|field| &field.attrs)
        .filter(|attr| is_domain_error_attr(attr))
}

/// Every item inside the `#[domain_error(...)]` attributes among `attrs`.
fn options(attrs: &[Attribute], errors: &mut Errors) -> Vec<Meta> {
    let mut options = Vec::new();
    for attr in attrs.iter().filter(|attr| is_domain_error_attr(attr)) {
        match &attr.meta {
            Meta::List(list) => {
                match list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) {
                    Ok(items) => options.extend(items),
                    Err(error) => errors.push(error),
                }
            }
            meta => errors.at(meta, "expected `#[domain_error(key = value, ...)]`"),
        }
    }
    options
}
