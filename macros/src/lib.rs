//! Procedural macros of CapFence. Users reach them through the `capfence`
//! crate (`capfence::policy!`, `#[capfence::gate]`); generated code names only
//! `::capfence` paths.

use proc_macro::TokenStream;

mod policy;

/// Compiles a policy file into a static decision table at build time.
///
/// The path is relative to the invoking crate's `Cargo.toml`. The expression's
/// value is a zero-sized table implementing `capfence::Decide` and
/// `capfence::Compiled`; a policy error is a compile error naming the file,
/// line and column; editing the file rebuilds the crate.
///
/// ```ignore
/// static POLICY: &dyn capfence::Decide = &capfence::policy!("policies/fintech_policy.yaml");
/// ```
#[proc_macro]
pub fn policy(input: TokenStream) -> TokenStream {
    policy::expand(input.into()).into()
}
