//! `policy!("path.yaml")`: load at compile time, generate the table.

use proc_macro2::TokenStream;
use quote::quote_spanned;
use syn::LitStr;

use capfence_compiler::Policy;
use capfence_compiler::codegen::generate_expr;

pub fn expand(input: TokenStream) -> TokenStream {
    let literal: LitStr = match syn::parse2(input) {
        Ok(lit) => lit,
        Err(e) => {
            return syn::Error::new(
                e.span(),
                "expected the policy's path as a string literal: policy!(\"policies/fintech_policy.yaml\")",
            )
            .to_compile_error();
        }
    };
    let relative = literal.value();
    let base = crate::policy_root();
    let path = base.join(&relative);
    match Policy::load(&path) {
        Ok(mut policy) => {
            // Name the file as the user wrote it in generated docs and reasons.
            policy.file = relative;
            generate_expr(&policy, &[path.display().to_string()])
        }
        Err(mut err) => {
            err.file = relative;
            let message = format!("capfence policy error: {err}");
            quote_spanned! { literal.span() => compile_error!(#message) }
        }
    }
}
