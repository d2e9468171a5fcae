//! Regions: exact sets of events, as unions of boxes.
//!
//! A [`Box`] constrains each dimension of an event independently: resource and
//! action (finite or co-finite name sets), risk (a set of levels), each numeric
//! field (one interval of exact decimals with open or closed ends) and each
//! string field (a finite or co-finite set). A [`Region`] is a union of boxes.
//! Intersection, subtraction and emptiness are exact; every non-empty box has
//! a concrete witness event.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;

use crate::event::{Event, Value};
use crate::policy::{CapabilityPattern, CmpOp, Expr, Field, Risk, RiskSet, Rule, Test};

/// A set of strings: finite, or the complement of a finite set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StrSet {
    /// `true`: every string except `values`.
    pub cofinite: bool,
    /// The listed strings.
    pub values: BTreeSet<String>,
}

impl StrSet {
    /// Every string.
    pub fn all() -> StrSet {
        StrSet {
            cofinite: true,
            values: BTreeSet::new(),
        }
    }

    /// Exactly these strings.
    pub fn of(values: impl IntoIterator<Item = String>) -> StrSet {
        StrSet {
            cofinite: false,
            values: values.into_iter().collect(),
        }
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        !self.cofinite && self.values.is_empty()
    }

    /// Whether it holds everything.
    pub fn is_all(&self) -> bool {
        self.cofinite && self.values.is_empty()
    }

    /// Whether `s` is in it.
    pub fn contains(&self, s: &str) -> bool {
        self.values.contains(s) != self.cofinite
    }

    /// The complement.
    pub fn complement(&self) -> StrSet {
        StrSet {
            cofinite: !self.cofinite,
            values: self.values.clone(),
        }
    }

    /// The intersection.
    pub fn intersect(&self, other: &StrSet) -> StrSet {
        match (self.cofinite, other.cofinite) {
            (false, false) => StrSet::of(self.values.intersection(&other.values).cloned()),
            (false, true) => StrSet::of(self.values.difference(&other.values).cloned()),
            (true, false) => StrSet::of(other.values.difference(&self.values).cloned()),
            (true, true) => StrSet {
                cofinite: true,
                values: self.values.union(&other.values).cloned().collect(),
            },
        }
    }

    /// One member, if any: the first listed one, or a name outside the list.
    pub fn witness(&self) -> Option<String> {
        if !self.cofinite {
            return self.values.iter().next().cloned();
        }
        (0..)
            .map(|i| {
                if i == 0 {
                    "other".to_owned()
                } else {
                    format!("other-{i}")
                }
            })
            .find(|c| !self.values.contains(c))
    }
}

/// One end of an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum End {
    /// No bound.
    Open,
    /// The bound belongs to the interval.
    Incl(Decimal),
    /// The bound does not.
    Excl(Decimal),
}

/// An interval of exact decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interval {
    /// Lower end.
    pub lo: End,
    /// Upper end.
    pub hi: End,
}

impl Interval {
    /// Every number.
    pub const ALL: Interval = Interval {
        lo: End::Open,
        hi: End::Open,
    };

    /// The numbers `x` with `x op value`; `!=` is not an interval (`None`).
    pub fn compare(op: CmpOp, value: Decimal) -> Option<Interval> {
        Some(match op {
            CmpOp::Eq => Interval {
                lo: End::Incl(value),
                hi: End::Incl(value),
            },
            CmpOp::Lt => Interval {
                lo: End::Open,
                hi: End::Excl(value),
            },
            CmpOp::Le => Interval {
                lo: End::Open,
                hi: End::Incl(value),
            },
            CmpOp::Gt => Interval {
                lo: End::Excl(value),
                hi: End::Open,
            },
            CmpOp::Ge => Interval {
                lo: End::Incl(value),
                hi: End::Open,
            },
            CmpOp::Ne => return None,
        })
    }

    /// Whether it holds no number.
    pub fn is_empty(&self) -> bool {
        match (self.lo, self.hi) {
            (End::Incl(a), End::Incl(b)) => a > b,
            (End::Incl(a) | End::Excl(a), End::Excl(b)) | (End::Excl(a), End::Incl(b)) => a >= b,
            _ => false,
        }
    }

    /// Whether `x` is in it.
    pub fn contains(&self, x: Decimal) -> bool {
        let lo = match self.lo {
            End::Open => true,
            End::Incl(a) => x >= a,
            End::Excl(a) => x > a,
        };
        let hi = match self.hi {
            End::Open => true,
            End::Incl(b) => x <= b,
            End::Excl(b) => x < b,
        };
        lo && hi
    }

    /// The intersection.
    pub fn intersect(&self, other: &Interval) -> Interval {
        let lo = match (self.lo, other.lo) {
            (End::Open, e) | (e, End::Open) => e,
            (a, b) => {
                let (va, vb) = (end_value(a), end_value(b));
                if va > vb || (va == vb && matches!(a, End::Excl(_))) {
                    a
                } else {
                    b
                }
            }
        };
        let hi = match (self.hi, other.hi) {
            (End::Open, e) | (e, End::Open) => e,
            (a, b) => {
                let (va, vb) = (end_value(a), end_value(b));
                if va < vb || (va == vb && matches!(a, End::Excl(_))) {
                    a
                } else {
                    b
                }
            }
        };
        Interval { lo, hi }
    }

    /// The parts of `self` outside `other` (zero, one or two intervals).
    pub fn minus(&self, other: &Interval) -> Vec<Interval> {
        let mut out = Vec::new();
        let below = match other.lo {
            End::Open => None,
            End::Incl(v) => Some(Interval {
                lo: End::Open,
                hi: End::Excl(v),
            }),
            End::Excl(v) => Some(Interval {
                lo: End::Open,
                hi: End::Incl(v),
            }),
        };
        let above = match other.hi {
            End::Open => None,
            End::Incl(v) => Some(Interval {
                lo: End::Excl(v),
                hi: End::Open,
            }),
            End::Excl(v) => Some(Interval {
                lo: End::Incl(v),
                hi: End::Open,
            }),
        };
        for part in [below, above].into_iter().flatten() {
            let piece = self.intersect(&part);
            if !piece.is_empty() {
                out.push(piece);
            }
        }
        out
    }

    /// A member, if any.
    pub fn witness(&self) -> Option<Decimal> {
        if self.is_empty() {
            return None;
        }
        let candidates: Vec<Decimal> = match (self.lo, self.hi) {
            (End::Incl(a), _) => vec![a],
            (_, End::Incl(b)) => vec![b],
            (End::Open, End::Open) => vec![Decimal::ZERO],
            (End::Excl(a), End::Open) => vec![a.checked_add(Decimal::ONE).unwrap_or(a)],
            (End::Open, End::Excl(b)) => vec![b.checked_sub(Decimal::ONE).unwrap_or(b)],
            (End::Excl(a), End::Excl(b)) => {
                let mut c = Vec::new();
                if let Some(mid) = a.checked_add(b).and_then(|s| s.checked_div(Decimal::TWO)) {
                    c.push(mid);
                }
                c.extend((0..=28).filter_map(|k| a.checked_add(Decimal::new(1, k))));
                c
            }
        };
        candidates.into_iter().find(|c| self.contains(*c))
    }
}

fn end_value(end: End) -> Decimal {
    match end {
        End::Incl(v) | End::Excl(v) => v,
        End::Open => Decimal::ZERO,
    }
}

/// A box: independent constraints per dimension. A field not listed is unconstrained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Box {
    /// Resource names.
    pub resource: StrSet,
    /// Action names.
    pub action: StrSet,
    /// Risk levels.
    pub risk: RiskSet,
    /// Numeric fields.
    pub numbers: BTreeMap<Field, Interval>,
    /// String fields (actor, environment, payload strings).
    pub strings: BTreeMap<Field, StrSet>,
}

impl Box {
    /// Every event.
    pub fn all() -> Box {
        Box {
            resource: StrSet::all(),
            action: StrSet::all(),
            risk: RiskSet::ALL,
            numbers: BTreeMap::new(),
            strings: BTreeMap::new(),
        }
    }

    /// The events a capability pattern covers.
    pub fn capability(pattern: &CapabilityPattern) -> Box {
        let mut b = Box::all();
        if let CapabilityPattern::Segments { resource, action } = pattern {
            if let Some(r) = resource {
                b.resource = StrSet::of([r.clone()]);
            }
            if let Some(a) = action {
                b.action = StrSet::of([a.clone()]);
            }
        }
        b
    }

    /// Whether it holds no event.
    pub fn is_empty(&self) -> bool {
        self.resource.is_empty()
            || self.action.is_empty()
            || self.risk.is_empty()
            || self.numbers.values().any(Interval::is_empty)
            || self.strings.values().any(StrSet::is_empty)
    }

    /// The intersection.
    pub fn intersect(&self, other: &Box) -> Box {
        let mut out = Box {
            resource: self.resource.intersect(&other.resource),
            action: self.action.intersect(&other.action),
            risk: self.risk.intersect(other.risk),
            numbers: self.numbers.clone(),
            strings: self.strings.clone(),
        };
        for (f, i) in &other.numbers {
            let merged = out.numbers.get(f).map_or(*i, |mine| mine.intersect(i));
            out.numbers.insert(f.clone(), merged);
        }
        for (f, s) in &other.strings {
            let merged = out
                .strings
                .get(f)
                .map_or_else(|| s.clone(), |mine| mine.intersect(s));
            out.strings.insert(f.clone(), merged);
        }
        out
    }

    /// `self` minus `other`, as disjoint boxes.
    pub fn minus(&self, other: &Box) -> Vec<Box> {
        if self.intersect(other).is_empty() {
            return vec![self.clone()];
        }
        let mut out = Vec::new();
        let mut rest = self.clone();
        // Resource, action, risk.
        let outside = rest.resource.intersect(&other.resource.complement());
        if !outside.is_empty() {
            out.push(Box {
                resource: outside,
                ..rest.clone()
            });
        }
        rest.resource = rest.resource.intersect(&other.resource);
        let outside = rest.action.intersect(&other.action.complement());
        if !outside.is_empty() {
            out.push(Box {
                action: outside,
                ..rest.clone()
            });
        }
        rest.action = rest.action.intersect(&other.action);
        let outside = rest.risk.intersect(other.risk.complement());
        if !outside.is_empty() {
            out.push(Box {
                risk: outside,
                ..rest.clone()
            });
        }
        rest.risk = rest.risk.intersect(other.risk);
        for (f, theirs) in &other.numbers {
            let mine = rest.numbers.get(f).copied().unwrap_or(Interval::ALL);
            for piece in mine.minus(theirs) {
                let mut b = rest.clone();
                b.numbers.insert(f.clone(), piece);
                out.push(b);
            }
            rest.numbers.insert(f.clone(), mine.intersect(theirs));
        }
        for (f, theirs) in &other.strings {
            let mine = rest.strings.get(f).cloned().unwrap_or_else(StrSet::all);
            let outside = mine.intersect(&theirs.complement());
            if !outside.is_empty() {
                let mut b = rest.clone();
                b.strings.insert(f.clone(), outside);
                out.push(b);
            }
            rest.strings.insert(f.clone(), mine.intersect(theirs));
        }
        out
    }

    /// A concrete event in the box, with every field in `fields` present.
    pub fn witness(&self, fields: &[(Field, crate::policy::FieldType)]) -> Option<Event> {
        let mut event = Event {
            resource: Some(self.resource.witness()?),
            action: Some(self.action.witness()?),
            ..Event::default()
        };
        event.risk = Some(self.risk.levels().next()?.into());
        for (field, ty) in fields {
            let value = match ty {
                crate::policy::FieldType::Number => Value::Number(
                    self.numbers
                        .get(field)
                        .copied()
                        .unwrap_or(Interval::ALL)
                        .witness()?,
                ),
                crate::policy::FieldType::Token | crate::policy::FieldType::Text => Value::String(
                    self.strings
                        .get(field)
                        .cloned()
                        .unwrap_or_else(StrSet::all)
                        .witness()?,
                ),
                crate::policy::FieldType::Risk => continue,
            };
            set_field(&mut event, field, value);
        }
        for name in ["actor", "environment"] {
            let field = Field::from_name(name);
            if !fields.iter().any(|(f, _)| *f == field) {
                let value = self
                    .strings
                    .get(&field)
                    .cloned()
                    .unwrap_or_else(StrSet::all)
                    .witness()?;
                set_field(&mut event, &field, Value::String(value));
            }
        }
        Some(event)
    }
}

fn set_field(event: &mut Event, field: &Field, value: Value) {
    let text = match &value {
        Value::String(s) => Some(s.clone()),
        _ => None,
    };
    match field {
        Field::Actor => event.actor = text,
        Field::Environment => event.environment = text,
        Field::Payload(name) => {
            event.payload.insert(name.clone(), value);
        }
        _ => {}
    }
}

/// A union of boxes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Region {
    /// The boxes, non-empty ones only.
    pub boxes: Vec<Box>,
}

/// Regions larger than this many boxes are not analysed further.
pub const MAX_BOXES: usize = 4096;

/// A region too complex to analyse exactly within [`MAX_BOXES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too complex to analyse exactly (a region of more than {MAX_BOXES} boxes)")]
pub struct TooComplex;

impl Region {
    /// The empty region.
    pub fn empty() -> Region {
        Region::default()
    }

    /// A region of one box (empty if the box is).
    pub fn of(b: Box) -> Region {
        if b.is_empty() {
            Region::empty()
        } else {
            Region { boxes: vec![b] }
        }
    }

    /// Whether it holds no event.
    pub fn is_empty(&self) -> bool {
        self.boxes.is_empty()
    }

    /// The intersection.
    pub fn intersect(&self, other: &Region) -> Result<Region, TooComplex> {
        let mut boxes = Vec::new();
        for a in &self.boxes {
            for b in &other.boxes {
                let c = a.intersect(b);
                if !c.is_empty() {
                    boxes.push(c);
                    if boxes.len() > MAX_BOXES {
                        return Err(TooComplex);
                    }
                }
            }
        }
        Ok(Region { boxes })
    }

    /// `self` minus `other`.
    pub fn minus(&self, other: &Region) -> Result<Region, TooComplex> {
        let mut current = self.boxes.clone();
        for b in &other.boxes {
            let mut next = Vec::new();
            for a in &current {
                next.extend(a.minus(b).into_iter().filter(|x| !x.is_empty()));
                if next.len() > MAX_BOXES {
                    return Err(TooComplex);
                }
            }
            current = next;
            if current.is_empty() {
                break;
            }
        }
        Ok(Region { boxes: current })
    }

    /// The union.
    pub fn union(&self, other: &Region) -> Region {
        let mut boxes = self.boxes.clone();
        boxes.extend(other.boxes.iter().cloned());
        Region { boxes }
    }

    /// The events a rule matches (among well-formed events).
    pub fn of_rule(rule: &Rule) -> Result<Region, TooComplex> {
        let mut region = Region::of(Box::capability(&rule.capability));
        for condition in &rule.conditions {
            region = region.intersect(&Region::of_expr(&condition.expr, false)?)?;
        }
        Ok(region)
    }

    /// The events where `expr` holds (or fails, when `negate`).
    pub fn of_expr(expr: &Expr, negate: bool) -> Result<Region, TooComplex> {
        match (expr, negate) {
            (Expr::Not(inner), n) => Region::of_expr(inner, !n),
            (Expr::And(items), false) | (Expr::Or(items), true) => {
                let mut region = Region::of(Box::all());
                for item in items {
                    region = region.intersect(&Region::of_expr(item, negate)?)?;
                }
                Ok(region)
            }
            (Expr::Or(items), false) | (Expr::And(items), true) => {
                let mut region = Region::empty();
                for item in items {
                    region = region.union(&Region::of_expr(item, negate)?);
                    if region.boxes.len() > MAX_BOXES {
                        return Err(TooComplex);
                    }
                }
                Ok(region)
            }
            (Expr::Test(test), n) => Ok(Region::of_test(test, n)),
        }
    }

    fn of_test(test: &Test, negate: bool) -> Region {
        match test {
            Test::Number { field, op, value } => {
                let op = if negate { negate_op(*op) } else { *op };
                let intervals = match Interval::compare(op, *value) {
                    Some(i) => vec![i],
                    None => vec![
                        Interval {
                            lo: End::Open,
                            hi: End::Excl(*value),
                        },
                        Interval {
                            lo: End::Excl(*value),
                            hi: End::Open,
                        },
                    ],
                };
                let boxes = intervals
                    .into_iter()
                    .map(|i| {
                        let mut b = Box::all();
                        b.numbers.insert(field.clone(), i);
                        b
                    })
                    .collect();
                Region { boxes }
            }
            Test::Strings {
                field,
                values,
                negated,
                ..
            } => {
                let set = StrSet::of(values.iter().cloned());
                let set = if *negated != negate {
                    set.complement()
                } else {
                    set
                };
                match field {
                    Field::Resource => Region::of(Box {
                        resource: set,
                        ..Box::all()
                    }),
                    Field::Action => Region::of(Box {
                        action: set,
                        ..Box::all()
                    }),
                    Field::Capability => {
                        // `capability` is `resource.action`: a union of name pairs.
                        let pairs: Vec<(String, String)> = values
                            .iter()
                            .filter_map(|v| {
                                v.split_once('.').map(|(r, a)| (r.to_owned(), a.to_owned()))
                            })
                            .collect();
                        let positive = Region {
                            boxes: pairs
                                .iter()
                                .map(|(r, a)| Box {
                                    resource: StrSet::of([r.clone()]),
                                    action: StrSet::of([a.clone()]),
                                    ..Box::all()
                                })
                                .collect(),
                        };
                        if *negated != negate {
                            Region::of(Box::all()).minus(&positive).unwrap_or_default()
                        } else {
                            positive
                        }
                    }
                    _ => {
                        let mut b = Box::all();
                        b.strings.insert(field.clone(), set);
                        Region::of(b)
                    }
                }
            }
            Test::Risk { levels } => {
                let set = if negate { levels.complement() } else { *levels };
                Region::of(Box {
                    risk: set,
                    ..Box::all()
                })
            }
        }
    }
}

fn negate_op(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Eq => CmpOp::Ne,
        CmpOp::Ne => CmpOp::Eq,
        CmpOp::Lt => CmpOp::Ge,
        CmpOp::Le => CmpOp::Gt,
        CmpOp::Gt => CmpOp::Le,
        CmpOp::Ge => CmpOp::Lt,
    }
}

/// The region in words: `environment = staging, 50 < amount <= 500`.
pub fn describe_box(b: &Box, with_capability: bool) -> String {
    let mut parts = Vec::new();
    if with_capability {
        let seg = |s: &StrSet| -> String {
            if s.is_all() {
                "*".to_owned()
            } else if !s.cofinite && s.values.len() == 1 {
                s.values.iter().next().cloned().unwrap_or_default()
            } else if s.cofinite {
                format!(
                    "(not {})",
                    s.values.iter().cloned().collect::<Vec<_>>().join("|")
                )
            } else {
                format!(
                    "({})",
                    s.values.iter().cloned().collect::<Vec<_>>().join("|")
                )
            }
        };
        parts.push(format!("{}.{}", seg(&b.resource), seg(&b.action)));
    }
    if b.risk != RiskSet::ALL {
        let levels: Vec<Risk> = b.risk.levels().collect();
        let text = match (levels.first(), levels.last(), levels.len()) {
            (Some(l), _, 1) => format!("risk = {l}"),
            (Some(first), Some(last), n) if (*last as usize) - (*first as usize) + 1 == n => {
                if *last == Risk::Critical {
                    format!("risk >= {first}")
                } else if *first == Risk::Low {
                    format!("risk <= {last}")
                } else {
                    format!("{first} <= risk <= {last}")
                }
            }
            _ => format!(
                "risk in [{}]",
                levels
                    .iter()
                    .map(|r| r.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        parts.push(text);
    }
    for (field, set) in &b.strings {
        if set.is_all() {
            continue;
        }
        let list = || set.values.iter().cloned().collect::<Vec<_>>().join(", ");
        parts.push(match (set.cofinite, set.values.len()) {
            (false, 1) => format!("{field} = {}", list()),
            (false, _) => format!("{field} in [{}]", list()),
            (true, 1) => format!("{field} != {}", list()),
            (true, _) => format!("{field} not in [{}]", list()),
        });
    }
    for (field, i) in &b.numbers {
        let text = match (i.lo, i.hi) {
            (End::Open, End::Open) => continue,
            (End::Incl(a), End::Incl(b)) if a == b => format!("{field} = {a}"),
            (End::Open, End::Incl(b)) => format!("{field} <= {b}"),
            (End::Open, End::Excl(b)) => format!("{field} < {b}"),
            (End::Incl(a), End::Open) => format!("{field} >= {a}"),
            (End::Excl(a), End::Open) => format!("{field} > {a}"),
            (lo, hi) => {
                let left = match lo {
                    End::Incl(a) => format!("{a} <= "),
                    End::Excl(a) => format!("{a} < "),
                    End::Open => String::new(),
                };
                let right = match hi {
                    End::Incl(b) => format!(" <= {b}"),
                    End::Excl(b) => format!(" < {b}"),
                    End::Open => String::new(),
                };
                format!("{left}{field}{right}")
            }
        };
        parts.push(text);
    }
    if parts.is_empty() {
        "every event".to_owned()
    } else {
        parts.join(", ")
    }
}
