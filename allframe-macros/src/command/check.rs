//! Stage 2: judges the raw model — options, the item's shape, the id field,
//! the name, wire names and garde rules — and builds the checked model
//! that expansion trusts. Every mistake is recorded at its own span.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::{Attribute, Data, DeriveInput, Field, Fields, FieldsNamed, Ident, Type};

use super::parse::RawCommand;
use crate::diagnostics::Errors;
use options::{NAMING, Options, options};

pub(crate) mod lint;
mod options;
pub(crate) mod wire;

/// A valid command.
pub(super) struct Command<'a> {
    pub(super) ident: &'a Ident,
    pub(super) name: String,
    pub(super) create: bool,
    pub(super) aggregate: &'a Type,
    /// The field holding the aggregate id; `None` for a create-command
    /// whose id the server generates.
    pub(super) id: Option<&'a Field>,
    /// `(rust name, wire name)` of every field whose names differ.
    pub(super) wire_names: Vec<(String, String)>,
    pub(super) fields: &'a FieldsNamed,
    /// The struct's doc comments and the serde options that shape its
    /// schema, for the schema mirror.
    pub(super) schema_attrs: Vec<Attribute>,
}

/// Judges `raw`; the result is `None` when something it needs is missing,
/// and meaningful only when no error was recorded. Mistakes in the
/// attribute are recorded before mistakes in the struct.
pub(super) fn check<'a>(raw: &'a RawCommand<'a>, errors: &mut Errors) -> Option<Command<'a>> {
    let input = raw.input;
    let mut item_errors = Errors::default();
    if !input.generics.params.is_empty() {
        item_errors.at(&input.generics, "commands cannot be generic");
    }
    let fields = named_fields(input, &mut item_errors);
    if let Some(fields) = fields {
        lint::garde_length_modes(fields, &mut item_errors);
    }
    let Some(raw_options) = raw.options.as_deref() else {
        errors.append(item_errors);
        return None;
    };
    let Options {
        aggregate,
        id,
        name,
        create,
        written,
    } = options(raw_options, errors);
    let missing = |key: &str| !written.iter().any(|written| written == key);
    if missing("aggregate") {
        errors.at_span(
            Span::call_site(),
            "a command needs `aggregate = Type`, the aggregate it changes",
        );
    }
    if missing("id") && missing("create") {
        errors.at_span(
            Span::call_site(),
            "only a create-command may omit `id`; the server then generates the id",
        );
    }
    let id = match (id, fields) {
        (Some(id), Some(fields)) => {
            let field = find_field(fields, id);
            if field.is_none() {
                errors.at(
                    id,
                    format!("`{}` has no field `{}`", input.ident, id.unraw()),
                );
            }
            field
        }
        _ => None,
    };
    let name = name.or_else(|| NAMING.default_for(&input.ident, errors));
    errors.append(item_errors);
    let fields = fields?;
    Some(Command {
        ident: &input.ident,
        name: name?,
        create,
        aggregate: aggregate?,
        id,
        wire_names: wire::wire_names(&input.attrs, fields),
        fields,
        schema_attrs: input
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("doc"))
            .cloned()
            .chain(wire::container_attrs(&input.attrs))
            .collect(),
    })
}

/// The struct's named fields, recording an error for any other shape.
fn named_fields<'a>(input: &'a DeriveInput, errors: &mut Errors) -> Option<&'a FieldsNamed> {
    const EXAMPLE: &str = "e.g. `struct Deposit { account_id: String, amount: u64 }`";
    match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(fields) => Some(fields),
            Fields::Unnamed(fields) => {
                errors.at(
                    fields,
                    format!("a command's body is a JSON object: use named fields, {EXAMPLE}"),
                );
                None
            }
            Fields::Unit => {
                errors.at(
                    &input.ident,
                    format!(
                        "a command's body is a JSON object: use named fields (or `{{}}`), {EXAMPLE}"
                    ),
                );
                None
            }
        },
        Data::Enum(data) => {
            errors.at(
                data.enum_token,
                format!("a command is a struct with named fields, not an enum; {EXAMPLE}"),
            );
            None
        }
        Data::Union(data) => {
            errors.at(
                data.union_token,
                format!("a command is a struct with named fields, not a union; {EXAMPLE}"),
            );
            None
        }
    }
}

fn find_field<'a>(fields: &'a FieldsNamed, id: &Ident) -> Option<&'a Field> {
    let id = id.unraw();
    fields.named.iter().find(|field| {
        field
            .ident
            .as_ref()
            .is_some_and(|ident| ident.unraw() == id)
    })
}
