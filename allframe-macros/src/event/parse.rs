//! Stage 1: reads the derive input and its `#[event(...)]` attributes into a
//! raw model, judging nothing. Only attribute syntax errors surface here.

use syn::punctuated::Punctuated;
use syn::{Attribute, Data, DeriveInput, Fields, Generics, Ident, Meta, Token};

use crate::diagnostics::Errors;

/// The input as written.
pub(super) struct RawEvent<'a> {
    pub(super) ident: &'a Ident,
    pub(super) generics: &'a Generics,
    /// Options from `#[event(...)]` on the type itself.
    pub(super) options: Vec<Meta>,
    /// The type's doc comments.
    pub(super) docs: Vec<&'a Attribute>,
    pub(super) body: RawBody<'a>,
    /// `#[event]` attributes written on fields, where none belong.
    pub(super) field_attrs: Vec<&'a Attribute>,
}

/// What kind of type the derive was put on.
pub(super) enum RawBody<'a> {
    Enum(Vec<RawVariant<'a>>),
    Struct(&'a Fields),
    Union(&'a Token![union]),
}

/// An enum variant as written.
pub(super) struct RawVariant<'a> {
    pub(super) ident: &'a Ident,
    /// Options from `#[event(...)]` on the variant.
    pub(super) options: Vec<Meta>,
    /// The variant's doc comments.
    pub(super) docs: Vec<&'a Attribute>,
    pub(super) fields: &'a Fields,
}

/// Reads `input`, recording attribute syntax errors in `errors`.
pub(super) fn parse<'a>(input: &'a DeriveInput, errors: &mut Errors) -> RawEvent<'a> {
    let mut field_attrs = Vec::new();
    let body = match &input.data {
        Data::Enum(data) => RawBody::Enum(
            data.variants
                .iter()
                .map(|variant| {
                    field_attrs.extend(event_attrs_on(&variant.fields));
                    RawVariant {
                        ident: &variant.ident,
                        options: options(&variant.attrs, errors),
                        docs: docs(&variant.attrs),
                        fields: &variant.fields,
                    }
                })
                .collect(),
        ),
        Data::Struct(data) => {
            field_attrs.extend(event_attrs_on(&data.fields));
            RawBody::Struct(&data.fields)
        }
        Data::Union(data) => RawBody::Union(&data.union_token),
    };
    RawEvent {
        ident: &input.ident,
        generics: &input.generics,
        options: options(&input.attrs, errors),
        docs: docs(&input.attrs),
        body,
        field_attrs,
    }
}

fn docs(attrs: &[Attribute]) -> Vec<&Attribute> {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("doc"))
        .collect()
}

fn is_event_attr(attr: &Attribute) -> bool {
    attr.path().is_ident("event")
}

fn event_attrs_on(fields: &Fields) -> impl Iterator<Item = &Attribute> {
    fields
        .iter()
        .flat_map(|field| &field.attrs)
        .filter(|attr| is_event_attr(attr))
}

/// Every `key = value` (or other meta item) inside the `#[event(...)]`
/// attributes among `attrs`, in order.
fn options(attrs: &[Attribute], errors: &mut Errors) -> Vec<Meta> {
    let mut options = Vec::new();
    for attr in attrs.iter().filter(|attr| is_event_attr(attr)) {
        match &attr.meta {
            Meta::List(list) => {
                match list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) {
                    Ok(items) => options.extend(items),
                    Err(error) => errors.push(error),
                }
            }
            meta => errors.at(meta, "expected `#[event(key = value, ...)]`"),
        }
    }
    options
}
