//! Stage 3: writes `impl ::allframe::__private::Event` from the checked
//! model, or a stub impl when checking failed.
//!
//! Named fields travel through generated mirror structs — borrowed for
//! encoding, owned for decoding — that carry the fields' `#[serde(...)]`
//! attributes, so the event type itself needs no serde derive.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Generics, Ident, parse_quote};

use super::check::{Event, Field, Shape, StepKind, Variant, VariantData};

/// The `Event` impl for a checked event type.
pub(super) fn expand(event: &Event<'_>) -> TokenStream {
    let ident = event.ident;
    let variants: Vec<(TokenStream, &Variant<'_>)> = match &event.shape {
        Shape::Enum(variants) => variants
            .iter()
            .map(|variant| {
                let variant_ident = variant.ident;
                (quote!(Self::#variant_ident), variant)
            })
            .collect(),
        Shape::Struct(variant) => vec![(quote!(Self), variant)],
    };
    let names = variants.iter().map(|(_, variant)| &variant.type_name);
    let type_arms = variants.iter().map(|(path, variant)| {
        let name = &variant.type_name;
        quote!(#path { .. } => #name,)
    });
    let version_arms = variants.iter().map(|(path, variant)| {
        let version = variant.version;
        quote!(#path { .. } => #version,)
    });
    let current_arms = variants.iter().map(|(_, variant)| {
        let (name, version) = (&variant.type_name, variant.version);
        quote!(#name => ::core::option::Option::Some(#version),)
    });
    let decoded_arms = variants.iter().map(|(_, variant)| {
        let (name, aliases, version) = (&variant.type_name, &variant.aliases, variant.version);
        quote!(#name #(| #aliases)* => ::core::option::Option::Some(#version),)
    });
    let encode_arms = variants
        .iter()
        .map(|(path, variant)| encode_arm(path, &variant.data));
    let decode_arms = variants
        .iter()
        .map(|(path, variant)| decode_arm(path, variant));
    let schemas = variants.iter().map(|(_, variant)| {
        let name = &variant.type_name;
        let schema = data_schema(variant);
        quote!((#name, #schema))
    });
    // An enum without variants has no value to match on by reference.
    let scrutinee = if variants.is_empty() {
        quote!(*self)
    } else {
        quote!(self)
    };

    quote! {
        impl ::allframe::__private::Event for #ident {
            fn event_types() -> &'static [&'static str] {
                &[#(#names),*]
            }

            fn event_type(&self) -> &'static str {
                match #scrutinee { #(#type_arms)* }
            }

            fn schema_version(&self) -> u32 {
                match #scrutinee { #(#version_arms)* }
            }

            fn current_version(__event_type: &str) -> ::core::option::Option<u32> {
                match __event_type {
                    #(#current_arms)*
                    _ => ::core::option::Option::None,
                }
            }

            fn version_of(__event_type: &str) -> ::core::option::Option<u32> {
                match __event_type {
                    #(#decoded_arms)*
                    _ => ::core::option::Option::None,
                }
            }

            fn to_data(&self) -> ::core::result::Result<
                ::std::boxed::Box<::allframe::__private::RawValue>,
                ::allframe::__private::serde_json::Error,
            > {
                match #scrutinee { #(#encode_arms)* }
            }

            fn from_data(
                __event_type: &str,
                __schema_version: u32,
                __data: &::allframe::__private::RawValue,
            ) -> ::core::result::Result<Self, ::allframe::__private::DecodeErrorKind> {
                match __event_type {
                    #(#decode_arms)*
                    _ => ::core::result::Result::Err(
                        ::allframe::__private::DecodeErrorKind::UnknownType,
                    ),
                }
            }

            fn data_schemas() -> ::std::vec::Vec<(
                &'static str,
                ::allframe::__private::WireSchema,
            )> {
                ::std::vec![#(#schemas),*]
            }
        }
    }
}

/// The schema of one variant's stored `data`: its named fields through the
/// shared mirror, or a newtype's own schema.
fn data_schema(variant: &Variant<'_>) -> TokenStream {
    match &variant.data {
        VariantData::Fields(fields) => {
            let fields: Vec<_> = fields.iter().map(|field| &field.schema).collect();
            crate::schema::object(&variant.docs, &fields, &[])
        }
        VariantData::Newtype(ty) => {
            quote!(::allframe::__private::WireSchema::of::<#ty>())
        }
    }
}

/// Bindings `__field0, __field1, …` for `fields`, named so no field name
/// can collide with a constant or unit struct in scope.
fn bindings(fields: &[Field<'_>]) -> Vec<Ident> {
    (0..fields.len())
        .map(|i| format_ident!("__field{i}"))
        .collect()
}

fn encode_arm(path: &TokenStream, data: &VariantData<'_>) -> TokenStream {
    let to_raw_value = quote!(::allframe::__private::serde_json::value::to_raw_value);
    match data {
        VariantData::Newtype(_) => quote! {
            #path(__field0) => #to_raw_value(__field0),
        },
        VariantData::Fields(fields) => {
            let bindings = bindings(fields);
            let idents: Vec<_> = fields.iter().map(|field| field.ident).collect();
            let mirror_fields = fields.iter().map(|field| {
                let Field {
                    ident,
                    ty,
                    serde_attrs,
                    ..
                } = field;
                quote!(#(#serde_attrs)* #ident: &'__a #ty,)
            });
            // A lifetime parameter nothing uses is an error, so `{}` gets none.
            let lifetime = (!fields.is_empty()).then(|| quote!(<'__a>));
            quote! {
                #path { #(#idents: #bindings),* } => {
                    #[derive(::allframe::__private::serde::Serialize)]
                    #[serde(crate = "::allframe::__private::serde")]
                    #[allow(dead_code)]
                    struct __AllFrameData #lifetime { #(#mirror_fields)* }

                    #to_raw_value(&__AllFrameData { #(#idents: #bindings),* })
                }
            }
        }
    }
}

fn decode_arm(path: &TokenStream, variant: &Variant<'_>) -> TokenStream {
    let Variant {
        type_name,
        aliases,
        version,
        ..
    } = variant;
    let private = quote!(::allframe::__private);
    let decode = match &variant.data {
        VariantData::Newtype(ty) => quote! {
            let __decoded: #ty = #private::upcast::decode(__value, __data)?;
            ::core::result::Result::Ok(#path(__decoded))
        },
        VariantData::Fields(fields) => {
            let idents: Vec<_> = fields.iter().map(|field| field.ident).collect();
            let mirror_fields = fields.iter().map(|field| {
                let Field {
                    ident,
                    ty,
                    serde_attrs,
                    ..
                } = field;
                quote!(#(#serde_attrs)* #ident: #ty,)
            });
            quote! {
                #[derive(#private::serde::Deserialize)]
                #[serde(crate = "::allframe::__private::serde")]
                struct __AllFrameData { #(#mirror_fields)* }

                let __decoded: __AllFrameData = #private::upcast::decode(__value, __data)?;
                ::core::result::Result::Ok(#path { #(#idents: __decoded.#idents),* })
            }
        }
    };
    // Stored at version `v`, the data goes through the steps from `v` on:
    // each JSON step hands the next version's JSON along, a typed one ends
    // the chain with today's event.
    let steps = variant.steps.iter().map(|step| {
        let from = step.from;
        let run = match &step.kind {
            StepKind::Json(function) => quote_spanned! {function.span()=>
                let __step: fn(
                    #private::serde_json::Value,
                ) -> ::core::result::Result<#private::serde_json::Value, #private::UpcastError> =
                    #function;
                __value = ::core::option::Option::Some(#private::upcast::step(
                    #from,
                    #private::upcast::json(__value, __data)?,
                    __step,
                )?);
            },
            StepKind::Typed(ty) => quote_spanned! {ty.span()=>
                let __old: #ty = #private::upcast::decode(__value, __data)?;
                return ::core::result::Result::Ok(<Self as ::core::convert::From<#ty>>::from(__old));
            },
        };
        quote! {
            if __schema_version <= #from {
                #run
            }
        }
    });
    quote! {
        #type_name #(| #aliases)* => {
            if __schema_version > #version {
                return ::core::result::Result::Err(
                    #private::DecodeErrorKind::NewerSchemaVersion { current: #version },
                );
            }
            if __schema_version == 0 {
                return ::core::result::Result::Err(
                    #private::DecodeErrorKind::UnsupportedSchemaVersion { supported: #version },
                );
            }
            #[allow(unused_mut)]
            let mut __value: ::core::option::Option<#private::serde_json::Value> =
                ::core::option::Option::None;
            #(#steps)*
            #decode
        }
    }
}

/// An impl that type-checks for any input, emitted beside the errors so
/// users of the type do not also see "`Event` is not implemented".
pub(super) fn stub(ident: &Ident, generics: &Generics) -> TokenStream {
    let mut generics = generics.clone();
    // Bounding `Self` satisfies the trait's supertraits even for generic
    // input, which is rejected anyway.
    generics
        .make_where_clause()
        .predicates
        .push(parse_quote!(Self: ::core::marker::Send + ::core::marker::Sync + 'static));
    let (impl_generics, type_generics, where_clause) = generics.split_for_impl();
    let unreachable = quote!(::core::panic!("invalid #[derive(Event)]"));
    quote! {
        impl #impl_generics ::allframe::__private::Event for #ident #type_generics #where_clause {
            fn event_types() -> &'static [&'static str] {
                #unreachable
            }

            fn event_type(&self) -> &'static str {
                #unreachable
            }

            fn schema_version(&self) -> u32 {
                #unreachable
            }

            fn current_version(_: &str) -> ::core::option::Option<u32> {
                #unreachable
            }

            fn version_of(_: &str) -> ::core::option::Option<u32> {
                #unreachable
            }

            fn to_data(&self) -> ::core::result::Result<
                ::std::boxed::Box<::allframe::__private::RawValue>,
                ::allframe::__private::serde_json::Error,
            > {
                #unreachable
            }

            fn from_data(
                _: &str,
                _: u32,
                _: &::allframe::__private::RawValue,
            ) -> ::core::result::Result<Self, ::allframe::__private::DecodeErrorKind> {
                #unreachable
            }

            fn data_schemas() -> ::std::vec::Vec<(
                &'static str,
                ::allframe::__private::WireSchema,
            )> {
                #unreachable
            }
        }
    }
}
