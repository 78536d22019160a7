//! Stage 1: reads the function into a raw model of its parameters and
//! return type, judging nothing.

use proc_macro2::TokenStream;
use syn::{FnArg, ItemFn, PatType, Receiver, ReturnType};

/// The attribute and the function it is on, as written.
pub(super) struct RawHandler<'a> {
    /// Whatever was written inside `#[command_handler(...)]`.
    pub(super) args: TokenStream,
    pub(super) function: &'a ItemFn,
    /// `self` in any form, if the function is a method.
    pub(super) receiver: Option<&'a Receiver>,
    /// The typed parameters, in order.
    pub(super) params: Vec<&'a PatType>,
    pub(super) output: &'a ReturnType,
}

/// Splits `function`'s signature into the parts the check looks at.
pub(super) fn parse(args: TokenStream, function: &ItemFn) -> RawHandler<'_> {
    let mut receiver = None;
    let mut params = Vec::new();
    for input in &function.sig.inputs {
        match input {
            FnArg::Receiver(found) => receiver = Some(found),
            FnArg::Typed(param) => params.push(param),
        }
    }
    RawHandler {
        args,
        function,
        receiver,
        params,
        output: &function.sig.output,
    }
}
