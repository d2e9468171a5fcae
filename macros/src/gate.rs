//! `#[gate(…)]`: check the function against the policy at compile time, and
//! wrap its body so every call is decided and audited before the body runs.

use std::path::PathBuf;

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, Pat, ReturnType, Type};

use capfence_compiler::Policy;
use capfence_compiler::codegen::{GateCall, generate_gate};
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
fn policy_path(
    capability: &syn::LitStr,
    policy: Option<&syn::LitStr>,
) -> syn::Result<(PathBuf, String)> {
    let base = crate::policy_root();
    if let Some(lit) = policy {
        return Ok((base.join(lit.value()), lit.value()));
    }
    let manifest = std::fs::read_to_string(base.join("Cargo.toml")).unwrap_or_default();
    match metadata_policy(&manifest) {
        Ok(Some(path)) => Ok((base.join(&path), path)),
        Ok(None) => Err(syn::Error::new(
            capability.span(),
            "no policy to check this gate against: add `[package.metadata.capfence] policy = \"policies/….yaml\"` \
             to Cargo.toml, or `policy = \"…\"` to the attribute",
        )),
        Err(why) => Err(syn::Error::new(capability.span(), why)),
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

/// A gate's capability and the policy it is checked against.
pub struct Checked {
    pub policy: Policy,
    pub resource: String,
    pub action: String,
    /// The policy file, as a path to track for rebuilds.
    pub track: String,
}

/// Loads the policy (`policy = "…"` or Cargo.toml's) and checks that
/// `capability` is a `resource.action` some rule of it names.
pub fn check_capability(
    capability_lit: &syn::LitStr,
    policy: Option<&syn::LitStr>,
) -> syn::Result<Checked> {
    let capability = capability_lit.value();
    let Some((resource, action)) = capability
        .split_once('.')
        .filter(|(r, a)| !r.is_empty() && !a.is_empty() && !a.contains('.'))
        .map(|(r, a)| (r.to_ascii_lowercase(), a.to_ascii_lowercase()))
    else {
        return Err(syn::Error::new(
            capability_lit.span(),
            format!(
                "`{capability}` is not a capability: expected `resource.action`, e.g. \"payments.transfer\""
            ),
        ));
    };
    let (path, shown) = policy_path(capability_lit, policy)?;
    let mut policy = Policy::load(&path).map_err(|e| {
        let mut e = e;
        e.file = shown.clone();
        syn::Error::new(capability_lit.span(), format!("capfence policy error: {e}"))
    })?;
    policy.file = shown.clone();

    // The capability must be one the policy names.
    let applicable = policy
        .rules
        .iter()
        .any(|r| r.capability.matches(&resource, &action));
    if !applicable {
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
            capability_lit.span(),
            format!(
                "the policy {shown} has no rule for `{capability}`, so every call would be denied{hint}"
            ),
        ));
    }
    Ok(Checked {
        policy,
        resource,
        action,
        track: path.display().to_string(),
    })
}

fn build(args: TokenStream, func: &ItemFn) -> syn::Result<TokenStream> {
    let args: GateArgs = syn::parse2(args)?;
    let capability = args.capability.value();
    let Checked {
        policy,
        resource,
        action,
        track,
    } = check_capability(&args.capability, args.policy.as_ref())?;
    let applicable: Vec<_> = policy
        .rules
        .iter()
        .filter(|r| r.capability.matches(&resource, &action))
        .collect();

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
    // One payload name, one argument: two arguments under one name would be
    // decided on one and recorded and run with the other.
    for (i, (ident, name)) in payload.iter().enumerate() {
        let Some((other, _)) = payload.iter().take(i).find(|(_, n)| n == name) else {
            continue;
        };
        let renamed = args
            .rename
            .iter()
            .rev()
            .find(|(arg, _)| arg == ident || arg == other)
            .map(|(_, lit)| lit.span());
        return Err(syn::Error::new(
            renamed.unwrap_or_else(|| ident.span()),
            format!(
                "arguments `{other}` and `{ident}` of `{}` would both be the payload field `{name}`: \
                 one name, two values; rename or skip one of them",
                func.sig.ident
            ),
        ));
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
    // The table of the policy this gate was checked against, specialized to
    // its capability: it decides from the typed arguments.
    let decide = generate_gate(
        &policy,
        &GateCall {
            resource: &resource,
            action: &action,
            context: quote! { __capfence_ctx },
            args: payload
                .iter()
                .map(|(ident, name)| (name.clone(), quote! { #ident }))
                .collect(),
        },
    );
    // The digest of the policy this gate was checked against: a runtime on
    // any other policy (another file, or this one edited since) is refused.
    let digest = &policy.digest;
    let blocked = quote_spanned! { func.sig.output.span() =>
        return ::core::result::Result::Err(::core::convert::From::from(__capfence_blocked));
    };
    // An async function awaits its commit, which runs off the executor's
    // thread; a plain one commits in place.
    let (entry, wait) = if func.sig.asyncness.is_some() {
        (quote! { gate_async }, quote! { .await })
    } else {
        (quote! { gate }, quote! {})
    };
    let check = quote! {
        const _: &[u8] = ::core::include_bytes!(#track);
        let __capfence_passage = match ::capfence::__private::#entry(
            #context,
            #resource,
            #action,
            #digest,
            |__capfence_ctx: &::capfence::__private::Context| #decide,
            || {
                let mut payload = ::std::collections::BTreeMap::<::std::string::String, ::capfence::__private::Value>::new();
                #( payload.insert(::std::string::String::from(#names), ::capfence::__private::PayloadValue::to_payload_value(&#idents)); )*
                payload
            },
        ) #wait {
            ::core::result::Result::Ok(__capfence_passage) => __capfence_passage,
            ::core::result::Result::Err(__capfence_blocked) => {
                #blocked
            }
        };
    };
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let stmts = &block.stmts;
    let output = match &sig.output {
        ReturnType::Type(_, ty) => quote! { #ty },
        ReturnType::Default => quote! { () },
    };
    // The body runs once, inside a closure (an async block for an `async
    // fn`) so that a `return` or `?` in it gives its result here: what it
    // returned is recorded as the call's outcome (`Ok`: executed, with the
    // reference a `capfence::RailReceipt` value gives; `Err`: failed), then
    // returned unchanged.
    let (body, finish) = if sig.asyncness.is_some() {
        (
            quote! { async move { #(#stmts)* }.await },
            quote! { finish_async },
        )
    } else {
        (
            quote! { (move || -> #output { #(#stmts)* })() },
            quote! { finish },
        )
    };
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            #check
            let __capfence_result: #output = #body;
            {
                #[allow(unused_imports)]
                use ::capfence::__private::{ErrorText as _, NoErrorText as _, NoReceipt as _, ReceiptParts as _};
                __capfence_passage.#finish(
                    &__capfence_result,
                    |__capfence_value| (&::capfence::__private::Probe(__capfence_value)).receipt_parts(),
                    |__capfence_error| (&::capfence::__private::Probe(__capfence_error)).error_text(),
                ) #wait;
            }
            __capfence_result
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

/// `gate_decision!([policy = "…",] "resource.action", context, field = expr, …)`:
/// the decision the gate's table makes for a call, without recording it.
pub struct DecisionInput {
    policy: Option<syn::LitStr>,
    capability: syn::LitStr,
    context: syn::Expr,
    args: Vec<(Ident, syn::Expr)>,
}

impl syn::parse::Parse for DecisionInput {
    fn parse(input: syn::parse::ParseStream<'_>) -> syn::Result<Self> {
        let mut policy = None;
        if input.peek(Ident) && input.peek2(syn::Token![=]) {
            let key: Ident = input.parse()?;
            if key != "policy" {
                return Err(syn::Error::new(
                    key.span(),
                    "expected `policy = \"path.yaml\",` or the capability string first",
                ));
            }
            input.parse::<syn::Token![=]>()?;
            policy = Some(input.parse()?);
            input.parse::<syn::Token![,]>()?;
        }
        let capability = input.parse()?;
        input.parse::<syn::Token![,]>()?;
        let context = input.parse()?;
        let mut args = Vec::new();
        while !input.is_empty() {
            input.parse::<syn::Token![,]>()?;
            if input.is_empty() {
                break;
            }
            let name: Ident = input.call(syn::ext::IdentExt::parse_any)?;
            input.parse::<syn::Token![=]>()?;
            args.push((name, input.parse()?));
        }
        Ok(DecisionInput {
            policy,
            capability,
            context,
            args,
        })
    }
}

pub fn expand_decision(input: TokenStream) -> TokenStream {
    let input: DecisionInput = match syn::parse2(input) {
        Ok(i) => i,
        Err(e) => return e.to_compile_error(),
    };
    let checked = match check_capability(&input.capability, input.policy.as_ref()) {
        Ok(c) => c,
        Err(e) => return e.to_compile_error(),
    };
    let lets = input.args.iter().enumerate().map(|(i, (_, expr))| {
        let var = quote::format_ident!("__capfence_arg{}", i);
        quote! { let #var = &(#expr); }
    });
    let args = input
        .args
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let var = quote::format_ident!("__capfence_arg{}", i);
            (name.to_string(), quote! { #var })
        })
        .collect();
    let decide = generate_gate(
        &checked.policy,
        &GateCall {
            resource: &checked.resource,
            action: &checked.action,
            context: quote! { __capfence_ctx },
            args,
        },
    );
    let context = &input.context;
    let track = &checked.track;
    quote! {
        {
            const _: &[u8] = ::core::include_bytes!(#track);
            let __capfence_ctx = &(#context);
            #(#lets)*
            #decide
        }
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
