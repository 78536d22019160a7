//! The `#[event(...)]` options of one place and the stored type names they
//! produce: keys, values, validity and uniqueness.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::{Expr, ExprLit, Ident, Lit, Meta};

use crate::diagnostics::{Errors, key_values};

/// Where an `#[event(...)]` attribute was written.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Place {
    Enum,
    Variant,
    Struct,
}

/// Accepted values of one `#[event(...)]` attribute list.
#[derive(Default)]
pub(super) struct Options {
    pub(super) version: Option<u32>,
    /// The name and the span of its literal.
    pub(super) rename: Option<(String, Span)>,
}

/// Reads one place's options, recording unknown, duplicate and invalid ones.
pub(super) fn options(items: &[Meta], place: Place, errors: &mut Errors) -> Options {
    const VERSION: (&str, &str) = ("version", "version = 2");
    const RENAME: (&str, &str) = ("rename", "rename = \"Name\"");
    let (allowed, misplaced): (&[_], &[_]) = match place {
        Place::Enum => (
            &[VERSION],
            &[(
                "rename",
                "`rename` names one stored type: put it on a variant, not on the enum",
            )],
        ),
        Place::Variant | Place::Struct => (&[RENAME, VERSION], &[]),
    };
    let mut options = Options::default();
    key_values(
        items,
        "event",
        allowed,
        misplaced,
        errors,
        |key, value, errors| {
            if key == "version" {
                options.version = version(value, errors);
            } else {
                options.rename = rename(value, errors);
            }
        },
    );
    options
}

fn version(value: &Expr, errors: &mut Errors) -> Option<u32> {
    let Expr::Lit(ExprLit {
        lit: Lit::Int(lit), ..
    }) = value
    else {
        errors.at(
            value,
            "`version` expects a positive integer, e.g. `version = 2`",
        );
        return None;
    };
    match lit.base10_parse::<u32>() {
        Ok(0) => errors.at(lit, "`version` starts at 1"),
        Ok(version) => return Some(version),
        Err(_) => errors.at(lit, format!("`version` is at most {}", u32::MAX)),
    }
    None
}

fn rename(value: &Expr, errors: &mut Errors) -> Option<(String, Span)> {
    let Expr::Lit(ExprLit {
        lit: Lit::Str(lit), ..
    }) = value
    else {
        errors.at(
            value,
            "`rename` expects a string literal, e.g. `rename = \"MoneyDeposited\"`",
        );
        return None;
    };
    let name = lit.value();
    if name.is_empty() {
        errors.at(
            lit,
            "`rename` needs a name: an empty event type name cannot be stored",
        );
        return None;
    }
    if !is_valid_type_name(&name) {
        errors.at(lit, invalid_name_message(&name));
        return None;
    }
    Some((name, lit.span()))
}

/// The rule the event store applies to stored type names.
fn is_valid_type_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

fn invalid_name_message(name: &str) -> String {
    format!(
        "invalid event type name `{name}`: use 1 to 128 ASCII letters, digits, `_`, `-`, `.` or `:`"
    )
}

/// The stored type names claimed so far, to catch duplicates.
#[derive(Default)]
pub(super) struct TypeNames(Vec<(String, String)>);

impl TypeNames {
    /// The stored name of `ident` (renamed or not), recording an error if it
    /// is invalid or already taken by an earlier variant.
    pub(super) fn claim(
        &mut self,
        ident: &Ident,
        rename: Option<(String, Span)>,
        errors: &mut Errors,
    ) -> String {
        let owner = ident.unraw().to_string();
        let (name, span) = match rename {
            Some(renamed) => renamed,
            None => {
                let name = owner.clone();
                if !is_valid_type_name(&name) {
                    errors.at(
                        ident,
                        format!(
                            "{}; rename it with `#[event(rename = \"...\")]`",
                            invalid_name_message(&name)
                        ),
                    );
                }
                (name, ident.span())
            }
        };
        if let Some((_, first)) = self.0.iter().find(|(taken, _)| *taken == name) {
            errors.push(syn::Error::new(
                span,
                format!("event type `{name}` is already used by variant `{first}`"),
            ));
        }
        self.0.push((name.clone(), owner));
        name
    }
}

#[cfg(test)]
mod tests {
    use super::is_valid_type_name;

    #[test]
    fn type_names_follow_the_store_rule() {
        for name in [
            "MoneyDeposited",
            "account.deposited",
            "v2:opened_at-x",
            &"a".repeat(128),
        ] {
            assert!(is_valid_type_name(name), "{name}");
        }
        for name in ["", "money deposited", "Über", "a/b", &"a".repeat(129)] {
            assert!(!is_valid_type_name(name), "{name}");
        }
    }
}
