//! Names derived from Rust identifiers: the kebab-case used for command,
//! query and projection names and domain error codes.

use syn::ext::IdentExt;
use syn::{Expr, ExprLit, Ident, Lit};

use crate::diagnostics::Errors;

/// How one kind of registered thing (command, query, projection) is named:
/// kebab-case, from `name = "..."` or from the Rust name.
#[derive(Clone, Copy)]
pub(crate) struct Naming {
    /// What is named, e.g. `command`.
    pub(crate) kind: &'static str,
    /// A valid name to show in messages.
    pub(crate) example: &'static str,
}

impl Naming {
    /// Why `name` is not a valid name.
    pub(crate) fn invalid(self, name: &str) -> String {
        format!(
            "invalid {} name `{name}`: use kebab-case, lowercase ASCII letters and digits \
             with single `-` between words, e.g. `{}`",
            self.kind, self.example
        )
    }

    /// The name `name = value` sets, recording an error at the value when
    /// it is not a string literal holding a valid name.
    pub(crate) fn parse_option(self, value: &Expr, errors: &mut Errors) -> Option<String> {
        let Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) = value
        else {
            errors.at(
                value,
                format!(
                    "`name` expects a string literal, e.g. `name = \"{}\"`",
                    self.example
                ),
            );
            return None;
        };
        let name = lit.value();
        if !is_kebab_case(&name) {
            errors.at(lit, self.invalid(&name));
            return None;
        }
        Some(name)
    }

    /// The default name: `ident` in kebab-case, recording an error at it
    /// when that is not a valid name.
    pub(crate) fn default_for(self, ident: &Ident, errors: &mut Errors) -> Option<String> {
        let name = kebab_case(&ident.unraw().to_string());
        if is_kebab_case(&name) {
            return Some(name);
        }
        errors.at(
            ident,
            format!("{}; set it with `name = \"...\"`", self.invalid(&name)),
        );
        None
    }
}

/// The kebab-case form of a type or variant name: a word starts at an
/// uppercase letter after a lowercase letter or digit, at the last capital
/// of an acronym followed by a lowercase letter (`HTTPPing` → `http-ping`),
/// and after each `_` (`open_account` → `open-account`).
pub(crate) fn kebab_case(ident: &str) -> String {
    let chars: Vec<char> = ident.chars().collect();
    let mut kebab = String::with_capacity(ident.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            push_separator(&mut kebab);
            continue;
        }
        if c.is_uppercase() && i > 0 {
            let previous = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|next| next.is_lowercase());
            if previous.is_lowercase()
                || previous.is_ascii_digit()
                || (previous.is_uppercase() && next_is_lower)
            {
                push_separator(&mut kebab);
            }
        }
        kebab.extend(c.to_lowercase());
    }
    kebab.truncate(kebab.trim_end_matches('-').len());
    kebab
}

fn push_separator(kebab: &mut String) {
    if !kebab.is_empty() && !kebab.ends_with('-') {
        kebab.push('-');
    }
}

/// Whether `name` is non-empty kebab-case: lowercase ASCII letters and
/// digits, words joined by single `-`.
pub(crate) fn is_kebab_case(name: &str) -> bool {
    !name.is_empty()
        && name.split('-').all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use super::{is_kebab_case, kebab_case};

    #[test]
    fn identifiers_become_kebab_case() {
        for (ident, kebab) in [
            ("OpenAccount", "open-account"),
            ("Deposit", "deposit"),
            ("InsufficientFunds", "insufficient-funds"),
            ("HTTPPing", "http-ping"),
            ("ParseURL", "parse-url"),
            ("V2Deposit", "v2-deposit"),
            ("Deposit2", "deposit2"),
            ("open_account", "open-account"),
            ("Open_Account_", "open-account"),
            ("A", "a"),
        ] {
            assert_eq!(kebab_case(ident), kebab, "{ident}");
        }
    }

    #[test]
    fn kebab_case_is_recognised() {
        for name in ["deposit", "open-account", "v2-deposit", "a1-b2"] {
            assert!(is_kebab_case(name), "{name}");
        }
        for name in [
            "",
            "Deposit",
            "open--account",
            "-open",
            "open-",
            "open_account",
            "dépôt",
        ] {
            assert!(!is_kebab_case(name), "{name}");
        }
    }
}
