//! Stage 3: writes, beside the untouched function, a hidden unit struct
//! implementing `CommandHandler` by calling it, and the struct's
//! registration.
//!
//! The generated code names the user's types with their own spans, so a
//! type mistake is reported at the parameter or return type that made it:
//! a first parameter that is not a `Command` by the trait's own message,
//! a state or event type that is not the command's aggregate's by a type
//! mismatch on it, an error that is not a `DomainError` by that trait's
//! message.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Ident, Type, Visibility};

use super::check::Handler;

/// The handler type, its impl and its registration.
pub(super) fn expand(handler: &Handler<'_>) -> TokenStream {
    let Handler {
        vis,
        ident,
        command,
        state,
        event,
        error,
        ..
    } = handler;
    let name = ident.unraw().to_string();
    let handler_type = format_ident!("__AllFrameHandler_{}", name);
    let private = quote!(::allframe::__private);

    let command_type = quote_spanned!(command.span()=> type Command = #command;);
    let error_type = quote_spanned!(error.span()=> type Error = #error;);
    // Everything that projects through the command is spanned at it, so a
    // first parameter that is not a command is reported there and nowhere
    // else (by the associated type's bound and by the signature).
    let signature = quote_spanned! {command.span()=>
        fn handle<'a>(
            &'a self,
            __command: Self::Command,
            __state: &'a ::allframe::AggregateOf<Self::Command>,
            __dependencies: &'a #private::Container,
        ) -> #private::BoxFuture<
            'a,
            ::core::result::Result<
                ::std::vec::Vec<::allframe::EventOf<Self::Command>>,
                ::allframe::CommandError<Self::Error>,
            >,
        >
    };
    // The state and the events are held against the command's aggregate at
    // the user's tokens: a mismatch is reported on the parameter or the
    // return type that made it.
    let state_check = quote_spanned!(state.span()=> let __state: #state = __state;);
    let expected_events = quote_spanned! {command.span()=>
        ::std::vec::Vec<::allframe::EventOf<Self::Command>>
    };
    // The mismatch lands on the user's event type; its "expected due to
    // this" label on the command, whose aggregate fixes the event type.
    let decided = quote_spanned!(event.span()=> __decided);

    let Dependencies {
        list: dependencies,
        bindings,
        resolve,
    } = resolve_dependencies(
        &handler.dependencies,
        &quote!(::allframe::CommandError::MissingDependency),
    );

    let body = quote! {
        #(#resolve)*
        #state_check
        match #ident(__command, __state, #(#bindings),*).await {
            ::core::result::Result::Ok(__decided) => {
                let __decided: #expected_events = #decided;
                ::core::result::Result::Ok(__decided)
            }
            ::core::result::Result::Err(__refused) => ::core::result::Result::Err(
                ::allframe::CommandError::Domain(__refused),
            ),
        }
    };

    // A future that is not `Send` is the function's doing.
    let future = quote_spanned!(ident.span()=> ::std::boxed::Box::pin(async move { #body }));
    // The whole impl is spanned at the command: rustc reports some of its
    // checks at the span of the impl or of `handle` as a whole.
    let implementation = quote_spanned! {command.span()=>
        impl #private::CommandHandler for #handler_type {
            #command_type
            #error_type
            const DEPENDENCIES: &'static [#private::Dependency] = &[#(#dependencies),*];

            #signature {
                #future
            }
        }
    };
    let registration = quote_spanned! {command.span()=>
        #private::HandlerRegistration::new::<#handler_type>(
            ::core::concat!(::core::module_path!(), "::", #name)
        )
    };

    handler_item(vis, &handler_type, &implementation, &registration)
}

/// What a handler's `Dep<T>` parameters become.
pub(crate) struct Dependencies {
    /// `Dependency::of::<T>()` for each, for the start-up check.
    pub(crate) list: Vec<TokenStream>,
    /// The local each is bound to.
    pub(crate) bindings: Vec<Ident>,
    /// Statements binding each from `__dependencies`, returning
    /// `missing(type name)` as the error when one is absent.
    pub(crate) resolve: Vec<TokenStream>,
}

/// The dependencies of a handler whose `Dep<T>` parameters are `types`,
/// each spanned at its type.
pub(crate) fn resolve_dependencies(types: &[&Type], missing: &TokenStream) -> Dependencies {
    let private = quote!(::allframe::__private);
    let bindings: Vec<Ident> = (0..types.len())
        .map(|i| format_ident!("__dependency{i}"))
        .collect();
    Dependencies {
        list: types
            .iter()
            .map(|ty| quote_spanned!(ty.span()=> #private::Dependency::of::<#ty>()))
            .collect(),
        resolve: types
            .iter()
            .zip(&bindings)
            .map(|(ty, binding)| {
                quote_spanned! {ty.span()=>
                    let #binding = match __dependencies.get::<#ty>() {
                        ::core::option::Option::Some(__dependency) => __dependency,
                        ::core::option::Option::None => {
                            return ::core::result::Result::Err(
                                #missing(::core::any::type_name::<#ty>()),
                            );
                        }
                    };
                }
            })
            .collect(),
        bindings,
    }
}

/// The hidden unit struct a handler function becomes, its `implementation`
/// and its inventory `registration`.
pub(crate) fn handler_item(
    vis: &Visibility,
    handler_type: &Ident,
    implementation: &TokenStream,
    registration: &TokenStream,
) -> TokenStream {
    quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #[derive(::core::default::Default)]
        #vis struct #handler_type;

        #implementation

        ::allframe::__private::inventory::submit! {
            #registration
        }
    }
}
