//! Stage 2: judges the options (`name = "kebab-case"`, `key = field`,
//! `indexed_by(field, ...)`) and the struct (named fields, not generic),
//! and builds the checked model. Whether the key's type can become a
//! string is left to the compiler, at the field's type, by the expansion.

use proc_macro2::Span;
use quote::quote;
use syn::ext::IdentExt;
use syn::{Attribute, Data, Expr, ExprPath, Fields, FieldsNamed, Ident, Type};

use super::parse::{Form, RawOption, RawProjection};
use crate::case::Naming;
use crate::diagnostics::Errors;

const NAMING: Naming = Naming {
    kind: "projection",
    example: "accounts-by-owner",
};

const SHAPE: &str = "`#[projection(name = \"accounts\", key = account_id, indexed_by(owner))]`";
const NOT_A_STRUCT: &str = "a projection row is a struct with named fields, one of them its key";

/// A projection row that checked out.
pub(super) struct Projection<'a> {
    pub(super) ident: &'a Ident,
    pub(super) name: String,
    /// The key field and its type.
    pub(super) key: (&'a Ident, &'a Type),
    /// The indexed fields, in the order written.
    pub(super) indexed: Vec<&'a Ident>,
    /// `version = N`, if written.
    pub(super) version: Option<u32>,
    /// Every field, for the row's schema.
    pub(super) fields: &'a FieldsNamed,
    /// The struct's doc comments and the serde options that shape rows.
    pub(super) schema_attrs: Vec<Attribute>,
}

/// The struct's named fields.
struct RowFields<'a> {
    owner: &'a Ident,
    fields: Vec<(&'a Ident, &'a Type)>,
}

impl<'a> RowFields<'a> {
    /// The field named `ident`, or an error at `ident` listing the fields.
    fn find(&self, ident: &Ident, errors: &mut Errors) -> Option<(&'a Ident, &'a Type)> {
        let found = self.fields.iter().find(|(name, _)| *name == ident).copied();
        if found.is_none() {
            let names: Vec<String> = self
                .fields
                .iter()
                .map(|(name, _)| format!("`{}`", name.unraw()))
                .collect();
            errors.at(
                ident,
                format!(
                    "`{}` has no field `{}`; its fields are {}",
                    self.owner,
                    ident.unraw(),
                    names.join(", ")
                ),
            );
        }
        found
    }
}

/// Judges `raw`; `None` when a part the expansion needs is missing. The
/// result is meaningful only when no error was recorded.
pub(super) fn check<'a>(raw: &'a RawProjection<'a>, errors: &mut Errors) -> Option<Projection<'a>> {
    let input = raw.input;
    let named = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => Some(named),
            _ => None,
        },
        _ => None,
    };
    let Some(named) = named else {
        errors.at(&input.ident, NOT_A_STRUCT);
        return None;
    };
    let fields = RowFields {
        owner: &input.ident,
        fields: named
            .named
            .iter()
            .filter_map(|f| f.ident.as_ref().map(|ident| (ident, &f.ty)))
            .collect(),
    };
    if !input.generics.params.is_empty() {
        errors.at(&input.generics, "a projection row cannot be generic");
    }
    let options = raw.options.as_ref()?;
    let mut seen: Vec<String> = Vec::new();
    let mut name = None;
    let mut key = None;
    let mut indexed_written: Vec<&Ident> = Vec::new();
    let mut version = None;
    for RawOption { key: path, form } in options {
        let option = path
            .get_ident()
            .map(|i| i.unraw().to_string())
            .unwrap_or_default();
        if !["name", "key", "indexed_by", "version"].contains(&option.as_str()) {
            let written = quote!(#path).to_string().replace(' ', "");
            errors.at(
                path,
                format!(
                    "unknown projection option `{written}`; expected `name`, `key`, `indexed_by` or `version`"
                ),
            );
            continue;
        }
        if seen.contains(&option) {
            errors.at(path, format!("duplicate projection option `{option}`"));
            continue;
        }
        seen.push(option.clone());
        match (option.as_str(), form) {
            ("name", Form::Value(value)) => name = NAMING.parse_option(value, errors),
            ("name", _) => errors.at(path, "expected `name = \"kebab-case-name\"`"),
            ("key", Form::Value(value)) => match field_ident(value) {
                Some(ident) => key = fields.find(ident, errors),
                None => errors.at(
                    value,
                    "`key` names the field holding the row's key, e.g. `key = account_id`",
                ),
            },
            ("key", _) => errors.at(
                path,
                "expected `key = field`, the field holding the row's key",
            ),
            ("version", Form::Value(value)) => version = projection_version(value, errors),
            ("version", _) => errors.at(path, VERSION_EXAMPLE),
            (_, Form::List(items)) => {
                for item in items {
                    match field_ident(item) {
                        Some(ident) => indexed_written.push(ident),
                        None => errors.at(
                            item,
                            "`indexed_by` lists field names, e.g. `indexed_by(owner, email)`",
                        ),
                    }
                }
            }
            (_, _) => errors.at(path, "expected `indexed_by(field, ...)`"),
        }
    }
    let mut indexed: Vec<&Ident> = Vec::new();
    for ident in indexed_written {
        if indexed.contains(&ident) {
            errors.at(ident, format!("`{}` is indexed twice", ident.unraw()));
            continue;
        }
        if key.is_some_and(|(key, _)| key == ident) {
            errors.at(
                ident,
                "the key is not indexed: rows are read by key directly",
            );
            continue;
        }
        if let Some((found, _)) = fields.find(ident, errors) {
            indexed.push(found);
        }
    }
    for (option, what) in [("name", "a `name`"), ("key", "a `key` field")] {
        if !seen.iter().any(|s| s == option) {
            errors.at_span(
                Span::call_site(),
                format!("a projection needs {what}: {SHAPE}"),
            );
        }
    }
    Some(Projection {
        ident: &input.ident,
        name: name?,
        key: key?,
        indexed,
        version,
        fields: named,
        schema_attrs: crate::schema::struct_attrs(&input.attrs),
    })
}

const VERSION_EXAMPLE: &str =
    "expected `version = N`, a positive integer raised when the stored rows should be rebuilt";

fn projection_version(value: &Expr, errors: &mut Errors) -> Option<u32> {
    let parsed = match value {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(lit),
            ..
        }) => lit.base10_parse::<u32>().ok().filter(|v| *v > 0),
        _ => None,
    };
    if parsed.is_none() {
        errors.at(value, VERSION_EXAMPLE);
    }
    parsed
}

fn field_ident(value: &Expr) -> Option<&Ident> {
    match value {
        Expr::Path(ExprPath {
            qself: None, path, ..
        }) => path.get_ident(),
        _ => None,
    }
}
