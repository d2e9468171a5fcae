//! `#[gate(…)]`: check the function against the policy at compile time, and
//! wrap its body so every call is decided and audited before the body runs.

use std::path::PathBuf;

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, Pat, ReturnType, Type};

use capfence_compiler::Policy;
use capfence_compiler::policy::{CapabilityPattern, Field, FieldType};
use capfence_compiler::suggest::closest;

use crate::attr::GateArgs;

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let error = syn::Error::new(
                item.span(),
                "#[capfence::gate] applies to functions and methods",
            )
            .to_compile_error();
            return quote! { #error #item };
        }
    };
    match build(args, &func) {
        Ok(tokens) => tokens,
        // One mistake, one message: the function is still emitted unchanged.
        Err(error) => {
            let error = error.to_compile_error();
            quote! { #error #func }
        }
    }
}

/// The policy file: `policy = "…"` on the attribute, else
/// `[package.metadata.capfence] policy = "…"` in the crate's Cargo.toml.
fn policy_path(args: &GateArgs) -> syn::Result<(PathBuf, String)> {
    let base = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_default();
    if let Some(lit) = &args.policy {
        return Ok((base.join(lit.value()), lit.value()));
    }
    let manifest = std::fs::read_to_string(base.join("Cargo.toml")).unwrap_or_default();
    match metadata_policy(&manifest) {
        Ok(Some(path)) => Ok((base.join(&path), path)),
        Ok(None) => Err(syn::Error::new(
            args.capability.span(),
            "no policy to check this gate against: add `[package.metadata.capfence] policy = \"policies/….yaml\"` \
             to Cargo.toml, or `policy = \"…\"` to the attribute",
        )),
        Err(why) => Err(syn::Error::new(args.capability.span(), why)),
    }
}

/// `policy` in the `[package.metadata.capfence]` table of a manifest, in any
/// TOML form (a table, an inline table, dotted keys, either quote style), read
/// by the `toml` crate. `Err` for a manifest that is not TOML or a `policy`
/// that is not a string.
fn metadata_policy(manifest: &str) -> Result<Option<String>, String> {
    let table: toml::Table = manifest
        .parse()
        .map_err(|e| format!("Cargo.toml is not valid TOML: {e}"))?;
    let value = table
        .get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("capfence"))
        .and_then(|c| c.get("policy"));
    match value {
        None => Ok(None),
        Some(toml::Value::String(path)) => Ok(Some(path.clone())),
        Some(other) => Err(format!(
            "`[package.metadata.capfence] policy` must be a path string, found {}",
            other.type_str()
        )),
    }
}

fn is_context(ty: &Type) -> Option<bool> {
    let (inner, by_ref) = match ty {
        Type::Reference(r) => (&*r.elem, true),
        other => (other, false),
    };
    match inner {
        Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Context") => {
            Some(by_ref)
        }
        _ => None,
    }
}

fn build(args: TokenStream, func: &ItemFn) -> syn::Result<TokenStream> {
    let args: GateArgs = syn::parse2(args)?;
    let capability = args.capability.value();
    let Some((resource, action)) = capability
        .split_once('.')
        .filter(|(r, a)| !r.is_empty() && !a.is_empty() && !a.contains('.'))
        .map(|(r, a)| (r.to_ascii_lowercase(), a.to_ascii_lowercase()))
    else {
        return Err(syn::Error::new(
            args.capability.span(),
            format!(
                "`{capability}` is not a capability: expected `resource.action`, e.g. \"payments.transfer\""
            ),
        ));
    };
    let (path, shown) = policy_path(&args)?;
    let mut policy = Policy::load(&path).map_err(|e| {
        let mut e = e;
        e.file = shown.clone();
        syn::Error::new(
            args.capability.span(),
            format!("capfence policy error: {e}"),
        )
    })?;
    policy.file = shown.clone();

    // The capability must be one the policy names.
    let applicable: Vec<_> = policy
        .rules
        .iter()
        .filter(|r| r.capability.matches(&resource, &action))
        .collect();
    if applicable.is_empty() {
        let known: Vec<String> = policy
            .rules
            .iter()
            .filter_map(|r| match &r.capability {
                CapabilityPattern::Segments {
                    resource: Some(r),
                    action: Some(a),
                } => Some(format!("{r}.{a}")),
                _ => None,
            })
            .collect();
        let hint = match closest(&capability, known.iter().map(String::as_str)) {
            Some(near) => format!("; did you mean \"{near}\"?"),
            None if !known.is_empty() => {
                let mut list = known.clone();
                list.dedup();
                format!("; it names {}", list.join(", "))
            }
            None => String::new(),
        };
        return Err(syn::Error::new(
            args.capability.span(),
            format!(
                "the policy {shown} has no rule for `{capability}`, so every call would be denied{hint}"
            ),
        ));
    }

    // Arguments: the context, the payload, skip and rename.
    let mut context: Option<(Ident, bool)> = None;
    let mut payload: Vec<(Ident, String)> = Vec::new();
    for input in &func.sig.inputs {
        let FnArg::Typed(typed) = input else { continue };
        let Pat::Ident(pat) = &*typed.pat else {
            continue;
        };
        if let Some(by_ref) = is_context(&typed.ty) {
            context = Some((pat.ident.clone(), by_ref));
            continue;
        }
        payload.push((pat.ident.clone(), pat.ident.to_string()));
    }
    for skipped in &args.skip {
        let before = payload.len();
        payload.retain(|(ident, _)| ident != skipped);
        if payload.len() == before {
            return Err(syn::Error::new(
                skipped.span(),
                format!(
                    "skip({skipped}): `{}` has no argument `{skipped}`",
                    func.sig.ident
                ),
            ));
        }
    }
    for (arg, name) in &args.rename {
        match payload.iter_mut().find(|(ident, _)| ident == arg) {
            Some(entry) => entry.1 = name.value(),
            None => {
                return Err(syn::Error::new(
                    arg.span(),
                    format!(
                        "rename({arg} = …): `{}` has no argument `{arg}`",
                        func.sig.ident
                    ),
                ));
            }
        }
    }
    // Every payload field the policy tests for this capability must be passed.
    for (field, ty) in &policy.field_types {
        let Field::Payload(name) = field else {
            continue;
        };
        let tested = applicable.iter().any(|rule| {
            let mut found = false;
            rule.for_each_test(&mut |t| found |= t.field() == field);
            found
        });
        if tested && !payload.iter().any(|(_, n)| n == name) {
            let kind = if *ty == FieldType::Number {
                "a number"
            } else {
                "a string"
            };
            return Err(syn::Error::new(
                func.sig.ident.span(),
                format!(
                    "the policy decides `{capability}` on `{name}` ({kind}), but `{}` takes no argument `{name}`; \
                     add one, or rename(arg = \"{name}\")",
                    func.sig.ident
                ),
            ));
        }
    }
    if !returns_result(&func.sig.output) {
        return Err(syn::Error::new(
            func.sig.output.span(),
            "a gated function returns `Result<T, E>` where `E: From<capfence::Blocked>`: a blocked call returns an error instead of running",
        ));
    }

    let names = payload.iter().map(|(_, n)| n);
    let idents = payload.iter().map(|(i, _)| i);
    let context = match context {
        Some((ident, true)) => quote! { ::core::option::Option::Some(#ident) },
        Some((ident, false)) => quote! { ::core::option::Option::Some(&#ident) },
        None => quote! { ::core::option::Option::None },
    };
    let track = path.display().to_string();
    // The digest of the policy this gate was checked against: a runtime on
    // any other policy (another file, or this one edited since) is refused.
    let digest = &policy.digest;
    let blocked = quote_spanned! { func.sig.output.span() =>
        return ::core::result::Result::Err(::core::convert::From::from(__capfence_blocked));
    };
    let check = quote! {
        const _: &[u8] = ::core::include_bytes!(#track);
        let __capfence_payload = {
            let mut payload = ::std::collections::BTreeMap::<::std::string::String, ::capfence::__private::Value>::new();
            #( payload.insert(::std::string::String::from(#names), ::capfence::__private::PayloadValue::to_payload_value(&#idents)); )*
            payload
        };
        if let ::core::result::Result::Err(__capfence_blocked) =
            ::capfence::__private::check(#context, #resource, #action, #digest, __capfence_payload)
        {
            #blocked
        }
    };
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let stmts = &block.stmts;
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            #check
            #(#stmts)*
        }
    })
}

fn returns_result(output: &ReturnType) -> bool {
    match output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(p) => p
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident.to_string().ends_with("Result")),
            _ => false,
        },
        ReturnType::Default => false,
    }
}

#[cfg(test)]
mod tests {
    use super::metadata_policy;

    #[test]
    fn the_policy_is_read_in_every_toml_form() {
        let forms = [
            "[package.metadata.capfence]\npolicy = \"p.yaml\" # the gate's policy\n",
            "[package.metadata.capfence]\npolicy = 'p.yaml'\n",
            "[package.metadata]\ncapfence = { policy = \"p.yaml\" }\n",
            "[package]\nname = \"x\"\nmetadata.capfence.policy = \"p.yaml\"\n",
        ];
        for form in forms {
            assert_eq!(
                metadata_policy(form),
                Ok(Some("p.yaml".to_owned())),
                "{form}"
            );
        }
        assert_eq!(
            metadata_policy("[package.metadata.capfence]\npolicy = \"a#b.yaml\"\n"),
            Ok(Some("a#b.yaml".to_owned()))
        );
        assert_eq!(metadata_policy("[package]\nname = \"x\"\n"), Ok(None));
        assert!(metadata_policy("[package.metadata.capfence]\npolicy = 3\n").is_err());
        assert!(metadata_policy("[package\n").is_err());
    }
}
