//! The AllFrame reference service: bank accounts, event-sourced.
//!
//! [`domain`] is everything the bank knows about accounts — events, the
//! account aggregate, commands, their handlers and the refusals — written
//! with AllFrame's macros and nothing else.

pub mod domain;
