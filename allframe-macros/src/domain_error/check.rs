//! Stage 2: judges the raw model — option keys and values, codes and their
//! uniqueness, statuses — and builds the checked model that expansion
//! trusts. Every mistake is recorded at its own span.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::{Expr, ExprLit, Generics, Ident, Lit, Meta};

use super::parse::{RawBody, RawDomainError};
use crate::case::{is_kebab_case, kebab_case};
use crate::diagnostics::{Errors, key_values};

/// The status of a domain refusal unless one is given.
const DEFAULT_STATUS: u16 = 422;

/// A valid domain error type.
pub(super) struct DomainError<'a> {
    pub(super) ident: &'a Ident,
    pub(super) generics: &'a Generics,
    pub(super) shape: Shape<'a>,
}

/// An enum has one code per variant; a struct has one code.
pub(super) enum Shape<'a> {
    Enum(Vec<Refusal<'a>>),
    Struct(Refusal<'a>),
}

/// One kind of refusal: an enum variant, or the struct itself.
pub(super) struct Refusal<'a> {
    pub(super) ident: &'a Ident,
    pub(super) code: String,
    pub(super) status: u16,
}

/// Where a `#[domain_error(...)]` attribute was written.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    Enum,
    Variant,
    Struct,
}

/// Accepted values of one place's options.
#[derive(Default)]
struct Options {
    /// The code and the span of its literal.
    code: Option<(String, Span)>,
    status: Option<u16>,
}

/// Judges `raw`; `None` only for unions. The result is meaningful only when
/// no error was recorded.
pub(super) fn check<'a>(raw: RawDomainError<'a>, errors: &mut Errors) -> Option<DomainError<'a>> {
    for attr in raw.field_attrs {
        errors.at(
            attr,
            "`#[domain_error]` does not apply to fields; put it on the type or a variant",
        );
    }
    let mut codes = Codes::default();
    let shape = match raw.body {
        RawBody::Enum(variants) => {
            let defaults = options(&raw.options, Place::Enum, errors);
            let refusals = variants
                .into_iter()
                .map(|variant| {
                    let options = options(&variant.options, Place::Variant, errors);
                    Refusal {
                        ident: variant.ident,
                        code: codes.claim(variant.ident, options.code, errors),
                        status: options.status.or(defaults.status).unwrap_or(DEFAULT_STATUS),
                    }
                })
                .collect();
            Shape::Enum(refusals)
        }
        RawBody::Struct => {
            let options = options(&raw.options, Place::Struct, errors);
            Shape::Struct(Refusal {
                ident: raw.ident,
                code: codes.claim(raw.ident, options.code, errors),
                status: options.status.unwrap_or(DEFAULT_STATUS),
            })
        }
        RawBody::Union(token) => {
            errors.at(
                token,
                "unions cannot be domain errors: use an enum or a struct",
            );
            return None;
        }
    };
    Some(DomainError {
        ident: raw.ident,
        generics: raw.generics,
        shape,
    })
}

/// Reads one place's options, recording unknown, duplicate and invalid ones.
fn options(items: &[Meta], place: Place, errors: &mut Errors) -> Options {
    let misplaced: &[_] = match place {
        Place::Enum => &[(
            "code",
            "`code` names one kind of refusal: put it on a variant, not on the enum",
        )],
        Place::Variant | Place::Struct => &[],
    };
    let allowed = [
        ("code", "code = \"insufficient-funds\""),
        ("status", "status = 409"),
    ];
    let mut options = Options::default();
    key_values(
        items,
        "domain error",
        &allowed,
        misplaced,
        errors,
        |key, value, errors| {
            if key == "code" {
                options.code = code(value, errors);
            } else {
                options.status = status(value, errors);
            }
        },
    );
    options
}

fn code(value: &Expr, errors: &mut Errors) -> Option<(String, Span)> {
    let Expr::Lit(ExprLit {
        lit: Lit::Str(lit), ..
    }) = value
    else {
        errors.at(
            value,
            "`code` expects a string literal, e.g. `code = \"insufficient-funds\"`",
        );
        return None;
    };
    let code = lit.value();
    if !is_kebab_case(&code) {
        errors.at(lit, invalid_code_message(&code));
        return None;
    }
    Some((code, lit.span()))
}

fn status(value: &Expr, errors: &mut Errors) -> Option<u16> {
    const RANGE: &str = "`status` is an HTTP error status, 400 to 599";
    let Expr::Lit(ExprLit {
        lit: Lit::Int(lit), ..
    }) = value
    else {
        errors.at(value, format!("{RANGE}, e.g. `status = 409`"));
        return None;
    };
    match lit.base10_parse::<u16>() {
        Ok(status) if (400..=599).contains(&status) => Some(status),
        _ => {
            errors.at(lit, RANGE);
            None
        }
    }
}

fn invalid_code_message(code: &str) -> String {
    format!(
        "invalid domain error code `{code}`: use kebab-case, lowercase ASCII letters and \
         digits with single `-` between words, e.g. `insufficient-funds`"
    )
}

/// The codes claimed so far, to catch duplicates.
#[derive(Default)]
struct Codes(Vec<(String, String)>);

impl Codes {
    /// The code of `ident` (given or derived from its name), recording an
    /// error if it is invalid or already taken by an earlier variant.
    fn claim(
        &mut self,
        ident: &Ident,
        code: Option<(String, Span)>,
        errors: &mut Errors,
    ) -> String {
        let owner = ident.unraw().to_string();
        let (code, span) = match code {
            Some(given) => given,
            None => {
                let code = kebab_case(&owner);
                if !is_kebab_case(&code) {
                    errors.at(
                        ident,
                        format!(
                            "{}; set one with `#[domain_error(code = \"...\")]`",
                            invalid_code_message(&code)
                        ),
                    );
                }
                (code, ident.span())
            }
        };
        if let Some((_, first)) = self.0.iter().find(|(taken, _)| *taken == code) {
            errors.at_span(
                span,
                format!("domain error code `{code}` is already used by variant `{first}`"),
            );
        }
        self.0.push((code.clone(), owner));
        code
    }
}
