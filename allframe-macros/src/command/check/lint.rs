//! A lint on garde rules: `length(...)` without a mode counts bytes for
//! strings, while the JSON Schema published for the command counts
//! characters, so a limit would mean two things. The mode must be written.

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use syn::{Field, FieldsNamed, GenericArgument, Meta, PathArguments, Type};

use crate::diagnostics::Errors;

const MODES: [&str; 5] = ["simple", "bytes", "chars", "graphemes", "utf16"];

const MESSAGE: &str = "write `length(chars, ...)` so the limit counts characters, as JSON Schema \
                       does (or `length(bytes, ...)` to count bytes on purpose)";

/// Records every `length(...)` in the fields' `#[garde(...)]` rules that
/// does not start with a mode. A top-level `length` on a field that is
/// plainly a collection (`Vec<T>`, maps, sets, arrays, slices, or an
/// `Option` of one) counts items, means the same in JSON Schema and is left
/// alone; `inner(length(...))` is checked, as it usually limits strings.
pub(crate) fn garde_length_modes(fields: &FieldsNamed, errors: &mut Errors) {
    for field in &fields.named {
        let collection = is_collection(&field.ty);
        for tokens in garde_rules(field) {
            check(tokens.clone(), !collection, errors);
        }
    }
}

fn garde_rules(field: &Field) -> impl Iterator<Item = &TokenStream> {
    field.attrs.iter().filter_map(|attr| match &attr.meta {
        Meta::List(list) if list.path.is_ident("garde") => Some(&list.tokens),
        _ => None,
    })
}

/// Walks one rule list; `strings` says whether a `length` here limits a
/// string rather than a collection.
fn check(tokens: TokenStream, strings: bool, errors: &mut Errors) {
    let mut tokens = tokens.into_iter().peekable();
    while let Some(token) = tokens.next() {
        match token {
            TokenTree::Ident(ident) if ident == "length" => {
                if let Some(TokenTree::Group(args)) = tokens.peek()
                    && args.delimiter() == Delimiter::Parenthesis
                {
                    if strings && !has_mode(args.stream()) {
                        errors.at(&ident, MESSAGE);
                    }
                    tokens.next();
                }
            }
            // Rules nested in `inner(...)` and the like apply to elements.
            TokenTree::Group(group) => check(group.stream(), true, errors),
            _ => {}
        }
    }
}

fn has_mode(args: TokenStream) -> bool {
    let mut args = args.into_iter();
    let first_is_mode = matches!(
        args.next(),
        Some(TokenTree::Ident(ident)) if MODES.iter().any(|mode| ident == mode)
    );
    first_is_mode && matches!(args.next(), None | Some(TokenTree::Punct(_)))
}

fn is_collection(ty: &Type) -> bool {
    const COLLECTIONS: [&str; 9] = [
        "Vec",
        "VecDeque",
        "LinkedList",
        "BinaryHeap",
        "HashSet",
        "BTreeSet",
        "HashMap",
        "BTreeMap",
        "IndexMap",
    ];
    match ty {
        Type::Array(_) | Type::Slice(_) => true,
        Type::Reference(reference) => is_collection(&reference.elem),
        Type::Group(group) => is_collection(&group.elem),
        Type::Paren(paren) => is_collection(&paren.elem),
        Type::Path(path) if path.qself.is_none() => {
            let Some(last) = path.path.segments.last() else {
                return false;
            };
            if COLLECTIONS.iter().any(|name| last.ident == name) {
                return true;
            }
            match &last.arguments {
                PathArguments::AngleBracketed(args) if last.ident == "Option" => {
                    matches!(args.args.first(), Some(GenericArgument::Type(inner)) if is_collection(inner))
                }
                _ => false,
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::garde_length_modes;
    use crate::diagnostics::Errors;

    fn flagged(fields: syn::FieldsNamed) -> usize {
        let mut errors = Errors::default();
        garde_length_modes(&fields, &mut errors);
        errors.finish().map_or(0, |error| error.into_iter().count())
    }

    #[test]
    fn length_without_a_mode_is_flagged() {
        assert_eq!(
            flagged(parse_quote!({ #[garde(length(min = 1))] a: String })),
            1
        );
        assert_eq!(
            flagged(parse_quote!({ #[garde(ascii, length(max = 3))] a: String })),
            1
        );
        assert_eq!(
            flagged(parse_quote!({ #[garde(inner(length(max = 3)))] a: Vec<String> })),
            1
        );
        assert_eq!(
            flagged(parse_quote!({ #[garde(length(charsx, max = 3))] a: String })),
            1
        );
    }

    #[test]
    fn length_with_a_mode_or_on_a_collection_is_accepted() {
        for fields in [
            parse_quote!({ #[garde(length(chars, min = 1, max = 100))] a: String }),
            parse_quote!({ #[garde(length(bytes, max = 3))] a: String }),
            parse_quote!({ #[garde(length(graphemes, max = 3), ascii)] a: String }),
            parse_quote!({ #[garde(length(min = 1))] a: Vec<u64> }),
            parse_quote!({ #[garde(length(max = 9), inner(length(chars, max = 3)))] a: Option<Vec<String>> }),
            parse_quote!({ #[garde(range(min = 1))] #[serde(default)] a: u64 }),
        ] {
            assert_eq!(flagged(fields), 0);
        }
    }
}
