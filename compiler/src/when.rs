//! The `when` expression: a pest grammar (`when.pest`) and its lowering to [`Expr`].
//!
//! Lowering type-checks as it goes: ordering comparisons need a number (or the
//! risk field), the built-in string fields take strings, and lists may not mix
//! numbers and strings. Errors carry a 1-based line and column inside the
//! expression text; the policy loader turns them into file positions.

use pest::Parser as _;
use pest::iterators::Pair;
use rust_decimal::Decimal;

use crate::number::parse_exact;
use crate::policy::{CmpOp, Expr, Field, Risk, RiskSet, Test};

mod grammar {
    #![allow(missing_docs)]
    #[derive(pest_derive::Parser)]
    #[grammar = "when.pest"]
    pub struct WhenParser;
}

use grammar::{Rule, WhenParser};

/// An error in a `when` expression, at a 1-based line and column of the expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WhenError {
    /// Line inside the expression (1-based).
    pub line: usize,
    /// Column inside the expression (1-based).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses and type-checks a `when` expression.
///
/// ```
/// use capfence_compiler::when::parse_when;
///
/// assert!(parse_when(r#"amount > 500 and (destination in ["a", "b"] or risk >= high)"#).is_ok());
/// let err = parse_when("amount >").unwrap_err();
/// assert_eq!(err.column, 9);
/// ```
pub fn parse_when(text: &str) -> Result<Expr, WhenError> {
    let mut pairs = WhenParser::parse(Rule::when, text).map_err(|e| syntax_error(&e))?;
    let root = pairs.next().ok_or_else(|| at(1, 1, "empty expression"))?;
    let or_expr = root
        .into_inner()
        .next()
        .ok_or_else(|| at(1, 1, "empty expression"))?;
    lower(or_expr)
}

fn at(line: usize, column: usize, message: impl Into<String>) -> WhenError {
    WhenError {
        line,
        column,
        message: message.into(),
    }
}

fn error_at(pair: &Pair<'_, Rule>, message: impl Into<String>) -> WhenError {
    let (line, column) = pair.line_col();
    at(line, column, message)
}

fn syntax_error(error: &pest::error::Error<Rule>) -> WhenError {
    let (line, column) = match error.line_col {
        pest::error::LineColLocation::Pos(p) | pest::error::LineColLocation::Span(p, _) => p,
    };
    let message = match &error.variant {
        pest::error::ErrorVariant::ParsingError { positives, .. } => {
            let mut wanted: Vec<&str> = positives.iter().filter_map(|r| describe(*r)).collect();
            wanted.sort_unstable();
            wanted.dedup();
            if wanted.is_empty() {
                "syntax error in `when` expression".to_owned()
            } else {
                format!(
                    "syntax error in `when` expression: expected {}",
                    wanted.join(" or ")
                )
            }
        }
        pest::error::ErrorVariant::CustomError { message } => message.clone(),
    };
    at(line, column, message)
}

fn describe(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::field | Rule::comparison | Rule::unary | Rule::negation => "a condition",
        Rule::cmp_op | Rule::membership | Rule::compare | Rule::not_in | Rule::kw_in => {
            "an operator (== != < <= > >= in, not in)"
        }
        Rule::literal | Rule::string | Rule::number | Rule::word => "a value",
        Rule::list => "a list `[...]`",
        Rule::kw_and | Rule::kw_or => "`and` or `or`",
        Rule::EOI => "end of expression",
        _ => return None,
    })
}

fn lower(pair: Pair<'_, Rule>) -> Result<Expr, WhenError> {
    match pair.as_rule() {
        Rule::or_expr | Rule::and_expr => {
            let is_or = pair.as_rule() == Rule::or_expr;
            let mut items = Vec::new();
            for inner in pair.into_inner() {
                if matches!(inner.as_rule(), Rule::kw_and | Rule::kw_or) {
                    continue;
                }
                items.push(lower(inner)?);
            }
            Ok(match (items.len(), is_or) {
                (1, _) => items.pop().unwrap_or(Expr::And(Vec::new())),
                (_, true) => Expr::Or(items),
                (_, false) => Expr::And(items),
            })
        }
        Rule::unary => {
            let inner = pair
                .into_inner()
                .next()
                .ok_or_else(|| at(1, 1, "empty condition"))?;
            lower(inner)
        }
        Rule::negation => {
            let operand = pair
                .into_inner()
                .find(|p| p.as_rule() == Rule::unary)
                .ok_or_else(|| at(1, 1, "`not` needs an operand"))?;
            Ok(Expr::Not(Box::new(lower(operand)?)))
        }
        Rule::comparison => lower_comparison(pair),
        _ => Err(error_at(&pair, "unexpected token in `when` expression")),
    }
}

/// A literal as written: a number, a quoted string, or a bare word.
enum Literal {
    Number(Decimal),
    String(String),
    Word(String),
}

fn literal(pair: Pair<'_, Rule>) -> Result<Literal, WhenError> {
    let inner = pair
        .into_inner()
        .next()
        .ok_or_else(|| at(1, 1, "empty value"))?;
    match inner.as_rule() {
        Rule::number if has_leading_zero(inner.as_str()) => Err(error_at(
            &inner,
            format!(
                "`{}` has a leading zero: an identifier such as an account number is a \
                 string (quote it: \"{}\"), and as a number it would also equal `{}`",
                inner.as_str(),
                inner.as_str(),
                inner
                    .as_str()
                    .trim_start_matches(['+', '-'])
                    .trim_start_matches('0')
            ),
        )),
        Rule::number => parse_exact(inner.as_str())
            .map(Literal::Number)
            .ok_or_else(|| {
                error_at(
                    &inner,
                    format!("`{}` cannot be held exactly as a decimal", inner.as_str()),
                )
            }),
        Rule::string => {
            let body = inner
                .into_inner()
                .next()
                .map(|p| p.as_str())
                .unwrap_or_default();
            Ok(Literal::String(unescape(body)))
        }
        _ => Ok(Literal::Word(inner.as_str().to_owned())),
    }
}

/// `007`, `-0123.5`: a number written with a zero before another digit.
/// Numbers like these are identifiers in disguise; `0`, `0.5` and `-0.5` are fine.
fn has_leading_zero(text: &str) -> bool {
    let digits = text.trim_start_matches(['+', '-']).as_bytes();
    matches!(digits, [b'0', d, ..] if d.is_ascii_digit())
}

fn unescape(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn lower_comparison(pair: Pair<'_, Rule>) -> Result<Expr, WhenError> {
    let mut parts = pair.into_inner();
    let field_pair = parts.next().ok_or_else(|| at(1, 1, "missing field"))?;
    let field = Field::from_name(field_pair.as_str());
    let rest = parts
        .next()
        .ok_or_else(|| error_at(&field_pair, "missing operator"))?;
    match rest.as_rule() {
        Rule::compare => {
            let mut inner = rest.into_inner();
            let op_pair = inner.next().ok_or_else(|| at(1, 1, "missing operator"))?;
            let op = match op_pair.as_str() {
                "==" => CmpOp::Eq,
                "!=" => CmpOp::Ne,
                "<" => CmpOp::Lt,
                "<=" => CmpOp::Le,
                ">" => CmpOp::Gt,
                _ => CmpOp::Ge,
            };
            let value_pair = inner
                .next()
                .ok_or_else(|| error_at(&op_pair, "missing value"))?;
            let value = literal(value_pair.clone())?;
            compare(&field, op, value, &value_pair)
        }
        Rule::membership => {
            let mut inner = rest.into_inner();
            let op = inner.next().ok_or_else(|| at(1, 1, "missing operator"))?;
            let negated = op.as_rule() == Rule::not_in;
            let list = inner.next().ok_or_else(|| error_at(&op, "missing list"))?;
            let mut values = Vec::new();
            for item in list.into_inner() {
                values.push((literal(item.clone())?, item));
            }
            membership(&field, negated, values, &field_pair)
        }
        _ => Err(error_at(&rest, "expected an operator")),
    }
}

/// Builds the test for `field op value`.
fn compare(
    field: &Field,
    op: CmpOp,
    value: Literal,
    at_pair: &Pair<'_, Rule>,
) -> Result<Expr, WhenError> {
    match field {
        Field::Risk => {
            let level = risk_level(&value, at_pair)?;
            Ok(Expr::Test(Test::Risk {
                levels: RiskSet::compare(op, level),
            }))
        }
        Field::Payload(_) => match value {
            Literal::Number(n) => Ok(Expr::Test(Test::Number {
                field: field.clone(),
                op,
                value: n,
            })),
            Literal::String(s) | Literal::Word(s) => string_test(field, op, s, at_pair),
        },
        _ => match value {
            Literal::Number(_) => Err(error_at(
                at_pair,
                format!("`{field}` is a string field; quote the value"),
            )),
            Literal::String(s) | Literal::Word(s) => string_test(field, op, s, at_pair),
        },
    }
}

fn string_test(
    field: &Field,
    op: CmpOp,
    value: String,
    at_pair: &Pair<'_, Rule>,
) -> Result<Expr, WhenError> {
    let negated = match op {
        CmpOp::Eq => false,
        CmpOp::Ne => true,
        _ => {
            return Err(error_at(
                at_pair,
                format!(
                    "`{}` compares strings; only == != in and not in apply to `{field}`",
                    op.symbol()
                ),
            ));
        }
    };
    Ok(Expr::Test(string_set(field, vec![value], negated)))
}

/// A string-set test with values folded for case-insensitive fields, sorted, distinct.
pub(crate) fn string_set(field: &Field, mut values: Vec<String>, negated: bool) -> Test {
    if field.is_case_insensitive() {
        values.iter_mut().for_each(|v| v.make_ascii_lowercase());
    }
    values.sort();
    values.dedup();
    Test::Strings {
        field: field.clone(),
        values,
        negated,
        unicode: false,
    }
}

fn risk_level(value: &Literal, at_pair: &Pair<'_, Rule>) -> Result<Risk, WhenError> {
    match value {
        Literal::String(s) | Literal::Word(s) => Risk::parse(s).ok_or_else(|| {
            error_at(
                at_pair,
                format!("unknown risk level `{s}` (low, medium, high, critical)"),
            )
        }),
        Literal::Number(_) => Err(error_at(
            at_pair,
            "risk is a level (low, medium, high, critical), not a number",
        )),
    }
}

fn membership(
    field: &Field,
    negated: bool,
    values: Vec<(Literal, Pair<'_, Rule>)>,
    at_pair: &Pair<'_, Rule>,
) -> Result<Expr, WhenError> {
    if values.is_empty() {
        return Err(error_at(
            at_pair,
            "an empty list matches nothing; remove the condition",
        ));
    }
    if *field == Field::Risk {
        let mut set = RiskSet::default();
        for (value, pair) in &values {
            set = set.with(risk_level(value, pair)?);
        }
        let levels = if negated { set.complement() } else { set };
        return Ok(Expr::Test(Test::Risk { levels }));
    }
    let numeric = values
        .iter()
        .filter(|(v, _)| matches!(v, Literal::Number(_)))
        .count();
    if numeric == values.len() && matches!(field, Field::Payload(_)) {
        let op = if negated { CmpOp::Ne } else { CmpOp::Eq };
        let tests = values
            .into_iter()
            .filter_map(|(v, _)| match v {
                Literal::Number(n) => Some(Expr::Test(Test::Number {
                    field: field.clone(),
                    op,
                    value: n,
                })),
                _ => None,
            })
            .collect();
        return Ok(if negated {
            Expr::And(tests)
        } else {
            Expr::Or(tests)
        });
    }
    let mut strings = Vec::with_capacity(values.len());
    for (value, pair) in values {
        match value {
            Literal::String(s) | Literal::Word(s) => strings.push(s),
            Literal::Number(_) => {
                return Err(error_at(
                    &pair,
                    format!(
                        "list mixes numbers and strings; `{field}` needs one kind (quote the number)"
                    ),
                ));
            }
        }
    }
    Ok(Expr::Test(string_set(field, strings, negated)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::unreachable, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_binds_tighter_than_or() {
        let expr = parse_when("a > 1 or b > 2 and c > 3").unwrap();
        let Expr::Or(items) = expr else {
            unreachable!()
        };
        assert_eq!(items.len(), 2);
        assert!(matches!(items[1], Expr::And(_)));
    }

    #[test]
    fn not_in_and_negation() {
        let expr = parse_when(r#"not (destination not in ["x", "y"])"#).unwrap();
        let Expr::Not(inner) = expr else {
            unreachable!()
        };
        assert!(matches!(
            *inner,
            Expr::Test(Test::Strings { negated: true, .. })
        ));
    }

    #[test]
    fn risk_comparisons_become_sets() {
        let expr = parse_when("risk >= high").unwrap();
        assert_eq!(
            expr,
            Expr::Test(Test::Risk {
                levels: RiskSet::from_bits(0b1100)
            })
        );
        let expr = parse_when("risk not in [low]").unwrap();
        assert_eq!(
            expr,
            Expr::Test(Test::Risk {
                levels: RiskSet::from_bits(0b1110)
            })
        );
    }

    #[test]
    fn case_insensitive_fields_fold_literals() {
        let expr = parse_when(r#"environment == "Staging""#).unwrap();
        let Expr::Test(Test::Strings { values, .. }) = expr else {
            unreachable!()
        };
        assert_eq!(values, ["staging"]);
    }

    #[test]
    fn errors_point_into_the_expression() {
        let err = parse_when("amount > 500 and").unwrap_err();
        assert_eq!((err.line, err.column), (1, 17));
        let err = parse_when(r#"destination > "x""#).unwrap_err();
        assert_eq!(err.column, 15);
        let err = parse_when("risk >= extreme").unwrap_err();
        assert!(err.message.contains("unknown risk level"));
        let err = parse_when(r#"environment == 5"#).unwrap_err();
        assert!(err.message.contains("string field"));
        let err = parse_when("and > 5").unwrap_err();
        assert_eq!(err.column, 1);
    }

    #[test]
    fn numbers_with_leading_zeros_are_refused() {
        let err = parse_when("not (destination in [00123456, 00777001])").unwrap_err();
        assert!(err.message.contains("leading zero"), "{}", err.message);
        assert_eq!(err.column, 22);
        assert!(parse_when("amount in [0, 0.5, -0.25, 10]").is_ok());
        assert!(parse_when("amount == -007").is_err());
        // Quoted, the same ids are exact strings.
        let expr = parse_when(r#"destination in ["00123456"]"#).unwrap();
        let Expr::Test(Test::Strings { values, .. }) = expr else {
            unreachable!()
        };
        assert_eq!(values, ["00123456"]);
    }

    #[test]
    fn payload_prefix_is_the_same_field() {
        assert_eq!(
            parse_when("payload.amount > 1").unwrap(),
            parse_when("amount > 1").unwrap()
        );
    }
}
