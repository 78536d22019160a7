//! Stage 3: writes, beside the untouched function, a hidden unit struct
//! implementing `QueryHandler` by calling it, and its registration.
//!
//! The user's types keep their own spans, so a first parameter that is not
//! a `Query`, an output that is not `ToSchema` or an error that is not a
//! `DomainError` is reported at the token that names it.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;

use super::check::Handler;
use crate::handler::expand::{Dependencies, handler_item, resolve_dependencies};

/// The handler type, its impl and its registration.
pub(super) fn expand(handler: &Handler<'_>) -> TokenStream {
    let Handler {
        vis,
        ident,
        query,
        projections,
        output,
        error,
        ..
    } = handler;
    let name = ident.unraw().to_string();
    let handler_type = format_ident!("__AllFrameQueryHandler_{}", name);
    let private = quote!(::allframe::__private);

    let query_type = quote_spanned!(query.span()=> type Query = #query;);
    let output_type = quote_spanned!(output.span()=> type Output = #output;);
    let error_type = quote_spanned!(error.span()=> type Error = #error;);
    let projections_check =
        quote_spanned!(projections.span()=> let __projections: #projections = __projections;);
    let Dependencies {
        list: dependencies,
        bindings,
        resolve,
    } = resolve_dependencies(
        &handler.dependencies,
        &quote!(::allframe::QueryError::MissingDependency),
    );
    // A future that is not `Send` is the function's doing.
    let future = quote_spanned! {ident.span()=>
        ::std::boxed::Box::pin(async move {
            #(#resolve)*
            #projections_check
            #ident(__query, __projections, #(#bindings),*)
                .await
                .map_err(::allframe::QueryError::Domain)
        })
    };
    let implementation = quote_spanned! {query.span()=>
        impl #private::QueryHandler for #handler_type {
            #query_type
            #output_type
            #error_type
            const DEPENDENCIES: &'static [#private::Dependency] = &[#(#dependencies),*];

            fn handle<'a>(
                &'a self,
                __query: Self::Query,
                __projections: &'a ::allframe::Projections,
                __dependencies: &'a #private::Container,
            ) -> #private::BoxFuture<
                'a,
                ::core::result::Result<Self::Output, ::allframe::QueryError<Self::Error>>,
            > {
                #future
            }
        }
    };
    let registration = quote_spanned! {query.span()=>
        #private::QueryRegistration::new::<#handler_type>(
            ::core::concat!(::core::module_path!(), "::", #name)
        )
    };
    handler_item(vis, &handler_type, &implementation, &registration)
}
