//! The options of `#[command(...)]`: keys, values and their validity.

use quote::quote;
use syn::ext::IdentExt;
use syn::{Expr, ExprPath, Ident, Type};

use crate::case::Naming;
use crate::command::parse::{RawOption, RawValue};
use crate::diagnostics::Errors;

/// Commands are named like `open-account`.
pub(super) const NAMING: Naming = Naming {
    kind: "command",
    example: "open-account",
};

const KEYS: [&str; 4] = ["aggregate", "id", "name", "create"];

/// The accepted options; a rejected option is recorded and left out.
#[derive(Default)]
pub(super) struct Options<'a> {
    pub(super) aggregate: Option<&'a Type>,
    pub(super) id: Option<&'a Ident>,
    pub(super) name: Option<String>,
    pub(super) create: bool,
    /// Every key written, valid or not, so a key given a bad value is not
    /// also reported as missing.
    pub(super) written: Vec<String>,
}

/// Reads the options, recording unknown, duplicate and invalid ones.
pub(super) fn options<'a>(raw: &'a [RawOption], errors: &mut Errors) -> Options<'a> {
    let mut options = Options::default();
    for RawOption { key, value } in raw {
        let name = key.unraw().to_string();
        if !KEYS.contains(&name.as_str()) {
            errors.at(
                key,
                format!(
                    "unknown command option `{name}`; expected `aggregate`, `id`, `name` or `create`"
                ),
            );
            continue;
        }
        if options.written.contains(&name) {
            errors.at(key, format!("duplicate command option `{name}`"));
            continue;
        }
        options.written.push(name.clone());
        match (name.as_str(), value) {
            ("aggregate", Some(RawValue::Type(ty))) => options.aggregate = Some(ty),
            ("aggregate", _) => errors.at(
                key,
                "expected `aggregate = Type`, the aggregate the command changes",
            ),
            ("id", Some(RawValue::Expr(value))) => options.id = field_name(value, errors),
            ("id", _) => errors.at(
                key,
                "expected `id = field`, the field holding the aggregate id",
            ),
            ("name", Some(RawValue::Expr(value))) => {
                options.name = NAMING.parse_option(value, errors)
            }
            ("name", _) => errors.at(key, "expected `name = \"kebab-case-name\"`"),
            ("create", None) => options.create = true,
            // Only `create` is left, and it was given a value.
            (_, value) => errors.at(
                quote!(#key = #value),
                "`create` is a flag: write `create` alone",
            ),
        }
    }
    options
}

fn field_name<'a>(value: &'a Expr, errors: &mut Errors) -> Option<&'a Ident> {
    if let Expr::Path(ExprPath {
        qself: None, path, ..
    }) = value
        && let Some(ident) = path.get_ident()
    {
        return Some(ident);
    }
    errors.at(
        value,
        "`id` names the field holding the aggregate id, e.g. `id = account_id`",
    );
    None
}
