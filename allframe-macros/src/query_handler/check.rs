//! Stage 2: judges the function — `async`, free, not generic,
//! `(query, &Projections, Dep<T>...) -> Result<Output, Error>` — and
//! builds the checked model. Whether the types fit (the query is a
//! `Query`, the output a `ToSchema`, the error a `DomainError`) is left to
//! the compiler, at the user's tokens, by the expansion.

use proc_macro2::Span;
use syn::{Ident, ReturnType, Type, Visibility};

use crate::diagnostics::Errors;
use crate::handler::check::{dependency, generic_arguments};
use crate::handler::parse::RawHandler;

const SHAPE: &str = "`async fn accounts_over(query: AccountsOver, projections: &Projections, \
                     clock: Dep<Clock>) -> Result<AccountsPage, ProjectionError>`";

/// A function that has the shape of a query handler.
pub(super) struct Handler<'a> {
    pub(super) vis: &'a Visibility,
    pub(super) ident: &'a Ident,
    pub(super) query: &'a Type,
    /// The projections parameter's whole type, `&Projections`.
    pub(super) projections: &'a Type,
    /// `T` of each `Dep<T>` parameter, in order.
    pub(super) dependencies: Vec<&'a Type>,
    /// `Output` of `Result<Output, _>`.
    pub(super) output: &'a Type,
    /// `E` of `Result<_, E>`.
    pub(super) error: &'a Type,
}

/// Judges `raw`; `None` when a part the expansion needs is missing. The
/// result is meaningful only when no error was recorded.
pub(super) fn check<'a>(raw: &RawHandler<'a>, errors: &mut Errors) -> Option<Handler<'a>> {
    let sig = &raw.function.sig;
    if !raw.args.is_empty() {
        errors.at(&raw.args, "`#[query_handler]` takes no arguments");
    }
    if let Some(unsafety) = sig.unsafety {
        errors.at(unsafety, "a query handler cannot be `unsafe`");
    }
    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token,
            format!("a query handler is an `async fn`: {SHAPE}"),
        );
    }
    if let Some(receiver) = raw.receiver {
        errors.at(
            receiver,
            "a query handler is a free function, not a method: remove `self`",
        );
    }
    if !sig.generics.params.is_empty() {
        errors.at(&sig.generics, "a query handler cannot be generic");
    } else if let Some(where_clause) = &sig.generics.where_clause {
        errors.at(where_clause, "a query handler cannot be generic");
    }
    let closing = sig.paren_token.span.close();
    let mut params = raw.params.iter().map(|param| &*param.ty);
    let query = params.next();
    match query {
        None => missing(errors, closing, "the query first"),
        Some(Type::Reference(reference)) => errors.at(
            reference,
            "a query handler takes its query by value, e.g. `query: AccountsOver`",
        ),
        Some(_) => {}
    }
    let projections = params.next();
    match projections {
        None if query.is_some() => missing(errors, closing, "the projections second"),
        None => {}
        Some(Type::Reference(reference)) => {
            if let Some(mutability) = reference.mutability {
                errors.at(
                    mutability,
                    "the projections are read-only: take them as `&Projections`",
                );
            }
        }
        Some(ty) => errors.at(
            ty,
            "the second parameter is the projections, by reference: `projections: &Projections`",
        ),
    }
    let dependencies: Vec<_> = params
        .filter_map(|ty| {
            let dependency = dependency(ty);
            if dependency.is_none() {
                errors.at(
                    ty,
                    "query handler parameters after the projections must be `Dep<T>`",
                );
            }
            dependency
        })
        .collect();
    let (output, error) = output(raw.output, closing, errors)?;
    Some(Handler {
        vis: &raw.function.vis,
        ident: &sig.ident,
        query: query?,
        projections: projections?,
        dependencies,
        output,
        error,
    })
}

fn missing(errors: &mut Errors, closing: Span, what: &str) {
    errors.at_span(closing, format!("a query handler takes {what}: {SHAPE}"));
}

/// `(Output, E)` of `-> Result<Output, E>`.
fn output<'a>(
    output: &'a ReturnType,
    closing: Span,
    errors: &mut Errors,
) -> Option<(&'a Type, &'a Type)> {
    const EXPECTED: &str = "a query handler returns `Result<Output, Error>`: an `Output` that is \
                            `Serialize + utoipa::ToSchema`, and a domain error (or \
                            `allframe::ProjectionError`, or `std::convert::Infallible`)";
    let ReturnType::Type(_, ty) = output else {
        errors.at_span(closing, EXPECTED);
        return None;
    };
    match generic_arguments(ty, "Result").as_deref() {
        Some([output, error]) => Some((output, error)),
        _ => {
            errors.at(ty, EXPECTED);
            None
        }
    }
}
