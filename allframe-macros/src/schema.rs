//! JSON Schemas for wire types, shared by `#[command]` (the body) and
//! `#[derive(Event)]` (each payload).
//!
//! The fields are copied onto a private mirror struct that derives utoipa's
//! `ToSchema`, so field types, `Option`s, doc comments and serde renames
//! come out exactly as utoipa writes them, and the user's type needs no
//! utoipa derive. A `Deserialize` derive on the mirror only makes its
//! `#[serde]` attributes legal. garde's rules, which utoipa does not read,
//! become `WireSchema::constrain` calls.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::{
    Attribute, Expr, ExprLit, Field, FieldsNamed, Ident, Lit, LitInt, LitStr, Meta, Token, Type,
};

/// A field as the mirror needs it.
pub(crate) struct SchemaField<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) ty: &'a Type,
    /// Its doc comments and `#[serde]` attributes.
    pub(crate) attrs: Vec<&'a Attribute>,
}

impl<'a> SchemaField<'a> {
    /// The parts of `field` the schema depends on; `None` for an unnamed
    /// field.
    pub(crate) fn of(field: &'a Field) -> Option<Self> {
        Some(Self {
            ident: field.ident.as_ref()?,
            ty: &field.ty,
            attrs: field
                .attrs
                .iter()
                .filter(|attr| is_doc_or_serde(attr))
                .collect(),
        })
    }
}

/// A struct's doc comments and the container serde options that shape its
/// schema, for the mirror.
pub(crate) fn struct_attrs(attrs: &[Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("doc"))
        .cloned()
        .chain(crate::command::check::wire::container_attrs(attrs))
        .collect()
}

/// Whether `attr` is a doc comment or `#[serde(...)]`.
pub(crate) fn is_doc_or_serde(attr: &Attribute) -> bool {
    attr.path().is_ident("doc") || attr.path().is_ident("serde")
}

/// An expression of type `WireSchema`: the object `fields` make, described
/// by the doc comments among `attrs` and renamed by the `#[serde]` ones,
/// followed by `constraints` (`.constrain(...)` calls).
pub(crate) fn object(
    attrs: &[&Attribute],
    fields: &[&SchemaField<'_>],
    constraints: &[TokenStream],
) -> TokenStream {
    let idents = fields.iter().map(|field| field.ident);
    let types = fields.iter().map(|field| field.ty);
    let field_attrs = fields.iter().map(|field| &field.attrs);
    quote! {{
        use ::allframe::__private::utoipa;
        #[derive(utoipa::ToSchema, ::allframe::__private::serde::Deserialize)]
        #[serde(crate = "::allframe::__private::serde")]
        #(#attrs)*
        #[allow(dead_code)]
        struct __AllFrameSchema {
            #( #(#field_attrs)* #idents: #types, )*
        }
        ::allframe::__private::WireSchema::of::<__AllFrameSchema>()
            #(#constraints)*
    }}
}

/// The schema of a struct clients send or read (a command body, a query's
/// parameters, a projection row): its `fields` through the mirror, then
/// what garde checks on each, under its wire name. `attrs` are the
/// struct's doc comments and schema-shaping serde options; `renamed` lists
/// `(rust name, wire name)` of the fields whose names differ.
pub(crate) fn fields_object(
    attrs: &[Attribute],
    fields: &FieldsNamed,
    renamed: &[(String, String)],
) -> TokenStream {
    let schema_fields: Vec<SchemaField<'_>> =
        fields.named.iter().filter_map(SchemaField::of).collect();
    let constraints: Vec<TokenStream> = fields
        .named
        .iter()
        .filter_map(|field| garde_constraints(field, &wire_name(renamed, field.ident.as_ref()?)))
        .collect();
    let attrs: Vec<&Attribute> = attrs.iter().collect();
    let schema_fields: Vec<&SchemaField<'_>> = schema_fields.iter().collect();
    object(&attrs, &schema_fields, &constraints)
}

/// The name clients know `field` by: its entry in `renamed`, or its Rust
/// name.
pub(crate) fn wire_name(renamed: &[(String, String)], field: &Ident) -> String {
    let rust = field.unraw().to_string();
    renamed
        .iter()
        .find(|(name, _)| *name == rust)
        .map_or(rust.clone(), |(_, wire)| wire.clone())
}

/// The `.constrain(wire, &[...])` call for what garde checks on `field`,
/// or nothing. Malformed `#[garde]` attributes are garde's to report.
pub(crate) fn garde_constraints(field: &Field, wire: &str) -> Option<TokenStream> {
    let rules: Vec<TokenStream> = field
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("garde"))
        .filter_map(|attr| {
            attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
                .ok()
        })
        .flatten()
        .filter_map(|rule| constraint(&rule))
        .collect();
    (!rules.is_empty())
        .then(|| quote!(.constrain(#wire, &[#(::allframe::__private::Constraint::#rules),*])))
}

/// One garde rule as a `Constraint` variant (without its path), when JSON
/// Schema can say it.
fn constraint(rule: &Meta) -> Option<TokenStream> {
    let name = rule.path().get_ident()?.to_string();
    match (name.as_str(), rule) {
        ("email", Meta::Path(_)) => Some(quote!(Email)),
        ("url", Meta::Path(_)) => Some(quote!(Url)),
        ("ipv4", Meta::Path(_)) => Some(quote!(Ipv4)),
        ("ipv6", Meta::Path(_)) => Some(quote!(Ipv6)),
        ("required", Meta::Path(_)) => Some(quote!(Required)),
        ("pattern", Meta::List(list)) => {
            // A compiled regex given by path has no literal to publish.
            let pattern: LitStr = list.parse_args().ok()?;
            Some(quote!(Pattern(#pattern)))
        }
        ("length", Meta::List(list)) => {
            let args = list
                .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
                .ok()?;
            let mut mode = quote!(Simple);
            for arg in &args {
                if let Meta::Path(path) = arg {
                    mode = match path.get_ident()?.to_string().as_str() {
                        "simple" => quote!(Simple),
                        "bytes" => quote!(Bytes),
                        "chars" => quote!(Chars),
                        "graphemes" => quote!(Graphemes),
                        "utf16" => quote!(Utf16),
                        _ => return None,
                    };
                }
            }
            let (min, max) = bounds(&args, |expr| quote!((#expr) as u64))?;
            Some(quote!(Length {
                mode: ::allframe::__private::LengthMode::#mode,
                min: #min,
                max: #max,
            }))
        }
        ("range", Meta::List(list)) => {
            let args = list
                .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
                .ok()?;
            let (min, max) = bounds(&args, |expr| {
                let expr = typed_literal(expr);
                quote!(::allframe::__private::serde_json::json!(#expr))
            })?;
            Some(quote!(Range {
                min: #min,
                max: #max,
            }))
        }
        _ => None,
    }
}

/// `Option` expressions for `min` and `max` (`equal` sets both).
fn bounds(
    args: &Punctuated<Meta, Token![,]>,
    convert: impl Fn(&Expr) -> TokenStream,
) -> Option<(TokenStream, TokenStream)> {
    let mut min = quote!(::core::option::Option::None);
    let mut max = min.clone();
    for arg in args {
        let Meta::NameValue(pair) = arg else {
            continue;
        };
        let value = convert(&pair.value);
        let some = quote!(::core::option::Option::Some(#value));
        match pair.path.get_ident()?.to_string().as_str() {
            "min" => min = some,
            "max" => max = some,
            "equal" => {
                min = some.clone();
                max = some;
            }
            _ => {}
        }
    }
    Some((min, max))
}

/// An unsuffixed integer literal would be inferred as `i32` inside
/// `json!`; give it a 64-bit suffix so any bound garde accepts fits.
fn typed_literal(expr: &Expr) -> TokenStream {
    let suffixed = |int: &LitInt, suffix: &str| {
        LitInt::new(&format!("{}{suffix}", int.base10_digits()), int.span())
    };
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) if int.suffix().is_empty() => suffixed(int, "u64").into_token_stream(),
        Expr::Unary(unary) if matches!(unary.op, syn::UnOp::Neg(_)) => match &*unary.expr {
            Expr::Lit(ExprLit {
                lit: Lit::Int(int), ..
            }) if int.suffix().is_empty() => {
                let int = suffixed(int, "i64");
                quote!(-#int)
            }
            _ => expr.into_token_stream(),
        },
        _ => expr.into_token_stream(),
    }
}
