//! The `#[event(...)]` options of one place and the stored type names they
//! produce: keys, values, validity and uniqueness.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Ident, Lit, LitInt, Meta, Path, Token, Type};

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
    /// Earlier stored names of this type, each with its literal's span.
    pub(super) aliases: Vec<(String, Span)>,
    /// `upcast(N = …)` steps, as written.
    pub(super) steps: Vec<Step>,
    /// The `upcast` key, where one was written.
    pub(super) upcast_span: Option<Span>,
}

/// One step of an upcast chain: how data stored at version `from` moves on.
pub(crate) struct Step {
    pub(crate) from: u32,
    /// The version literal.
    pub(crate) span: Span,
    pub(crate) kind: StepKind,
}

/// What a step does.
pub(crate) enum StepKind {
    /// `N = path`: a function turning the JSON of version N into that of
    /// version N + 1.
    Json(Path),
    /// `N = from(Type)`: the data of version N deserializes as `Type`,
    /// which becomes today's event through `From`.
    Typed(Type),
}

/// `N = path` or `N = from(Type)`, as written.
struct StepSyntax {
    version: LitInt,
    kind: StepKind,
}

impl Parse for StepSyntax {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let version: LitInt = input.parse()?;
        input.parse::<Token![=]>()?;
        let typed = input.peek(Ident) && input.peek2(syn::token::Paren) && {
            let fork = input.fork();
            fork.parse::<Ident>().is_ok_and(|ident| ident == "from")
        };
        let kind = if typed {
            input.parse::<Ident>()?;
            let content;
            syn::parenthesized!(content in input);
            StepKind::Typed(content.parse()?)
        } else {
            StepKind::Json(input.parse()?)
        };
        Ok(StepSyntax { version, kind })
    }
}

const UPCAST_EXAMPLE: &str = "expected `upcast(1 = opened_v1_to_v2)` (a function from the JSON of version 1 to that of version 2) \
     or `upcast(1 = from(OpenedV1))` (a type the data of version 1 deserializes as, converted with `From`)";

/// Reads an `upcast(...)` list into `options`.
fn upcast(meta: &Meta, place: Place, options: &mut Options, errors: &mut Errors) {
    if place == Place::Enum {
        errors.at(
            meta.path(),
            "`upcast` belongs to a variant: each stored type has its own chain of versions",
        );
        return;
    }
    if options.upcast_span.is_some() {
        errors.at(
            meta.path(),
            "duplicate event option `upcast`; list every step in one `upcast(...)`",
        );
        return;
    }
    options.upcast_span = Some(meta.path().span());
    let Meta::List(list) = meta else {
        errors.at(meta, UPCAST_EXAMPLE);
        return;
    };
    let steps = match list.parse_args_with(Punctuated::<StepSyntax, Token![,]>::parse_terminated) {
        Ok(steps) => steps,
        Err(error) => {
            errors.push(syn::Error::new(
                error.span(),
                format!("{error}; {UPCAST_EXAMPLE}"),
            ));
            return;
        }
    };
    if steps.is_empty() {
        errors.at(meta, UPCAST_EXAMPLE);
    }
    for step in steps {
        let from = match step.version.base10_parse::<u32>() {
            Ok(0) => {
                errors.at(&step.version, "versions start at 1");
                continue;
            }
            Ok(from) => from,
            Err(_) => {
                errors.at(&step.version, "expected a version, e.g. `1`");
                continue;
            }
        };
        if options.steps.iter().any(|earlier| earlier.from == from) {
            errors.at(
                &step.version,
                format!("version {from} already has an upcast step"),
            );
            continue;
        }
        options.steps.push(Step {
            from,
            span: step.version.span(),
            kind: step.kind,
        });
    }
}

/// Reads one place's options, recording unknown, duplicate and invalid ones.
pub(super) fn options(items: &[Meta], place: Place, errors: &mut Errors) -> Options {
    const VERSION: (&str, &str) = ("version", "version = 2");
    const RENAME: (&str, &str) = ("rename", "rename = \"Name\"");
    const ALIAS: (&str, &str) = ("alias", "alias = \"OldName\"");
    const UPCAST: (&str, &str) = ("upcast", "upcast(1 = step)");
    let (allowed, misplaced): (&[_], &[_]) = match place {
        Place::Enum => (
            &[VERSION],
            &[
                (
                    "rename",
                    "`rename` names one stored type: put it on a variant, not on the enum",
                ),
                (
                    "alias",
                    "`alias` names an earlier name of one stored type: put it on a variant, not on the enum",
                ),
            ],
        ),
        // `upcast` is read above; it is listed for the message.
        Place::Variant | Place::Struct => (&[RENAME, VERSION, ALIAS, UPCAST], &[]),
    };
    let mut options = Options::default();
    let (upcasts, rest): (Vec<&Meta>, Vec<&Meta>) = items
        .iter()
        .partition(|item| item.path().is_ident("upcast"));
    for meta in upcasts {
        upcast(meta, place, &mut options, errors);
    }
    let rest: Vec<Meta> = rest.into_iter().cloned().collect();
    key_values(
        &rest,
        "event",
        allowed,
        misplaced,
        errors,
        |key, value, errors| match key {
            "version" => options.version = version(value, errors),
            "rename" => options.rename = rename(value, errors),
            _ => options.aliases = aliases(value, errors),
        },
    );
    options
}

/// `alias = "Old"` or `alias = ["Old", "Older"]`.
fn aliases(value: &Expr, errors: &mut Errors) -> Vec<(String, Span)> {
    let literals: Vec<&Expr> = match value {
        Expr::Array(array) => array.elems.iter().collect(),
        single => vec![single],
    };
    let mut names = Vec::new();
    for literal in literals {
        let Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) = literal
        else {
            errors.at(
                literal,
                "`alias` expects a string literal or an array of them, e.g. `alias = \"AccountCreated\"`",
            );
            continue;
        };
        let name = lit.value();
        if !is_valid_type_name(&name) {
            errors.at(lit, invalid_name_message(&name));
            continue;
        }
        names.push((name, lit.span()));
    }
    names
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
        self.take(&name, span, owner, errors);
        name
    }

    /// Claims the earlier names `aliases` for `ident`, recording an error
    /// for each already taken.
    pub(super) fn claim_aliases(
        &mut self,
        ident: &Ident,
        aliases: &[(String, Span)],
        errors: &mut Errors,
    ) {
        for (alias, span) in aliases {
            self.take(alias, *span, ident.unraw().to_string(), errors);
        }
    }

    fn take(&mut self, name: &str, span: Span, owner: String, errors: &mut Errors) {
        if let Some((_, first)) = self.0.iter().find(|(taken, _)| taken == name) {
            errors.push(syn::Error::new(
                span,
                format!("event type `{name}` is already used by variant `{first}`"),
            ));
        }
        self.0.push((name.to_owned(), owner));
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
