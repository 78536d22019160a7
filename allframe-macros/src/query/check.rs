//! Stage 2: judges the options (`name = "kebab-case"`) and the struct
//! (named fields, not generic, garde `length` rules with a mode) and
//! builds the checked model: the name, the wire names and what the
//! parameters' schema is made of.

use syn::{Attribute, Data, Fields, FieldsNamed, Ident};

use super::parse::RawQuery;
use crate::case::Naming;
use crate::command::check::{lint, wire};
use crate::diagnostics::{Errors, key_values};

const NAMING: Naming = Naming {
    kind: "query",
    example: "accounts-over",
};

const NOT_A_STRUCT: &str = "a query is a struct with named fields, one per query-string \
                            parameter, e.g. `struct AccountsOver { min_balance: u64 }`";

/// A query that checked out.
pub(super) struct Query<'a> {
    pub(super) ident: &'a Ident,
    pub(super) name: String,
    /// `(rust name, wire name)` of every field whose names differ.
    pub(super) wire_names: Vec<(String, String)>,
    pub(super) fields: &'a FieldsNamed,
    /// The struct's doc comments and schema-shaping serde options.
    pub(super) schema_attrs: Vec<Attribute>,
}

/// Judges `raw`; `None` when a part the expansion needs is missing. The
/// result is meaningful only when no error was recorded.
pub(super) fn check<'a>(raw: &'a RawQuery<'a>, errors: &mut Errors) -> Option<Query<'a>> {
    let input = raw.input;
    let mut name = None;
    if let Some(options) = &raw.options {
        key_values(
            options,
            "query",
            &[("name", "name = \"kebab-case-name\"")],
            &[],
            errors,
            |_, value, errors| name = NAMING.parse_option(value, errors),
        );
    }
    let fields = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(fields) => Some(fields),
            Fields::Unit => None,
            Fields::Unnamed(fields) => {
                errors.at(fields, NOT_A_STRUCT);
                return None;
            }
        },
        _ => {
            errors.at(&input.ident, NOT_A_STRUCT);
            return None;
        }
    };
    let Some(fields) = fields else {
        errors.at(
            &input.ident,
            format!("{NOT_A_STRUCT}; a query without parameters is written `{{}}`"),
        );
        return None;
    };
    if !input.generics.params.is_empty() {
        errors.at(&input.generics, "a query cannot be generic");
    }
    lint::garde_length_modes(fields, errors);
    let name = match name {
        Some(name) => name,
        None if raw.options.is_some() => NAMING.default_for(&input.ident, errors)?,
        None => return None,
    };
    Some(Query {
        ident: &input.ident,
        name,
        wire_names: wire::wire_names(&input.attrs, fields),
        fields,
        schema_attrs: crate::schema::struct_attrs(&input.attrs),
    })
}
