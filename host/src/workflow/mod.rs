//! Saga workflows: Step Functions-style state machines whose tasks are wasmfn functions.
//!
//! So far: the definition ([`definition`]), read from Amazon States Language JSON or the same
//! shape in TOML, and checked before anything runs. The durable executor comes next.

pub mod definition;

pub use definition::{Definition, DefinitionError};
