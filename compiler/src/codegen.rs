//! Code generation: a [`Policy`] as a static Rust decision table.
//!
//! The output is plain Rust that names only `::capfence::__private` items. It
//! has two parts:
//! - `view(&Event) -> CompiledView`: intake, done once per event. It maps the
//!   capability to a *class* (the set of rules that apply), every tested
//!   string to the index of its literal, every tested number to its rank
//!   among the policy's thresholds for that field, and records which fields
//!   are missing, ill typed or not tokens (and the first event name that is
//!   not a token). Velocity window totals arrive as numbers like any other.
//! - `decide_view(&CompiledView) -> &'static CompiledDecision`: the decision.
//!   No heap, no strings, no dynamic dispatch: each rule's condition is a
//!   `bool` computed without short-circuits, the rules of a class are bits of
//!   a mask in precedence order, and the lowest set bit picks the decision
//!   from a static array (the last bit, always set, is the default deny). A
//!   small policy masks its classes in instead of branching on the class
//!   (see `MERGE_LIMIT`), so a well-formed event is decided without a branch.
//!
//! The same policy always gives the same tokens; the output carries the
//! policy's SHA-256 digest. It decides exactly as [`Policy::decide`] does,
//! reasons included (a property test checks it).

use std::collections::BTreeMap;

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};
use rust_decimal::Decimal;

use crate::eval::{Cause, Fault};
use crate::policy::{
    CapabilityPattern, CmpOp, DecisionKind, Expr, Field, FieldType, Policy, Rule, Test,
};

/// Symbol tables and classes of one policy.
struct Plan<'p> {
    policy: &'p Policy,
    /// The policy's tested fields in order; slot `i` is field `f{i}` of the view.
    slots: Vec<(Field, FieldType)>,
    /// For each string-typed field, its literals in order (the index is the id).
    symbols: BTreeMap<Field, Vec<String>>,
    /// For each numeric field, its thresholds, sorted and distinct by value.
    thresholds: BTreeMap<Field, Vec<Decimal>>,
    resources: Vec<String>,
    actions: Vec<String>,
    /// Each class: the indices (into `policy.rules`) of the rules that apply.
    classes: Vec<Vec<usize>>,
    /// `class_of[r][a]` for resource id `r` and action id `a`; `None` when no rule applies.
    class_of: Vec<Vec<Option<usize>>>,
}

impl<'p> Plan<'p> {
    fn new(policy: &'p Policy) -> Plan<'p> {
        let slots = policy.field_types.clone();
        let mut symbols: BTreeMap<Field, Vec<String>> = BTreeMap::new();
        for rule in &policy.rules {
            rule.for_each_test(&mut |test| {
                if let Test::Strings { field, values, .. } = test {
                    symbols
                        .entry(field.clone())
                        .or_default()
                        .extend(values.iter().cloned());
                }
            });
        }
        for values in symbols.values_mut() {
            values.sort();
            values.dedup();
        }
        let mut thresholds: BTreeMap<Field, Vec<Decimal>> = BTreeMap::new();
        for rule in &policy.rules {
            rule.for_each_test(&mut |test| {
                if let Test::Number { field, value, .. } = test {
                    thresholds
                        .entry(field.clone())
                        .or_default()
                        .push(value.normalize());
                }
            });
        }
        for values in thresholds.values_mut() {
            values.sort();
            values.dedup();
        }
        let mut resources = Vec::new();
        let mut actions = Vec::new();
        for rule in &policy.rules {
            if let CapabilityPattern::Segments { resource, action } = &rule.capability {
                resources.extend(resource.clone());
                actions.extend(action.clone());
            }
        }
        resources.sort();
        resources.dedup();
        actions.sort();
        actions.dedup();
        let mut classes: Vec<Vec<usize>> = Vec::new();
        let mut class_of = Vec::new();
        for r in 0..=resources.len() {
            let mut row = Vec::new();
            for a in 0..=actions.len() {
                let applicable: Vec<usize> = policy
                    .rules
                    .iter()
                    .enumerate()
                    .filter(|(_, rule)| {
                        pattern_covers(&rule.capability, &resources, r, &actions, a)
                    })
                    .map(|(i, _)| i)
                    .collect();
                if applicable.is_empty() {
                    row.push(None);
                    continue;
                }
                let id = match classes.iter().position(|c| *c == applicable) {
                    Some(id) => id,
                    None => {
                        classes.push(applicable);
                        classes.len() - 1
                    }
                };
                row.push(Some(id));
            }
            class_of.push(row);
        }
        Plan {
            policy,
            slots,
            symbols,
            thresholds,
            resources,
            actions,
            classes,
            class_of,
        }
    }

    fn slot(&self, field: &Field) -> usize {
        self.slots
            .iter()
            .position(|(f, _)| f == field)
            .unwrap_or(usize::MAX)
    }

    fn symbol_ids(&self, field: &Field, values: &[String]) -> Vec<u32> {
        let table = self
            .symbols
            .get(field)
            .map(Vec::as_slice)
            .unwrap_or_default();
        values
            .iter()
            .filter_map(|v| table.iter().position(|t| t == v))
            .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
            .collect()
    }
}

/// Whether a capability pattern covers resource id `r` and action id `a`
/// (an id equal to the table's length stands for every other name).
fn pattern_covers(
    pattern: &CapabilityPattern,
    resources: &[String],
    r: usize,
    actions: &[String],
    a: usize,
) -> bool {
    match pattern {
        CapabilityPattern::Any => true,
        CapabilityPattern::Segments { resource, action } => {
            let seg = |want: &Option<String>, table: &[String], id: usize| match want {
                None => true,
                Some(name) => table.get(id) == Some(name),
            };
            seg(resource, resources, r) && seg(action, actions, a)
        }
    }
}

fn decimal_tokens(value: Decimal) -> TokenStream {
    let u = value.unpack();
    let (lo, mid, hi, negative, scale) = (u.lo, u.mid, u.hi, u.negative, u.scale);
    quote! { ::capfence::__private::Decimal::from_parts(#lo, #mid, #hi, #negative, #scale) }
}

fn kind_tokens(tier: DecisionKind) -> TokenStream {
    match tier {
        DecisionKind::Deny => quote! { ::capfence::__private::DecisionKind::Deny },
        DecisionKind::RequireApproval => {
            quote! { ::capfence::__private::DecisionKind::RequireApproval }
        }
        DecisionKind::Allow => quote! { ::capfence::__private::DecisionKind::Allow },
    }
}

/// A field type as generated code writes it.
fn field_type_tokens(ty: FieldType) -> TokenStream {
    match ty {
        FieldType::Number => quote! { ::capfence::__private::FieldType::Number },
        FieldType::Token => quote! { ::capfence::__private::FieldType::Token },
        FieldType::Text => quote! { ::capfence::__private::FieldType::Text },
        FieldType::Risk => quote! { ::capfence::__private::FieldType::Risk },
    }
}

/// A malformed event's fault as generated code writes it (a table only
/// finds faults of fields; unreadable input never reaches it).
fn fault_tokens(fault: &Fault) -> TokenStream {
    match fault {
        Fault::Missing => quote! { ::capfence::__private::Fault::Missing },
        Fault::WrongType(ty) => {
            let ty = field_type_tokens(*ty);
            quote! { ::capfence::__private::Fault::WrongType(#ty) }
        }
        Fault::NotToken(ty) => {
            let ty = field_type_tokens(*ty);
            quote! { ::capfence::__private::Fault::NotToken(#ty) }
        }
        Fault::NotName => quote! { ::capfence::__private::Fault::NotName },
        Fault::Unreadable(_) => {
            quote! { ::core::compile_error!("a decision table cannot find unreadable input") }
        }
    }
}

/// A decision of a malformed event as generated code writes it: a
/// `&'static CompiledDecision`.
fn malformed_tokens(field: &Field, fault: Fault) -> TokenStream {
    let name = field.to_string();
    let decision = decision_tokens(
        quote! { ::capfence::__private::DecisionKind::Deny },
        None,
        &fault.reason(&name),
        Cause::Malformed {
            field: name.into(),
            fault,
        },
    );
    quote! {
        {
            static DECISION: ::capfence::__private::CompiledDecision = #decision;
            &DECISION
        }
    }
}

/// The default deny as generated code writes it: a `&'static CompiledDecision`.
fn default_deny_tokens() -> TokenStream {
    quote! { ::capfence::__private::default_deny() }
}

/// A decision's value as generated code writes it (for a static).
fn decision_tokens(
    kind: TokenStream,
    rule: Option<&str>,
    reason: &str,
    cause: Cause,
) -> TokenStream {
    let cause = match cause {
        Cause::Rule => quote! { ::capfence::__private::Cause::Rule },
        Cause::DefaultDeny => quote! { ::capfence::__private::Cause::DefaultDeny },
        Cause::Malformed { field, fault } => {
            let field = field.as_ref();
            let fault = fault_tokens(&fault);
            quote! { ::capfence::__private::Cause::malformed(#field, #fault) }
        }
        Cause::Refused => quote! { ::capfence::__private::Cause::Refused },
    };
    let rule = match rule {
        Some(id) => quote! { ::core::option::Option::Some(#id) },
        None => quote! { ::core::option::Option::None },
    };
    quote! {
        ::capfence::__private::CompiledDecision { kind: #kind, rule: #rule, reason: #reason, cause: #cause }
    }
}

/// Policies whose classes have at most this many rules in all decide
/// without a dispatch on the class: every rule's bit is computed and the
/// classes are masked in. Beyond it, computing every class's conditions costs
/// more than the one mispredicted jump it saves.
const MERGE_LIMIT: usize = 32;

/// Lists up to this long become a `match`; longer ones a binary search.
const MATCH_LIMIT: usize = 32;

/// The index of `subject` among `values` (sorted, distinct), or their number
/// when it is none of them: `match s { "a" => 0, "b" => 1, _ => 2 }` for short
/// lists, a binary search over a static sorted array for long ones. Indices are
/// `u32`: every list the loader accepts fits.
fn index_match(subject: TokenStream, values: &[String]) -> TokenStream {
    let other = u32::try_from(values.len()).unwrap_or(u32::MAX);
    if values.len() > MATCH_LIMIT {
        let len = values.len();
        return quote! {
            {
                static LITERALS: [&str; #len] = [#(#values),*];
                match LITERALS.binary_search(&#subject) {
                    ::core::result::Result::Ok(i) => i as u32,
                    ::core::result::Result::Err(_) => #other,
                }
            }
        };
    }
    let arms = values.iter().enumerate().map(|(i, v)| {
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        quote! { #v => #i, }
    });
    quote! { match #subject { #(#arms)* _ => #other } }
}

impl Plan<'_> {
    fn view_fn(&self) -> TokenStream {
        let resource_index = index_match(quote! { r }, &self.resources);
        let action_index = index_match(quote! { a }, &self.actions);
        let cols = self.actions.len() + 1;
        let table: Vec<TokenStream> = self
            .class_of
            .iter()
            .flat_map(|row| row.iter())
            .map(|c| {
                let id = c.map_or(u32::MAX, |c| u32::try_from(c).unwrap_or(u32::MAX));
                quote! { #id }
            })
            .collect();
        let table_len = table.len();
        let fields = self.slots.iter().enumerate().map(|(i, (field, ty))| {
            let name = format_ident!("f{}", i);
            let value = self.slot_init(field, *ty);
            quote! { #name: #value, }
        });
        quote! {
            /// Builds the typed view of `event` that [`Self::decide_view`] reads.
            pub fn view(&self, event: &::capfence::__private::Event) -> CompiledView {
                const CLASSES: [u32; #table_len] = [#(#table),*];
                let class = match (event.resource.as_deref(), event.action.as_deref()) {
                    (::core::option::Option::Some(r), ::core::option::Option::Some(a)) => {
                        let r = #resource_index as usize;
                        let a = #action_index as usize;
                        CLASSES.get(r * #cols + a).copied().unwrap_or(u32::MAX)
                    }
                    _ => u32::MAX,
                };
                CompiledView { class, fault: ::capfence::__private::name_fault(event), #(#fields)* }
            }
        }
    }

    /// A numeric field's thresholds as a `Thresholds` constant expression.
    fn thresholds_tokens(&self, field: &Field) -> TokenStream {
        let p = quote! { ::capfence::__private };
        let values = self.thresholds.get(field).cloned().unwrap_or_default();
        let (scale, scaled) = crate::compiled::fixed_point(&values);
        let values = values.into_iter().map(decimal_tokens);
        let scaled = match scaled {
            Some(list) => {
                let list = list.into_iter().map(Literal::i128_suffixed);
                quote! { ::core::option::Option::Some(&[#(#list),*]) }
            }
            None => quote! { ::core::option::Option::None },
        };
        quote! {
            #p::Thresholds { values: &[#(#values),*], scale: #scale, scaled: #scaled }
        }
    }

    fn slot_init(&self, field: &Field, ty: FieldType) -> TokenStream {
        let p = quote! { ::capfence::__private };
        match (field, ty) {
            (Field::Risk, _) => quote! { #p::risk(event.risk.as_ref()) },
            (Field::Payload(name), FieldType::Number) => {
                let thresholds = self.thresholds_tokens(field);
                quote! {
                    {
                        const THRESHOLDS: #p::Thresholds<'static> = #thresholds;
                        #p::num(event.payload.get(#name), &THRESHOLDS)
                    }
                }
            }
            (Field::Capability, _) => {
                let values = self.symbols.get(field).cloned().unwrap_or_default();
                let other = u32::try_from(values.len()).unwrap_or(u32::MAX);
                let arms = values.iter().enumerate().filter_map(|(i, v)| {
                    let (r, a) = v.split_once('.')?;
                    let i = u32::try_from(i).unwrap_or(u32::MAX);
                    Some(quote! { (#r, #a) => #i, })
                });
                quote! {
                    match (event.resource.as_deref(), event.action.as_deref()) {
                        (::core::option::Option::Some(r), ::core::option::Option::Some(a)) => #p::SymSlot {
                            state: #p::SlotState::Ok,
                            id: match (r, a) { #(#arms)* _ => #other },
                        },
                        _ => #p::SymSlot { state: #p::SlotState::Missing, id: 0 },
                    }
                }
            }
            (_, _) => {
                let values = self.symbols.get(field).cloned().unwrap_or_default();
                let index = index_match(quote! { s }, &values);
                let source = match field {
                    Field::Actor => {
                        quote! { event.actor.as_deref().map(::core::result::Result::Ok) }
                    }
                    Field::Resource => {
                        quote! { event.resource.as_deref().map(::core::result::Result::Ok) }
                    }
                    Field::Action => {
                        quote! { event.action.as_deref().map(::core::result::Result::Ok) }
                    }
                    Field::Environment => {
                        quote! { event.environment.as_deref().map(::core::result::Result::Ok) }
                    }
                    Field::Payload(name) => {
                        if ty == FieldType::Text {
                            let len = values.len();
                            return quote! {
                                {
                                    const LITERALS: [&str; #len] = [#(#values),*];
                                    #p::text_sym(event.payload.get(#name), &LITERALS)
                                }
                            };
                        }
                        let count = u32::try_from(values.len()).unwrap_or(u32::MAX);
                        return quote! {
                            #p::payload_sym(event.payload.get(#name), #count, |s: &str| #index)
                        };
                    }
                    Field::Capability | Field::Risk => quote! { ::core::option::Option::None },
                };
                quote! { #p::sym(#source, |s: &str| #index) }
            }
        }
    }

    fn expr(&self, expr: &Expr) -> TokenStream {
        match expr {
            Expr::And(items) if items.is_empty() => quote! { true },
            Expr::Or(items) if items.is_empty() => quote! { false },
            Expr::And(items) => {
                let items = items.iter().map(|e| self.expr(e));
                quote! { (#(#items)&*) }
            }
            Expr::Or(items) => {
                let items = items.iter().map(|e| self.expr(e));
                quote! { (#(#items)|*) }
            }
            Expr::Not(inner) => {
                let inner = self.expr(inner);
                quote! { (!#inner) }
            }
            Expr::Test(test) => self.test(test),
        }
    }

    fn test(&self, test: &Test) -> TokenStream {
        let slot = format_ident!("f{}", self.slot(test.field()));
        match test {
            Test::Number { field, op, value } => {
                // Exact: the threshold's rank is 2i + 1 (see `NumSlot`).
                let table = self
                    .thresholds
                    .get(field)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let i = table.iter().position(|t| t == value).unwrap_or(0);
                let value = u32::try_from(2 * i + 1).unwrap_or(u32::MAX);
                let op = match op {
                    CmpOp::Eq => quote! { == },
                    CmpOp::Ne => quote! { != },
                    CmpOp::Lt => quote! { < },
                    CmpOp::Le => quote! { <= },
                    CmpOp::Gt => quote! { > },
                    CmpOp::Ge => quote! { >= },
                };
                quote! { (v.#slot.rank #op #value) }
            }
            Test::Strings {
                field,
                values,
                negated,
                ..
            } => {
                let ids = self.symbol_ids(field, values);
                let test = if ids.is_empty() {
                    quote! { false }
                } else {
                    quote! { matches!(v.#slot.id, #(#ids)|*) }
                };
                if *negated {
                    quote! { (!#test) }
                } else {
                    test
                }
            }
            Test::Risk { levels } => {
                let mask = Literal::u8_unsuffixed(levels.bits());
                quote! { ((#mask >> v.#slot.level) & 1 != 0) }
            }
        }
    }

    fn rule_condition(&self, rule: &Rule) -> TokenStream {
        let parts: Vec<TokenStream> = rule.conditions.iter().map(|c| self.expr(&c.expr)).collect();
        if parts.is_empty() {
            quote! { true }
        } else {
            quote! { (#(#parts)&*) }
        }
    }

    /// The slots a class's rules test, in precedence order of first test:
    /// `(slot, field, type)`.
    fn tested(&self, rules: &[usize]) -> Vec<(usize, Field, FieldType)> {
        let mut order: Vec<(usize, Field, FieldType)> = Vec::new();
        for &r in rules {
            if let Some(rule) = self.policy.rules.get(r) {
                rule.for_each_test(&mut |test| {
                    let field = test.field();
                    if !order.iter().any(|(_, f, _)| f == field) {
                        order.push((self.slot(field), field.clone(), test.field_type()));
                    }
                });
            }
        }
        order
    }

    /// The bits of `rules`' conditions, rule `rules[j]` at bit `base + j`.
    fn rule_bits(&self, rules: &[usize], base: usize) -> Vec<TokenStream> {
        rules
            .iter()
            .enumerate()
            .filter_map(|(j, &r)| {
                let rule = self.policy.rules.get(r)?;
                let cond = self.rule_condition(rule);
                let bit = Literal::u32_unsuffixed(u32::try_from(base + j).unwrap_or(63));
                Some(quote! { ((#cond as u64) << #bit) })
            })
            .collect()
    }

    /// The decisions of `rules`, as values for a static array.
    fn rule_decisions(&self, rules: &[usize]) -> Vec<TokenStream> {
        rules
            .iter()
            .filter_map(|&r| {
                let rule = self.policy.rules.get(r)?;
                Some(decision_tokens(
                    kind_tokens(rule.tier),
                    Some(&rule.id),
                    &rule.decision_reason(),
                    Cause::Rule,
                ))
            })
            .collect()
    }

    fn class_fn(&self, id: usize, rules: &[usize]) -> TokenStream {
        let name = format_ident!("class_{}", id);
        // Malformed: the first tested field, in precedence order, that is bad.
        let order = self.tested(rules);
        let malformed = if order.is_empty() {
            quote! {}
        } else {
            let states = order.iter().map(|(s, _, _)| {
                let slot = format_ident!("f{}", s);
                quote! { (v.#slot.state as u8) }
            });
            let checks = order.iter().map(|(s, field, ty)| {
                let slot = format_ident!("f{}", s);
                let missing = malformed_tokens(field, Fault::Missing);
                let bad = malformed_tokens(field, Fault::WrongType(*ty));
                // Built-in names were checked before the class (`fault`).
                let not_token = match (field, ty) {
                    (Field::Payload(_), FieldType::Token | FieldType::Text) => {
                        let decision = malformed_tokens(field, Fault::NotToken(*ty));
                        quote! {
                            if v.#slot.state == ::capfence::__private::SlotState::NotToken { return #decision; }
                        }
                    }
                    _ => quote! {},
                };
                quote! {
                    if v.#slot.state == ::capfence::__private::SlotState::Missing { return #missing; }
                    #not_token
                    if v.#slot.state != ::capfence::__private::SlotState::Ok { return #bad; }
                }
            });
            quote! {
                if (#(#states)|*) != 0 {
                    #(#checks)*
                }
            }
        };
        // Rules as bits of 64-bit masks, precedence order; the lowest set bit
        // picks the decision from a static array, without a branch. The last
        // mask carries one more bit, always set: the default deny.
        let chunks: Vec<&[usize]> = rules.chunks(63).collect();
        let last = chunks.len().saturating_sub(1);
        let mut picks = Vec::new();
        for (n, chunk) in chunks.iter().enumerate() {
            let bits = self.rule_bits(chunk, 0);
            let mut decisions = self.rule_decisions(chunk);
            if n == last {
                let default = Literal::u32_unsuffixed(u32::try_from(chunk.len()).unwrap_or(63));
                decisions.push(quote! { ::capfence::__private::DEFAULT_DENY });
                let len = decisions.len();
                picks.push(quote! {
                    static DECISIONS: [::capfence::__private::CompiledDecision; #len] = [#(#decisions),*];
                    let m: u64 = #(#bits)|* | (1u64 << #default);
                    ::capfence::__private::pick(&DECISIONS, m)
                });
            } else {
                let len = decisions.len();
                picks.push(quote! {
                    {
                        static DECISIONS: [::capfence::__private::CompiledDecision; #len] = [#(#decisions),*];
                        let m: u64 = #(#bits)|*;
                        if m != 0 {
                            return ::capfence::__private::pick(&DECISIONS, m);
                        }
                    }
                });
            }
        }
        if chunks.is_empty() {
            picks.push(default_deny_tokens());
        }
        quote! {
            #[inline]
            #[allow(unused_variables, unused_parens, clippy::all)]
            fn #name(v: &CompiledView) -> &'static ::capfence::__private::CompiledDecision {
                #malformed
                #(#picks)*
            }
        }
    }

    /// Whether `decide_view` computes every class's rules at once (see
    /// [`MERGE_LIMIT`]) instead of dispatching on the class.
    fn merges(&self) -> bool {
        let bits: usize = self.classes.iter().map(Vec::len).sum();
        !self.classes.is_empty() && bits <= MERGE_LIMIT
    }

    /// `decide_view`'s body when every class's rules fit in one mask (see
    /// [`MERGE_LIMIT`]): no dispatch on the class. Each class's rule bits are
    /// computed and masked in by comparing the class, the default deny is
    /// the last bit, and the lowest set bit picks the decision. One branch,
    /// almost never taken: a name fault, or any slot not `Ok`, goes to
    /// `undecided`, which decides as the class functions do.
    fn merged_body(&self) -> TokenStream {
        let p = quote! { ::capfence::__private };
        // Any slot not `Ok`, or a name fault: the slow path, which dispatches
        // on the class and decides as the class function does (a slot the
        // class does not test is ignored there). One test of a few ORed
        // bytes, almost never true for calls that are decided on their merits.
        let states = (0..self.slots.len()).map(|s| {
            let slot = format_ident!("f{}", s);
            quote! { (v.#slot.state as u8) }
        });
        let mut terms = Vec::new();
        let mut decisions = Vec::new();
        let mut base = 0usize;
        for (c, rules) in self.classes.iter().enumerate() {
            let bits = self.rule_bits(rules, base);
            decisions.extend(self.rule_decisions(rules));
            base += rules.len();
            let c = u32::try_from(c).unwrap_or(u32::MAX);
            terms.push(quote! {
                ((#(#bits)|*) & 0u64.wrapping_sub((v.class == #c) as u64))
            });
        }
        decisions.push(quote! { #p::DEFAULT_DENY });
        let len = decisions.len();
        let default = Literal::u32_unsuffixed(u32::try_from(base).unwrap_or(63));
        quote! {
            if ((v.fault as u8) #(| #states)*) != 0 {
                return undecided(v);
            }
            static DECISIONS: [#p::CompiledDecision; #len] = [#(#decisions),*];
            let m: u64 = #(#terms)|* | (1u64 << #default);
            #p::pick(&DECISIONS, m)
        }
    }

    /// The view's slot fields, `f0 …`, with their types.
    fn slot_fields(&self) -> Vec<TokenStream> {
        let p = quote! { ::capfence::__private };
        self.slots
            .iter()
            .enumerate()
            .map(|(i, (field, ty))| {
                let name = format_ident!("f{}", i);
                let doc = format!("`{}` ({})", field, ty.describe());
                let ty = match (field, ty) {
                    (Field::Risk, _) => quote! { #p::RiskSlot },
                    (_, FieldType::Number) => quote! { #p::NumSlot },
                    _ => quote! { #p::SymSlot },
                };
                quote! { #[doc = #doc] pub #name: #ty, }
            })
            .collect()
    }

    /// A slot of a gated call's view, from its context and typed arguments.
    fn gate_slot(&self, field: &Field, ty: FieldType, call: &GateCall<'_>) -> TokenStream {
        let p = quote! { ::capfence::__private };
        let ctx = &call.context;
        let values = self.symbols.get(field).cloned().unwrap_or_default();
        let constant = |name: &str| {
            let index = index_match(quote! { s }, &values);
            quote! { #p::sym(::core::option::Option::Some(::core::result::Result::Ok(#name)), |s: &str| #index) }
        };
        match (field, ty) {
            (Field::Risk, _) => quote! { #p::risk_level(#p::GateContext::risk(#ctx)) },
            (Field::Resource, _) => constant(call.resource),
            (Field::Action, _) => constant(call.action),
            (Field::Capability, _) => {
                let capability = format!("{}.{}", call.resource, call.action);
                let id = values
                    .iter()
                    .position(|v| *v == capability)
                    .unwrap_or(values.len());
                let id = u32::try_from(id).unwrap_or(u32::MAX);
                quote! { #p::SymSlot { state: #p::SlotState::Ok, id: #id } }
            }
            (Field::Actor | Field::Environment, _) => {
                let index = index_match(quote! { s }, &values);
                let source = if *field == Field::Actor {
                    quote! { #p::GateContext::actor(#ctx) }
                } else {
                    quote! { #p::GateContext::environment(#ctx) }
                };
                quote! { #p::sym(::core::option::Option::Some(::core::result::Result::Ok(#source)), |s: &str| #index) }
            }
            (Field::Payload(name), _) => {
                let arg = call
                    .args
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, tokens)| quote! { ::core::option::Option::Some(#p::PayloadValue::as_arg(&#tokens)) });
                let Some(arg) = arg else {
                    return if ty == FieldType::Number {
                        quote! { #p::MISSING_NUM }
                    } else {
                        quote! { #p::MISSING_SYM }
                    };
                };
                match ty {
                    FieldType::Number => {
                        let thresholds = self.thresholds_tokens(field);
                        quote! {
                            {
                                const THRESHOLDS: #p::Thresholds<'static> = #thresholds;
                                #p::arg_num(#arg, &THRESHOLDS)
                            }
                        }
                    }
                    FieldType::Text => {
                        let len = values.len();
                        quote! {
                            {
                                const LITERALS: [&str; #len] = [#(#values),*];
                                #p::arg_text(#arg, &LITERALS)
                            }
                        }
                    }
                    _ => {
                        let index = index_match(quote! { s }, &values);
                        let count = u32::try_from(values.len()).unwrap_or(u32::MAX);
                        quote! { #p::arg_sym(#arg, #count, |s: &str| #index) }
                    }
                }
            }
        }
    }

    /// The decision of one gated call (see [`generate_gate`]).
    fn gate(&self, call: &GateCall<'_>) -> TokenStream {
        let p = quote! { ::capfence::__private };
        let windowed = self
            .policy
            .windows()
            .iter()
            .any(|w| w.covers(call.resource, call.action));
        if windowed {
            return quote! { ::core::option::Option::None::<&'static #p::CompiledDecision> };
        }
        let r = self
            .resources
            .iter()
            .position(|v| v == call.resource)
            .unwrap_or(self.resources.len());
        let a = self
            .actions
            .iter()
            .position(|v| v == call.action)
            .unwrap_or(self.actions.len());
        let class = self
            .class_of
            .get(r)
            .and_then(|row| row.get(a))
            .copied()
            .flatten();
        let ctx = &call.context;
        let resource_ok = crate::token::is_segment(call.resource);
        let action_ok = crate::token::is_segment(call.action);
        let fault =
            quote! { #p::gate_fault(#resource_ok, #action_ok, #p::GateContext::fault(#ctx)) };
        let default = default_deny_tokens();
        let Some(class) = class.and_then(|c| self.classes.get(c).map(|rules| (c, rules))) else {
            return quote! {
                ::core::option::Option::Some(match #fault {
                    #p::NameFault::None => #default,
                    fault => #p::name_fault_decision(fault),
                })
            };
        };
        let class_fn = self.class_fn(class.0, class.1);
        let class_name = format_ident!("class_{}", class.0);
        let slot_fields = self.slot_fields();
        let slots = self.slots.iter().enumerate().map(|(i, (field, ty))| {
            let name = format_ident!("f{}", i);
            let value = self.gate_slot(field, *ty, call);
            quote! { #name: #value, }
        });
        quote! {
            {
                #[allow(clippy::all, clippy::pedantic, unused_parens, non_camel_case_types, dead_code, missing_docs)]
                mod __capfence_gate {
                    #[derive(Debug, Clone, Copy)]
                    pub struct CompiledView { #(#slot_fields)* }
                    #class_fn
                    #[inline]
                    pub fn decide(fault: #p::NameFault, v: &CompiledView) -> &'static #p::CompiledDecision {
                        if fault != #p::NameFault::None {
                            return #p::name_fault_decision(fault);
                        }
                        #class_name(v)
                    }
                }
                #[allow(unused_parens, clippy::all)]
                let view = __capfence_gate::CompiledView { #(#slots)* };
                ::core::option::Option::Some(__capfence_gate::decide(#fault, &view))
            }
        }
    }

    fn items(&self) -> TokenStream {
        let p = quote! { ::capfence::__private };
        let digest = &self.policy.digest;
        let source = &self.policy.source;
        let file = &self.policy.file;
        let slot_fields = self.slot_fields();
        let class_fns = self
            .classes
            .iter()
            .enumerate()
            .map(|(id, rules)| self.class_fn(id, rules));
        let class_arms = (0..self.classes.len()).map(|id| {
            let name = format_ident!("class_{}", id);
            let id = u32::try_from(id).unwrap_or(u32::MAX);
            quote! { #id => #name(v), }
        });
        let default = default_deny_tokens();
        let dispatch = quote! {
            match v.class {
                #(#class_arms)*
                _ => #default,
            }
        };
        let named = quote! {
            if v.fault != #p::NameFault::None {
                return #p::name_fault_decision(v.fault);
            }
        };
        let (undecided, decide_body) = if self.merges() {
            let undecided = quote! {
                /// An event the merged rules do not decide: a name that is
                /// not a token, or a field that is missing, ill typed or not
                /// a token (malformed if its class tests it).
                #[cold]
                #[inline(never)]
                fn undecided(v: &CompiledView) -> &'static #p::CompiledDecision {
                    #named
                    #dispatch
                }
            };
            (undecided, self.merged_body())
        } else {
            (quote! {}, quote! { #named #dispatch })
        };
        let view_fn = self.view_fn();
        let facts = self.policy.rules.iter().map(|rule| {
            let f = rule.facts(&self.policy.approvers);
            let id = &f.id;
            let tier = kind_tokens(f.tier);
            let id = id.as_ref();
            let opt = |s: &Option<crate::facts::Name>| match s.as_deref() {
                Some(s) => quote! { ::core::option::Option::Some(#p::Cow::Borrowed(#s)) },
                None => quote! { ::core::option::Option::None },
            };
            let (resource, action) = (opt(&f.resource), opt(&f.action));
            let numbers = f.numbers.iter().map(|n| n.as_ref());
            let approvals = f.approvals;
            let approvers = f.approvers.iter().map(|a| {
                let (name, key) = (a.name.as_ref(), a.key.as_ref());
                quote! { #p::Eligible { name: #p::Cow::Borrowed(#name), key: #p::Cow::Borrowed(#key) } }
            });
            let conditions = f.conditions.iter().map(|c| c.as_ref());
            let limits = f.limits.iter().map(|l| {
                let (field, op, value) = (l.field.as_ref(), l.op.as_ref(), l.value.as_ref());
                quote! {
                    #p::Limit {
                        field: #p::Cow::Borrowed(#field),
                        op: #p::Cow::Borrowed(#op),
                        value: #p::Cow::Borrowed(#value),
                    }
                }
            });
            quote! {
                #p::RuleFacts {
                    id: #p::Cow::Borrowed(#id),
                    tier: #tier,
                    resource: #resource,
                    action: #action,
                    numbers: #p::Cow::Borrowed(&[#(#p::Cow::Borrowed(#numbers)),*]),
                    approvals: #approvals,
                    approvers: #p::Cow::Borrowed(&[#(#approvers),*]),
                    conditions: #p::Cow::Borrowed(&[#(#p::Cow::Borrowed(#conditions)),*]),
                    limits: #p::Cow::Borrowed(&[#(#limits),*]),
                }
            }
        });
        let windows = self.policy.windows().into_iter().map(|w| {
            let opt = |s: &Option<crate::aggregate::Name>| match s.as_deref() {
                Some(s) => quote! { ::core::option::Option::Some(#p::Cow::Borrowed(#s)) },
                None => quote! { ::core::option::Option::None },
            };
            let (field, resource, action) = (opt(&w.field), opt(&w.resource), opt(&w.action));
            let seconds = w.seconds;
            let per = w.per.iter().map(|p| p.as_ref());
            let new = w.new.iter().map(|p| p.as_ref());
            let text = w.text.iter().map(|p| p.as_ref());
            let cooling = w.cooling;
            quote! {
                #p::Window {
                    field: #field,
                    seconds: #seconds,
                    per: #p::Cow::Borrowed(&[#(#p::Cow::Borrowed(#per)),*]),
                    resource: #resource,
                    action: #action,
                    new: #p::Cow::Borrowed(&[#(#p::Cow::Borrowed(#new)),*]),
                    cooling: #cooling,
                    text: #p::Cow::Borrowed(&[#(#p::Cow::Borrowed(#text)),*]),
                }
            }
        });
        let doc =
            format!("The decision table of `{file}` (SHA-256 {digest}), generated by CapFence.");
        quote! {
            /// The typed view of an event that the compiled table decides on.
            #[derive(Debug, Clone, Copy, PartialEq, Eq)]
            pub struct CompiledView {
                /// The capability class: which rules apply (`u32::MAX`: none).
                pub class: u32,
                /// The first of the event's names that is not a token, if any.
                pub fault: #p::NameFault,
                #(#slot_fields)*
            }

            #[doc = #doc]
            #[derive(Debug, Clone, Copy, Default)]
            pub struct CompiledPolicy;

            #(#class_fns)*

            #undecided

            #[allow(unused_parens, clippy::all)]
            impl CompiledPolicy {
                /// SHA-256 of the policy file this table was generated from.
                pub const DIGEST: &'static str = #digest;

                /// The policy file's text, whole.
                pub const SOURCE: &'static str = #source;

                #view_fn

                /// Decides a view: no allocation, no string handling.
                #[inline]
                pub fn decide_view(&self, v: &CompiledView) -> &'static #p::CompiledDecision {
                    #decide_body
                }
            }

            impl #p::Sealed for CompiledPolicy {}

            impl #p::Decide for CompiledPolicy {
                fn decide(&self, event: &#p::Event) -> #p::Decision {
                    self.decide_view(&self.view(event)).to_decision()
                }

                fn rule_facts(&self) -> #p::RuleFactList {
                    ::std::vec![#(#facts),*]
                }

                fn windows(&self) -> #p::WindowList {
                    ::std::vec![#(#windows),*]
                }

                fn digest(&self) -> &str {
                    Self::DIGEST
                }

                fn source(&self) -> &str {
                    Self::SOURCE
                }
            }

            impl #p::Compiled for CompiledPolicy {
                type View = CompiledView;

                fn view(&self, event: &#p::Event) -> CompiledView {
                    CompiledPolicy::view(self, event)
                }

                fn decide_view(&self, view: &CompiledView) -> &'static #p::CompiledDecision {
                    CompiledPolicy::decide_view(self, view)
                }
            }
        }
    }
}

/// The decision table as items (`CompiledView`, `CompiledPolicy` and their
/// impls), for a file or a module.
pub fn generate(policy: &Policy) -> TokenStream {
    Plan::new(policy).items()
}

/// One gated call, as [`generate_gate`] decides it.
pub struct GateCall<'a> {
    /// The capability's resource and action (lowercase).
    pub resource: &'a str,
    /// See `resource`.
    pub action: &'a str,
    /// An expression of a type that implements `GateContext` (actor,
    /// environment, risk and their name fault).
    pub context: TokenStream,
    /// Payload field name and the expression of the argument passed as it
    /// (a type that implements `PayloadValue`).
    pub args: Vec<(String, TokenStream)>,
}

/// The decision of a gated call as an expression of type
/// `Option<CompiledDecision>`, computed from its context and typed arguments:
/// the capability's class is fixed at compile time, numbers are ranked and
/// strings looked up without building an event or a payload map. `None` when
/// a velocity window counts the capability: that decision needs the ledger's
/// totals and is made inside the transaction that records it. It decides as
/// [`Policy::decide`] does on the event the call stands for (a property test
/// checks it).
pub fn generate_gate(policy: &Policy, call: &GateCall<'_>) -> TokenStream {
    Plan::new(policy).gate(call)
}

/// The decision table as a block expression whose value is the
/// `CompiledPolicy` (what `capfence::policy!` expands to). `track` names files
/// whose change must rebuild the user's crate.
pub fn generate_expr(policy: &Policy, track: &[String]) -> TokenStream {
    let items = generate(policy);
    let track = track
        .iter()
        .map(|path| quote! { const _: &[u8] = include_bytes!(#path); });
    quote! {
        {
            #(#track)*
            #[allow(clippy::all, clippy::pedantic, unused_parens, non_camel_case_types)]
            mod __capfence_table {
                #items
            }
            __capfence_table::CompiledPolicy
        }
    }
}

/// The decision table as a formatted Rust file to check in, with a header
/// naming the policy and its digest. Include it in a module of its own:
/// `mod fintech { include!("fintech_table.rs"); }`. (Feature `cli`.)
#[cfg(feature = "cli")]
pub fn render_file(policy: &Policy) -> String {
    let items = generate(policy);
    let body = match syn::parse2::<syn::File>(items.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(_) => items.to_string(),
    };
    format!(
        "// Generated by capfence-compile from {} — do not edit; regenerate with\n\
         // `capfence-compile build {} -o FILE.rs`.\n\
         // Policy SHA-256: {}\n\
         // Include it in a module of its own: `mod table {{ include!(\"FILE.rs\"); }}`.\n\n{body}",
        policy.file, policy.file, policy.digest
    )
}
