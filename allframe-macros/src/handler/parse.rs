//! Stage 1: reads the function into a raw model of its parameters and
//! return type, judging nothing.

use proc_macro2::TokenStream;
use syn::{FnArg, ItemFn, PatType, Receiver, ReturnType};

/// The attribute and the function it is on, as written.
pub(crate) struct RawHandler<'a> {
    /// Whatever was written inside `#[command_handler(...)]`.
    pub(crate) args: TokenStream,
    pub(crate) function: &'a ItemFn,
    /// `self` in any form, if the function is a method.
    pub(crate) receiver: Option<&'a Receiver>,
    /// The typed parameters, in order.
    pub(crate) params: Vec<&'a PatType>,
    pub(crate) output: &'a ReturnType,
}

/// Splits `function`'s signature into the parts the check looks at.
pub(crate) fn parse(args: TokenStream, function: &ItemFn) -> RawHandler<'_> {
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
