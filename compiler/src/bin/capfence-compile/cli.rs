//! The pieces of the `capfence-compile` command line: its arguments and its
//! commands (each calls the library and renders what it returns).

pub mod args;
pub mod commands;
