//! Stage 2: judges the raw model — option keys and values, stored type
//! names, field shapes, generics — and builds the checked model that
//! expansion trusts. Every mistake is recorded at its own span.

use syn::{Attribute, Fields, Ident, Type};

use super::parse::{RawBody, RawEvent, RawVariant};
use crate::diagnostics::Errors;
use crate::schema::SchemaField;
use options::{Options, Place, TypeNames, options};
pub(super) use options::{Step, StepKind};

mod options;

/// A valid event type.
pub(super) struct Event<'a> {
    pub(super) ident: &'a Ident,
    pub(super) shape: Shape<'a>,
}

/// Whether values carry one of several stored types or exactly one.
pub(super) enum Shape<'a> {
    Enum(Vec<Variant<'a>>),
    Struct(Variant<'a>),
}

/// One stored type: an enum variant, or the struct itself.
pub(super) struct Variant<'a> {
    pub(super) ident: &'a Ident,
    pub(super) type_name: String,
    /// Earlier stored names, decoded as this one.
    pub(super) aliases: Vec<String>,
    /// Today's version.
    pub(super) version: u32,
    /// One step from each older version, in version order.
    pub(super) steps: Vec<Step>,
    /// Its doc comments, which describe its payload's schema.
    pub(super) docs: Vec<&'a Attribute>,
    pub(super) data: VariantData<'a>,
}

/// How a variant's fields become the stored `data`.
pub(super) enum VariantData<'a> {
    /// Named fields as a JSON object (none for unit and `{}` variants).
    Fields(Vec<Field<'a>>),
    /// The one field's own serde form.
    Newtype(&'a Type),
}

/// A named field.
pub(super) struct Field<'a> {
    pub(super) ident: &'a Ident,
    pub(super) ty: &'a Type,
    /// Its `#[serde(...)]` attributes, copied onto the generated mirrors.
    pub(super) serde_attrs: Vec<&'a Attribute>,
    /// Its doc comments and serde attributes, for the schema mirror.
    pub(super) schema: SchemaField<'a>,
}

/// Judges `raw`; `None` only for unions. The result is meaningful only when
/// no error was recorded.
pub(super) fn check<'a>(raw: RawEvent<'a>, errors: &mut Errors) -> Option<Event<'a>> {
    if !raw.generics.params.is_empty() {
        errors.at(raw.generics, "event types cannot be generic");
    }
    for attr in raw.field_attrs {
        errors.at(
            attr,
            "`#[event]` does not apply to fields; put it on the type or a variant",
        );
    }
    let mut names = TypeNames::default();
    let shape = match raw.body {
        RawBody::Enum(variants) => {
            let defaults = options(&raw.options, Place::Enum, errors);
            let variants = variants
                .into_iter()
                .map(|variant| check_variant(variant, &defaults, &mut names, errors))
                .collect();
            Shape::Enum(variants)
        }
        RawBody::Struct(fields) => {
            let options = options(&raw.options, Place::Struct, errors);
            let data = match fields {
                Fields::Unnamed(unnamed) if !unnamed.unnamed.is_empty() => {
                    errors.at(
                        fields,
                        "tuple structs cannot be events: use named fields, e.g. `struct MoneyDeposited { amount: u64 }`",
                    );
                    VariantData::Fields(Vec::new())
                }
                fields => VariantData::Fields(named_fields(fields)),
            };
            let version = options.version.unwrap_or(1);
            Shape::Struct(stored(
                raw.ident, version, options, raw.docs, data, &mut names, errors,
            ))
        }
        RawBody::Union(token) => {
            errors.at(token, "unions cannot be events: use an enum or a struct");
            return None;
        }
    };
    Some(Event {
        ident: raw.ident,
        shape,
    })
}

fn check_variant<'a>(
    variant: RawVariant<'a>,
    defaults: &Options,
    names: &mut TypeNames,
    errors: &mut Errors,
) -> Variant<'a> {
    let options = options(&variant.options, Place::Variant, errors);
    let data = match variant.fields {
        Fields::Unnamed(unnamed) if unnamed.unnamed.len() == 1 => {
            VariantData::Newtype(&unnamed.unnamed[0].ty)
        }
        Fields::Unnamed(unnamed) if unnamed.unnamed.len() > 1 => {
            let ident = variant.ident;
            errors.at(
                quote::quote!(#ident #unnamed),
                format!(
                    "tuple variants with more than one field cannot be events: use named fields \
                     (`{ident} {{ a: A, b: B }}`) or one field of a type holding them (`{ident}(Data)`)"
                ),
            );
            VariantData::Fields(Vec::new())
        }
        fields => VariantData::Fields(named_fields(fields)),
    };
    let version = options.version.or(defaults.version).unwrap_or(1);
    stored(
        variant.ident,
        version,
        options,
        variant.docs,
        data,
        names,
        errors,
    )
}

/// One stored type from its checked parts: its names claimed, its upcast
/// chain checked.
fn stored<'a>(
    ident: &'a Ident,
    version: u32,
    options: Options,
    docs: Vec<&'a Attribute>,
    data: VariantData<'a>,
    names: &mut TypeNames,
    errors: &mut Errors,
) -> Variant<'a> {
    let type_name = names.claim(ident, options.rename.clone(), errors);
    names.claim_aliases(ident, &options.aliases, errors);
    Variant {
        ident,
        type_name,
        aliases: options
            .aliases
            .iter()
            .map(|(alias, _)| alias.clone())
            .collect(),
        version,
        steps: chain(ident, version, options, errors),
        docs,
        data,
    }
}

/// The upcast steps of a type at `version`, checked: one from each older
/// version (no gaps), none from today's version or a later one. Steps only
/// go up (to the next version, or straight to today's event), so a chain
/// can have no cycle and no dead end.
fn chain(ident: &Ident, version: u32, options: Options, errors: &mut Errors) -> Vec<Step> {
    let mut steps = options.steps;
    for step in &steps {
        if step.from >= version {
            let older = match version {
                1 => "it has no older version to upcast from".to_owned(),
                2 => "the only older version is 1".to_owned(),
                _ => format!("upcast steps go from older versions, 1 to {}", version - 1),
            };
            errors.at_span(
                step.span,
                format!("`{ident}` is at version {version}: {older}"),
            );
        }
    }
    let missing: Vec<String> = (1..version)
        .filter(|v| !steps.iter().any(|step| step.from == *v))
        .map(|v| v.to_string())
        .collect();
    if !missing.is_empty() {
        let message = format!(
            "`{ident}` is at version {version}, but version {} has no upcast step, so events \
             stored at that version could not be decoded; add `upcast({} = fn_from_json_to_json)` \
             or `upcast({} = from(OldShape))`",
            missing.join(", "),
            missing[0],
            missing[0]
        );
        match options.upcast_span {
            Some(span) => errors.at_span(span, message),
            None => errors.at(ident, message),
        }
    }
    steps.sort_by_key(|step| step.from);
    steps
}

fn named_fields(fields: &Fields) -> Vec<Field<'_>> {
    fields
        .iter()
        .filter_map(|field| {
            Some(Field {
                ident: field.ident.as_ref()?,
                ty: &field.ty,
                serde_attrs: field
                    .attrs
                    .iter()
                    .filter(|attr| attr.path().is_ident("serde"))
                    .collect(),
                schema: SchemaField::of(field)?,
            })
        })
        .collect()
}
