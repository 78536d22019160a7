//! The AllFrame reference service: bank accounts, event-sourced.
//!
//! [`domain`] is everything the bank knows about accounts — events, the
//! account aggregate, commands, their handlers and the refusals — written
//! with AllFrame's macros and nothing else; [`accounts`] is the read model
//! of them. [`app`] starts the service's builder; the binary adds its own
//! routes, runs the projections and serves it.

pub mod accounts;
pub mod domain;

/// The bank app over `store`. Naming this function also links the domain's
/// handlers (they register themselves) into whatever binary calls it.
pub fn app(store: &dyn allframe::EventStore) -> allframe::AppBuilder {
    allframe::App::builder(store)
}
