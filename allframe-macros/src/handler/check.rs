//! Stage 2: judges the function — `async`, free, not generic, `(command,
//! &state, Dep<T>...) -> Result<Vec<Event>, Error>` — and builds the
//! checked model. Whether the types fit together (the command is a
//! `Command`, the state is its aggregate, the events are its events) is
//! left to the compiler, at the user's tokens, by the expansion.

use proc_macro2::Span;
use syn::{GenericArgument, Ident, PathArguments, ReturnType, Type, TypePath, Visibility};

use super::parse::RawHandler;
use crate::diagnostics::Errors;

const SHAPE: &str = "`async fn deposit(command: Deposit, account: &Account, clock: Dep<Clock>) -> Result<Vec<AccountEvent>, BankError>`";

/// A function that has the shape of a command handler.
pub(super) struct Handler<'a> {
    pub(super) vis: &'a Visibility,
    pub(super) ident: &'a Ident,
    pub(super) command: &'a Type,
    /// The state parameter's whole type, `&State`.
    pub(super) state: &'a Type,
    /// `T` of each `Dep<T>` parameter, in order.
    pub(super) dependencies: Vec<&'a Type>,
    /// `Event` of `Result<Vec<Event>, _>`.
    pub(super) event: &'a Type,
    /// `E` of `Result<_, E>`.
    pub(super) error: &'a Type,
}

/// Judges `raw`; `None` when a part the expansion needs is missing. The
/// result is meaningful only when no error was recorded.
pub(super) fn check<'a>(raw: &RawHandler<'a>, errors: &mut Errors) -> Option<Handler<'a>> {
    let sig = &raw.function.sig;
    if !raw.args.is_empty() {
        errors.at(&raw.args, "`#[command_handler]` takes no arguments");
    }
    if let Some(unsafety) = sig.unsafety {
        errors.at(unsafety, "a command handler cannot be `unsafe`");
    }
    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token,
            format!("a command handler is an `async fn`: {SHAPE}"),
        );
    }
    if let Some(receiver) = raw.receiver {
        errors.at(
            receiver,
            "a command handler is a free function, not a method: remove `self`",
        );
    }
    if !sig.generics.params.is_empty() {
        errors.at(&sig.generics, "a command handler cannot be generic");
    } else if let Some(where_clause) = &sig.generics.where_clause {
        errors.at(where_clause, "a command handler cannot be generic");
    }
    for param in &raw.params {
        if let Type::ImplTrait(ty) = &*param.ty {
            errors.at(
                ty,
                "a command handler cannot be generic: name the type instead of `impl ...`",
            );
        }
    }
    let closing = sig.paren_token.span.close();
    let mut params = raw.params.iter().map(|param| &*param.ty);
    let command = params.next();
    match command {
        None => missing(errors, closing, "the command first"),
        Some(Type::Reference(reference)) => errors.at(
            reference,
            "a command handler takes its command by value, e.g. `command: Deposit`",
        ),
        Some(_) => {}
    }
    let state = params.next();
    match state {
        None if command.is_some() => missing(errors, closing, "the aggregate state second"),
        None => {}
        Some(Type::Reference(reference)) => {
            if let Some(mutability) = reference.mutability {
                errors.at(
                    mutability,
                    "the aggregate state is read-only: take it as `&State`",
                );
            }
        }
        Some(ty) => errors.at(
            ty,
            "the second parameter is the aggregate state, by reference, e.g. `account: &Account`",
        ),
    }
    let dependencies: Vec<_> = params
        .filter_map(|ty| {
            let dependency = dependency(ty);
            // `impl Trait` is already reported as generic.
            if dependency.is_none() && !matches!(ty, Type::ImplTrait(_)) {
                errors.at(ty, "handler parameters after the state must be `Dep<T>`");
            }
            dependency
        })
        .collect();
    let output = output(raw.output, closing, errors);
    let (event, error) = output?;
    Some(Handler {
        vis: &raw.function.vis,
        ident: &sig.ident,
        command: command?,
        state: state?,
        dependencies,
        event,
        error,
    })
}

fn missing(errors: &mut Errors, closing: Span, what: &str) {
    errors.at_span(closing, format!("a command handler takes {what}: {SHAPE}"));
}

/// `T` of `Dep<T>` (any path ending in `Dep`).
pub(crate) fn dependency(ty: &Type) -> Option<&Type> {
    let [argument] = <[&Type; 1]>::try_from(generic_arguments(ty, "Dep")?).ok()?;
    Some(argument)
}

/// `(Event, E)` of `-> Result<Vec<Event>, E>`.
fn output<'a>(
    output: &'a ReturnType,
    closing: Span,
    errors: &mut Errors,
) -> Option<(&'a Type, &'a Type)> {
    const EXPECTED: &str = "a command handler returns `Result<Vec<Event>, Error>` (with \
                            `std::convert::Infallible` as the error if it never refuses)";
    let ReturnType::Type(_, ty) = output else {
        errors.at_span(closing, EXPECTED);
        return None;
    };
    let parts = match generic_arguments(ty, "Result").as_deref() {
        Some([events, error]) => generic_arguments(events, "Vec")
            .and_then(|event| <[&Type; 1]>::try_from(event).ok())
            .map(|[event]| (event, *error)),
        _ => None,
    };
    if parts.is_none() {
        errors.at(ty, EXPECTED);
    }
    parts
}

/// The type arguments of `ty` when it is a path whose last segment is
/// `name` with only type arguments, e.g. `Vec<T>` or `std::vec::Vec<T>`.
pub(crate) fn generic_arguments<'a>(ty: &'a Type, name: &str) -> Option<Vec<&'a Type>> {
    let Type::Path(TypePath { qself: None, path }) = ty else {
        return None;
    };
    let last = path.segments.last()?;
    let PathArguments::AngleBracketed(arguments) = &last.arguments else {
        return None;
    };
    if last.ident != name {
        return None;
    }
    arguments
        .args
        .iter()
        .map(|argument| match argument {
            GenericArgument::Type(ty) => Some(ty),
            _ => None,
        })
        .collect()
}
