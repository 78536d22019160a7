//! `#[saga]` on an `impl Saga for T` block: the block as written, a
//! constant that stops compilation unless `T`'s category is a saga's
//! (`saga-{name}`), and the saga's registration, so an app runs it.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Error, ItemImpl};

/// Expands `#[saga]` on `item`; or the item and the errors found.
pub(crate) fn attribute(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Vec::new();
    if !args.is_empty() {
        errors.push(Error::new_spanned(
            &args,
            "`#[saga]` takes no options: the saga's name is its aggregate's CATEGORY after `saga-`",
        ));
    }
    let block: ItemImpl = match syn::parse2(item.clone()) {
        Ok(block) => block,
        Err(_) => {
            let error = Error::new_spanned(
                &item,
                "`#[saga]` goes on the `impl Saga for …` block of a saga",
            )
            .to_compile_error();
            return quote!(#item #error);
        }
    };
    let is_saga = block
        .trait_
        .as_ref()
        .and_then(|(_, path, _)| path.segments.last())
        .is_some_and(|segment| segment.ident == "Saga");
    if !is_saga {
        errors.push(Error::new(
            block.impl_token.span(),
            "`#[saga]` goes on the `impl Saga for …` block of a saga",
        ));
    }
    if !block.generics.params.is_empty() {
        errors.push(Error::new_spanned(
            &block.generics,
            "a saga cannot be generic: it is registered, and named by its category, once",
        ));
    }
    if !errors.is_empty() {
        let errors = errors.into_iter().map(|error| error.to_compile_error());
        return quote!(#block #(#errors)*);
    }
    let ty = &block.self_ty;
    let private = quote!(::allframe::__private);
    // Spanned at the type, so a category that is not a saga's is reported
    // at the user's token.
    let check = quote_spanned! {ty.span()=>
        const _: () = #private::assert_saga_category(
            <#ty as ::allframe::Aggregate>::CATEGORY,
        );
    };
    quote! {
        #block
        #check
        #private::inventory::submit! {
            #private::SagaRegistration::new::<#ty>()
        }
    }
}
