//! Wire names: the serde name each top-level field has in a request body,
//! so validation errors point at what the client sent.
//!
//! Reads `#[serde(rename = ...)]` on fields and `#[serde(rename_all = ...)]`
//! on the struct, applying serde's own rules; the `deserialize` half of a
//! split `rename(serialize = ..., deserialize = ...)` wins, because requests
//! are deserialized. Malformed `#[serde]` attributes are left for serde's
//! derive to report.

use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, FieldsNamed, LitStr, Token};

/// `(rust name, wire name)` of every field whose names differ.
pub(crate) fn wire_names(
    struct_attrs: &[Attribute],
    fields: &FieldsNamed,
) -> Vec<(String, String)> {
    let rule = serde_value(struct_attrs, "rename_all").and_then(|rule| RenameRule::parse(&rule));
    fields
        .named
        .iter()
        .filter_map(|field| {
            let rust = field.ident.as_ref()?.unraw().to_string();
            let wire = serde_value(&field.attrs, "rename").unwrap_or_else(|| match rule {
                Some(rule) => rule.apply_to_field(&rust),
                None => rust.clone(),
            });
            (wire != rust).then_some((rust, wire))
        })
        .collect()
}

/// The container's `#[serde(...)]` options that shape the body's schema,
/// rebuilt as attributes for the schema mirror: `rename_all` and
/// `deny_unknown_fields`. Others (`default`, `from`, `bound`, …) would ask
/// the mirror for impls it does not have, and do not change the schema.
pub(crate) fn container_attrs(struct_attrs: &[Attribute]) -> Vec<Attribute> {
    let mut attrs: Vec<Attribute> = Vec::new();
    if let Some(rule) = serde_value(struct_attrs, "rename_all") {
        attrs.push(syn::parse_quote!(#[serde(rename_all = #rule)]));
    }
    let mut deny = false;
    for attr in struct_attrs
        .iter()
        .filter(|attr| attr.path().is_ident("serde"))
    {
        let _ = attr.parse_nested_meta(|meta| {
            deny |= meta.path.is_ident("deny_unknown_fields");
            skip(&meta)
        });
    }
    if deny {
        attrs.push(syn::parse_quote!(#[serde(deny_unknown_fields)]));
    }
    attrs
}

/// The deserialize-side value of `#[serde(key = "...")]` or
/// `#[serde(key(deserialize = "..."))]` among `attrs`.
fn serde_value(attrs: &[Attribute], key: &str) -> Option<String> {
    let mut found = None;
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("serde")) {
        // An error here is serde's to report; what was read before it stands.
        let _ = attr.parse_nested_meta(|meta| {
            if !meta.path.is_ident(key) {
                return skip(&meta);
            }
            if meta.input.peek(Token![=]) {
                found = Some(meta.value()?.parse::<LitStr>()?.value());
                return Ok(());
            }
            meta.parse_nested_meta(|side| {
                if side.path.is_ident("deserialize") {
                    found = Some(side.value()?.parse::<LitStr>()?.value());
                    Ok(())
                } else {
                    skip(&side)
                }
            })
        });
    }
    found
}

/// Consumes the value of a serde option this module does not read.
fn skip(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
        meta.input.parse::<proc_macro2::TokenTree>()?;
    }
    Ok(())
}

/// serde's `rename_all` rules, applied to field names as serde does: it
/// assumes the Rust name is snake_case.
#[derive(Clone, Copy, Debug, PartialEq)]
enum RenameRule {
    Lower,
    Upper,
    Pascal,
    Camel,
    Snake,
    ScreamingSnake,
    Kebab,
    ScreamingKebab,
}

impl RenameRule {
    fn parse(rule: &str) -> Option<Self> {
        Some(match rule {
            "lowercase" => Self::Lower,
            "UPPERCASE" => Self::Upper,
            "PascalCase" => Self::Pascal,
            "camelCase" => Self::Camel,
            "snake_case" => Self::Snake,
            "SCREAMING_SNAKE_CASE" => Self::ScreamingSnake,
            "kebab-case" => Self::Kebab,
            "SCREAMING-KEBAB-CASE" => Self::ScreamingKebab,
            _ => return None,
        })
    }

    fn apply_to_field(self, field: &str) -> String {
        match self {
            Self::Lower | Self::Snake => field.to_owned(),
            Self::Upper | Self::ScreamingSnake => field.to_ascii_uppercase(),
            Self::Pascal => {
                let mut pascal = String::with_capacity(field.len());
                let mut capitalize = true;
                for c in field.chars() {
                    if c == '_' {
                        capitalize = true;
                    } else if capitalize {
                        pascal.push(c.to_ascii_uppercase());
                        capitalize = false;
                    } else {
                        pascal.push(c);
                    }
                }
                pascal
            }
            Self::Camel => {
                let pascal = Self::Pascal.apply_to_field(field);
                let mut chars = pascal.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
                    None => pascal,
                }
            }
            Self::Kebab => field.replace('_', "-"),
            Self::ScreamingKebab => field.to_ascii_uppercase().replace('_', "-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::{RenameRule, wire_names};

    #[test]
    fn rename_rules_follow_serde() {
        let cases = [
            ("lowercase", "account_id"),
            ("UPPERCASE", "ACCOUNT_ID"),
            ("PascalCase", "AccountId"),
            ("camelCase", "accountId"),
            ("snake_case", "account_id"),
            ("SCREAMING_SNAKE_CASE", "ACCOUNT_ID"),
            ("kebab-case", "account-id"),
            ("SCREAMING-KEBAB-CASE", "ACCOUNT-ID"),
        ];
        for (rule, wire) in cases {
            let rule = RenameRule::parse(rule).unwrap();
            assert_eq!(rule.apply_to_field("account_id"), wire, "{rule:?}");
        }
        assert_eq!(RenameRule::parse("Title Case"), None);
    }

    #[test]
    fn field_renames_win_over_rename_all() {
        let input: syn::DeriveInput = parse_quote! {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields, rename_all = "camelCase")]
            struct Deposit {
                account_id: String,
                #[serde(rename = "sum", default)]
                amount: u64,
                #[serde(rename(serialize = "out", deserialize = "in"))]
                memo: String,
                #[serde(with = "x", rename_all = "ignored")]
                r#type: String,
            }
        };
        let syn::Data::Struct(syn::DataStruct {
            fields: syn::Fields::Named(fields),
            ..
        }) = &input.data
        else {
            unreachable!()
        };
        let names = wire_names(&input.attrs, fields);
        let expected = [
            ("account_id", "accountId"),
            ("amount", "sum"),
            ("memo", "in"),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(names, expected);
    }
}
