//! Parsing `#[gate("payments.transfer", skip(arg), rename(arg = "amount"), policy = "…")]`.

use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, LitStr, Token};

/// The attribute's arguments.
pub struct GateArgs {
    pub capability: LitStr,
    pub skip: Vec<Ident>,
    pub rename: Vec<(Ident, LitStr)>,
    pub policy: Option<LitStr>,
}

struct Rename {
    arg: Ident,
    name: LitStr,
}

impl Parse for Rename {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let arg: Ident = input.parse()?;
        input.parse::<Token![=]>()?;
        let name: LitStr = input.parse()?;
        Ok(Rename { arg, name })
    }
}

impl Parse for GateArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.is_empty() {
            return Err(input.error(
                "#[gate] needs the capability it guards: #[capfence::gate(\"payments.transfer\")]",
            ));
        }
        let capability: LitStr = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected the capability as a string literal: #[capfence::gate(\"payments.transfer\")]",
            )
        })?;
        let mut args = GateArgs {
            capability,
            skip: Vec::new(),
            rename: Vec::new(),
            policy: None,
        };
        while !input.is_empty() {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            let option = input.call(Ident::parse_any)?;
            match option.to_string().as_str() {
                "skip" => {
                    let content;
                    syn::parenthesized!(content in input);
                    let list = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?;
                    args.skip.extend(list);
                }
                "rename" => {
                    let content;
                    syn::parenthesized!(content in input);
                    let list = Punctuated::<Rename, Token![,]>::parse_terminated(&content)?;
                    args.rename
                        .extend(list.into_iter().map(|r| (r.arg, r.name)));
                }
                "policy" => {
                    input.parse::<Token![=]>()?;
                    args.policy = Some(input.parse()?);
                }
                other => {
                    return Err(syn::Error::new(
                        option.span(),
                        format!(
                            "unknown #[gate] option `{other}`; expected skip(arg, …), rename(arg = \"field\", …) or policy = \"path.yaml\""
                        ),
                    ));
                }
            }
        }
        Ok(args)
    }
}
