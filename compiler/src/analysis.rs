//! Exact policy analysis: `capfence-compile lint`.
//!
//! Each rule's region (the well-formed events it matches) is computed exactly
//! over the policy's own condition language ([`region`]); the lints compare
//! regions, never samples:
//! - `unsatisfiable-rule` (error): the region is empty;
//! - `shadowed-rule` (warning): the region is covered by earlier rules in
//!   precedence order, so the rule never decides any well-formed event; a
//!   note says when removing it would still change which events are
//!   malformed (it is the only rule of some capability testing a field);
//! - `conflict` (warning): an allow or require_approval rule overlaps the part
//!   of a higher-tier rule that decides; the note gives the overlap in words
//!   and an example event;
//! - `unbounded-amount` (warning): an allow rule bounds a number above only;
//! - `default-deny-gap` (note): part of a capability the policy mentions that
//!   no rule covers;
//! - `unauthenticated-approvals` (warning): require_approval rules but no
//!   `approvers:`, so approvals are not signed.
//!
//! Rules are indexed by capability pattern before pairs are compared.

mod direction;
#[cfg(feature = "cli")]
pub mod gates;
pub mod region;
mod report;

pub use direction::loosenings;
pub use report::DiffReport;

use std::collections::BTreeMap;

use region::{Box, End, Region, describe_box};

use crate::diagnostic::{Code, Diagnostic, Related, Severity};
use crate::policy::{CapabilityPattern, DecisionKind, Policy, Rule};

/// How many boxes of a region a note spells out.
const SHOWN: usize = 3;

fn describe(region: &Region, with_capability: bool) -> String {
    let mut parts: Vec<String> = region
        .boxes
        .iter()
        .take(SHOWN)
        .map(|b| describe_box(b, with_capability))
        .collect();
    if region.boxes.len() > SHOWN {
        parts.push(format!("… ({} more)", region.boxes.len() - SHOWN));
    }
    parts.join(" or ")
}

/// The rules' regions and an index by capability.
pub struct Analysis<'p> {
    policy: &'p Policy,
    regions: Vec<Option<Region>>,
    /// For each rule, the earlier rules whose capability patterns overlap it.
    earlier: Vec<Vec<usize>>,
    /// For each rule, the part of its region where it decides.
    effective: Vec<Option<Region>>,
}

fn patterns_overlap(a: &CapabilityPattern, b: &CapabilityPattern) -> bool {
    match (a, b) {
        (CapabilityPattern::Any, _) | (_, CapabilityPattern::Any) => true,
        (
            CapabilityPattern::Segments {
                resource: r1,
                action: a1,
            },
            CapabilityPattern::Segments {
                resource: r2,
                action: a2,
            },
        ) => {
            let seg = |x: &Option<String>, y: &Option<String>| x.is_none() || y.is_none() || x == y;
            seg(r1, r2) && seg(a1, a2)
        }
    }
}

impl<'p> Analysis<'p> {
    /// Computes every rule's region.
    pub fn new(policy: &'p Policy) -> Analysis<'p> {
        let regions = policy
            .rules
            .iter()
            .map(|r| Region::of_rule(r).ok())
            .collect();
        // Index rules by resource so that only rules that can overlap are compared.
        let mut by_resource: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
        for (i, rule) in policy.rules.iter().enumerate() {
            let key = match &rule.capability {
                CapabilityPattern::Segments {
                    resource: Some(r), ..
                } => Some(r.as_str()),
                _ => None,
            };
            by_resource.entry(key).or_default().push(i);
        }
        let wildcard: Vec<usize> = by_resource.get(&None).cloned().unwrap_or_default();
        let earlier = policy
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let mut candidates: Vec<usize> = match &rule.capability {
                    CapabilityPattern::Segments {
                        resource: Some(r), ..
                    } => {
                        let mut c = by_resource
                            .get(&Some(r.as_str()))
                            .cloned()
                            .unwrap_or_default();
                        c.extend(wildcard.iter().copied());
                        c
                    }
                    _ => (0..policy.rules.len()).collect(),
                };
                candidates.retain(|&j| {
                    j < i
                        && policy.rules.get(j).is_some_and(|other| {
                            patterns_overlap(&rule.capability, &other.capability)
                        })
                });
                candidates.sort_unstable();
                candidates.dedup();
                candidates
            })
            .collect();
        let mut analysis = Analysis {
            policy,
            regions,
            earlier,
            effective: Vec::new(),
        };
        analysis.effective = (0..policy.rules.len())
            .map(|i| analysis.compute_effective(i))
            .collect();
        analysis
    }

    /// The region of rule `i` (`None` if too complex to analyse).
    pub fn region(&self, i: usize) -> Option<&Region> {
        self.regions.get(i).and_then(Option::as_ref)
    }

    /// The part of rule `i`'s region where it actually decides.
    pub fn effective(&self, i: usize) -> Option<Region> {
        self.effective.get(i).cloned().flatten()
    }

    fn compute_effective(&self, i: usize) -> Option<Region> {
        let mut region = self.region(i)?.clone();
        for &j in self.earlier.get(i)? {
            region = region.minus(self.region(j)?).ok()?;
            if region.is_empty() {
                break;
            }
        }
        Some(region)
    }

    fn diagnostic(
        &self,
        rule: &Rule,
        code: Code,
        severity: Severity,
        message: String,
    ) -> Diagnostic {
        Diagnostic {
            code,
            severity,
            rule: Some(rule.id.clone()),
            file: self.policy.file.clone(),
            line: rule.location.line,
            column: rule.location.column,
            message,
            related: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn witness(&self, region: &Region) -> Option<String> {
        region
            .boxes
            .first()
            .and_then(|b| b.witness(&self.policy.field_types))
            .map(|e| e.to_json())
    }

    /// Whether some call of `resource.action` by `actor` in `environment` at
    /// `risk` can be allowed or held for approval, whatever its payload: some
    /// allow or require_approval rule decides a non-empty part of that space
    /// (exact, by regions; never sampled). `true` when the analysis is too
    /// complex to say: a caller hiding what cannot pass never hides on doubt.
    pub fn can_pass(
        &self,
        resource: &str,
        action: &str,
        actor: &str,
        environment: &str,
        risk: crate::policy::Risk,
    ) -> bool {
        use crate::policy::{Field, RiskSet};
        let mut space = Box::capability(&CapabilityPattern::Segments {
            resource: Some(resource.to_ascii_lowercase()),
            action: Some(action.to_ascii_lowercase()),
        });
        space.risk = RiskSet::of(risk);
        space
            .strings
            .insert(Field::Actor, region::StrSet::of([actor.to_owned()]));
        space.strings.insert(
            Field::Environment,
            region::StrSet::of([environment.to_ascii_lowercase()]),
        );
        let space = Region::of(space);
        self.policy
            .rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| rule.tier != DecisionKind::Deny)
            .any(|(i, _)| {
                self.effective(i)
                    .and_then(|effective| effective.intersect(&space).ok())
                    .is_none_or(|overlap| !overlap.is_empty())
            })
    }

    /// Every finding, in rule order.
    pub fn lint(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for (i, rule) in self.policy.rules.iter().enumerate() {
            let Some(region) = self.region(i) else {
                out.push(self.diagnostic(
                    rule,
                    Code::AnalysisSkipped,
                    Severity::Note,
                    format!(
                        "{} expands to more than {} cases and was not analysed",
                        rule.id,
                        region::MAX_BOXES
                    ),
                ));
                continue;
            };
            if region.is_empty() {
                out.push(self.diagnostic(
                    rule,
                    Code::UnsatisfiableRule,
                    Severity::Error,
                    format!(
                        "{}: its conditions can never all hold, so it never matches",
                        rule.id
                    ),
                ));
                continue;
            }
            let effective = self.effective(i);
            if effective.as_ref().is_some_and(Region::is_empty) {
                let mut d = self.diagnostic(
                    rule,
                    Code::ShadowedRule,
                    Severity::Warning,
                    format!(
                        "{} never decides: every well-formed event it matches is decided by an \
                         earlier rule",
                        rule.id
                    ),
                );
                for &j in self.earlier.get(i).map(Vec::as_slice).unwrap_or_default() {
                    let (Some(other), Some(theirs)) = (self.policy.rules.get(j), self.region(j))
                    else {
                        continue;
                    };
                    if region.intersect(theirs).is_ok_and(|r| !r.is_empty()) {
                        d.related.push(Related {
                            rule: other.id.clone(),
                            line: other.location.line,
                        });
                        d.notes.push(format!(
                            "covered by {} (line {})",
                            other.id, other.location.line
                        ));
                    }
                }
                for (capability, field) in sole_tests(self.policy, i) {
                    d.notes.push(format!(
                        "removing it changes which events are malformed: no other rule for \
                         {capability} tests `{field}`, so events lacking it or carrying an \
                         ill-typed value would no longer be denied as malformed"
                    ));
                }
                out.push(d);
                continue;
            }
            if rule.tier != DecisionKind::Deny {
                self.conflicts(i, rule, region, &mut out);
            }
            if rule.tier == DecisionKind::Allow {
                self.unbounded(rule, region, &mut out);
            }
        }
        self.gaps(&mut out);
        self.unauthenticated(&mut out);
        out
    }

    /// A policy that holds events for approval but lists no `approvers:`:
    /// anyone who can reach the state directory can approve.
    fn unauthenticated(&self, out: &mut Vec<Diagnostic>) {
        if !self.policy.approvers.is_empty() {
            return;
        }
        let Some(first) = self.policy.tier(DecisionKind::RequireApproval).next() else {
            return;
        };
        let mut d = self.diagnostic(
            first,
            Code::UnauthenticatedApprovals,
            Severity::Warning,
            "the policy has require_approval rules but no `approvers:`: approvals are not \
             authenticated, and any process that can write the ledger can approve (or activate \
             another policy by name)"
                .to_owned(),
        );
        d.notes.push(
            "list operators' public keys under a top-level `approvers:` (`capfence keys new` \
             makes a key pair); approvals must then be signed"
                .to_owned(),
        );
        out.push(d);
    }

    fn conflicts(&self, i: usize, rule: &Rule, region: &Region, out: &mut Vec<Diagnostic>) {
        let mut d = self.diagnostic(
            rule,
            Code::Conflict,
            Severity::Warning,
            format!("{} is partly overridden by a higher tier", rule.id),
        );
        for &j in self.earlier.get(i).map(Vec::as_slice).unwrap_or_default() {
            let Some(other) = self.policy.rules.get(j) else {
                continue;
            };
            if other.tier >= rule.tier {
                continue;
            }
            let Some(decides) = self.effective(j) else {
                continue;
            };
            let Ok(overlap) = region.intersect(&decides) else {
                continue;
            };
            if overlap.is_empty() {
                continue;
            }
            d.related.push(Related {
                rule: other.id.clone(),
                line: other.location.line,
            });
            let mut note = format!(
                "{} (line {}, {}) decides where {}",
                other.id,
                other.location.line,
                other.tier,
                describe(&overlap, false)
            );
            if let Some(example) = self.witness(&overlap) {
                note.push_str(&format!("; e.g. {example}"));
            }
            d.notes.push(note);
        }
        if !d.related.is_empty() {
            out.push(d);
        }
    }

    fn unbounded(&self, rule: &Rule, region: &Region, out: &mut Vec<Diagnostic>) {
        let mut fields: Vec<(String, String)> = Vec::new();
        for b in &region.boxes {
            for (field, interval) in &b.numbers {
                if let (End::Open, End::Incl(v) | End::Excl(v)) = (interval.lo, interval.hi)
                    && !fields.iter().any(|(f, _)| *f == field.name())
                {
                    fields.push((field.name().to_owned(), v.to_string()));
                }
            }
        }
        for (field, bound) in fields {
            let mut d = self.diagnostic(
                rule,
                Code::UnboundedAmount,
                Severity::Warning,
                format!(
                    "{} bounds `{field}` above ({bound}) but not below: negative amounts pass",
                    rule.id
                ),
            );
            d.notes
                .push(format!("help: add a lower bound, e.g. `{field}_gte: 0.01`"));
            out.push(d);
        }
    }

    fn gaps(&self, out: &mut Vec<Diagnostic>) {
        let mut seen: Vec<&CapabilityPattern> = Vec::new();
        for rule in &self.policy.rules {
            if seen.contains(&&rule.capability) {
                continue;
            }
            seen.push(&rule.capability);
            let mut gap = Region::of(Box::capability(&rule.capability));
            let mut complete = true;
            for (j, other) in self.policy.rules.iter().enumerate() {
                if !patterns_overlap(&rule.capability, &other.capability) {
                    continue;
                }
                match self.region(j).map(|r| gap.minus(r)) {
                    Some(Ok(rest)) => gap = rest,
                    _ => {
                        complete = false;
                        break;
                    }
                }
                if gap.is_empty() {
                    break;
                }
            }
            if !complete || gap.is_empty() {
                continue;
            }
            let wildcard = !matches!(
                &rule.capability,
                CapabilityPattern::Segments {
                    resource: Some(_),
                    action: Some(_)
                }
            );
            let region = describe(&gap, wildcard);
            let message = if region == "every event" {
                format!(
                    "{}: no rule ever matches, so every event falls to default deny",
                    rule.capability
                )
            } else {
                format!(
                    "{} with {region} is covered by no rule and falls to default deny",
                    rule.capability
                )
            };
            let mut d = self.diagnostic(rule, Code::DefaultDenyGap, Severity::Note, message);
            d.line = rule.capability_location.line;
            d.column = rule.capability_location.column;
            if let Some(example) = self.witness(&gap) {
                d.notes.push(format!("e.g. {example}"));
            }
            out.push(d);
        }
    }
}

/// Lints a policy.
///
/// ```
/// use capfence_compiler::{Policy, analysis::lint};
/// let policy = Policy::parse(
///     "deny:\n  - capability: payments.transfer\n    amount_gt: 100\n\
///      allow:\n  - capability: payments.transfer\n    amount_gt: 200\n",
///     "p.yaml",
/// ).unwrap();
/// let codes: Vec<_> = lint(&policy).into_iter().map(|d| d.code).collect();
/// assert_eq!(codes, ["shadowed-rule", "default-deny-gap"]);
/// ```
pub fn lint(policy: &Policy) -> Vec<Diagnostic> {
    Analysis::new(policy).lint()
}

/// What a policy decides in a region: the decision and the deciding rule
/// (`None`: the default deny).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Allow, require approval or deny.
    pub decision: crate::policy::DecisionKind,
    /// The deciding rule's id.
    pub rule: Option<String>,
}

/// One region where two policies decide differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The region in words, capability first.
    pub region: String,
    /// The old decision and rule.
    pub old: Outcome,
    /// The new decision and rule.
    pub new: Outcome,
    /// An event in the region (JSON), valid for both policies.
    pub witness: Option<String>,
}

/// Every region of a policy with the decision made there: each rule's
/// effective region, then the default-deny rest. `None` when too complex.
pub fn decision_map(
    analysis: &Analysis<'_>,
) -> Option<Vec<(Region, crate::eval::DecisionKind, Option<String>)>> {
    use crate::eval::DecisionKind;
    let mut map = Vec::new();
    let mut rest = Region::of(Box::all());
    for (i, rule) in analysis.policy.rules.iter().enumerate() {
        let kind = rule.tier;
        let effective = analysis.effective(i)?;
        if !effective.is_empty() {
            map.push((effective, kind, Some(rule.id.clone())));
        }
        rest = rest.minus(analysis.region(i)?).ok()?;
    }
    if !rest.is_empty() {
        map.push((rest, DecisionKind::Deny, None));
    }
    Some(map)
}

/// The capabilities a policy can tell apart: every resource and action its
/// patterns name, plus `other` for every name it does not.
fn capability_grid(policies: &[&Policy]) -> Vec<(String, String)> {
    let mut resources = vec!["other".to_owned()];
    let mut actions = vec!["other".to_owned()];
    for policy in policies {
        for rule in &policy.rules {
            if let CapabilityPattern::Segments { resource, action } = &rule.capability {
                resources.extend(resource.clone());
                actions.extend(action.clone());
            }
        }
    }
    resources.sort();
    resources.dedup();
    actions.sort();
    actions.dedup();
    let mut grid = Vec::new();
    for r in &resources {
        for a in &actions {
            grid.push((r.clone(), a.clone()));
        }
    }
    grid
}

/// The fields (with their types) that an event of `resource.action` must
/// carry under `policy`: every field a rule applying to it tests.
fn required_fields(
    policy: &Policy,
    resource: &str,
    action: &str,
    skip: Option<usize>,
) -> BTreeMap<String, crate::policy::FieldType> {
    let mut out = BTreeMap::new();
    for (i, rule) in policy.rules.iter().enumerate() {
        if Some(i) == skip || !rule.capability.matches(resource, action) {
            continue;
        }
        rule.for_each_test(&mut |t| {
            out.entry(t.field().to_string()).or_insert(t.field_type());
        });
    }
    out
}

/// `(capability, field)` pairs for which rule `i` is the only rule of that
/// capability testing the field: removing it changes which events are malformed.
fn sole_tests(policy: &Policy, i: usize) -> Vec<(String, String)> {
    let Some(rule) = policy.rules.get(i) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for (r, a) in capability_grid(&[policy]) {
        if !rule.capability.matches(&r, &a) {
            continue;
        }
        let with = required_fields(policy, &r, &a, None);
        let without = required_fields(policy, &r, &a, Some(i));
        for field in with.keys().filter(|f| !without.contains_key(*f)) {
            let capability = if r == "other" || a == "other" {
                rule.capability.to_string()
            } else {
                format!("{r}.{a}")
            };
            let pair = (capability, field.clone());
            if !out.contains(&pair) {
                out.push(pair);
            }
        }
    }
    out
}

/// A capability whose required fields differ between two policies: events
/// lacking the field (or carrying it ill-typed) are denied as malformed by
/// one policy and decided by the rules of the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// The capability (`payments.transfer`; `other` stands for names neither policy uses).
    pub capability: String,
    /// The field.
    pub field: String,
    /// Its required type under the old policy (`None`: not required).
    pub old: Option<crate::policy::FieldType>,
    /// Its required type under the new policy.
    pub new: Option<crate::policy::FieldType>,
}

/// Every capability and field whose requirement differs between `old` and
/// `new`: the events [`diff`] does not cover, because they are well formed
/// under one policy only.
pub fn diff_fields(old: &Policy, new: &Policy) -> Vec<FieldChange> {
    let mut out = Vec::new();
    for (r, a) in capability_grid(&[old, new]) {
        let (before, after) = (
            required_fields(old, &r, &a, None),
            required_fields(new, &r, &a, None),
        );
        let mut fields: Vec<&String> = before.keys().chain(after.keys()).collect();
        fields.sort();
        fields.dedup();
        for field in fields {
            let (o, n) = (before.get(field).copied(), after.get(field).copied());
            if o != n {
                out.push(FieldChange {
                    capability: format!("{r}.{a}"),
                    field: field.clone(),
                    old: o,
                    new: n,
                });
            }
        }
    }
    out
}

/// Every region where `new` decides differently from `old` (decision kinds;
/// renamed or reordered rules that decide alike are no change). Regions
/// cover well-formed events: those carrying every field either policy tests.
/// [`TooComplex`](region::TooComplex) when a policy is too complex to
/// compare exactly.
pub fn diff(old: &Policy, new: &Policy) -> Result<Vec<Change>, region::TooComplex> {
    let (a, b) = (Analysis::new(old), Analysis::new(new));
    let (map_a, map_b) = (
        decision_map(&a).ok_or(region::TooComplex)?,
        decision_map(&b).ok_or(region::TooComplex)?,
    );
    let mut fields = old.field_types.clone();
    for f in &new.field_types {
        if !fields.iter().any(|(g, _)| g == &f.0) {
            fields.push(f.clone());
        }
    }
    let mut changes = Vec::new();
    for (ra, ka, rule_a) in &map_a {
        for (rb, kb, rule_b) in &map_b {
            if ka == kb {
                continue;
            }
            let overlap = ra.intersect(rb)?;
            for piece in &overlap.boxes {
                changes.push(Change {
                    region: describe_box(piece, true),
                    old: Outcome {
                        decision: *ka,
                        rule: rule_a.clone(),
                    },
                    new: Outcome {
                        decision: *kb,
                        rule: rule_b.clone(),
                    },
                    witness: piece.witness(&fields).map(|e| e.to_json()),
                });
            }
        }
    }
    Ok(changes)
}
