//! Candidate values for one column of a table being seeded, in the order they are tried.
//!
//! Each candidate is a rule from a row's index to a value, so that rows differ wherever they
//! can: a UNIQUE constraint, a composite one or a unique expression index is then met without
//! knowing what it covers. CHECK constraints are met by trying the literals their expressions
//! name (and those literals ±1, and strings of the lengths they name).

use rusqlite::types::Value;

/// A column's type affinity (SQLite's "determination of column affinity"); STRICT types map
/// onto the same five.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

/// The affinity of a declared type, by SQLite's rules in their order.
pub(super) fn affinity(declared_type: &str) -> Affinity {
    let upper = declared_type.to_ascii_uppercase();
    if upper.contains("INT") {
        Affinity::Integer
    } else if ["CHAR", "CLOB", "TEXT"].iter().any(|t| upper.contains(t)) {
        Affinity::Text
    } else if upper.contains("BLOB") || upper.trim().is_empty() {
        Affinity::Blob
    } else if ["REAL", "FLOA", "DOUB"].iter().any(|t| upper.contains(t)) {
        Affinity::Real
    } else {
        Affinity::Numeric
    }
}

/// Literals a CHECK expression names, as candidates for the columns it mentions.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Literals {
    /// Numbers (a unary minus kept), as integers where they are whole.
    pub(super) numbers: Vec<Value>,
    /// String literals, unquoted.
    pub(super) strings: Vec<String>,
    /// Whole numbers of a check that calls `length(…)`: lengths to try for text.
    pub(super) lengths: Vec<i64>,
}

impl Literals {
    /// Reads the literals of a CHECK expression given as [`crate::core::schema::words`] tokens.
    pub(super) fn of_expression(tokens: &[String]) -> Self {
        let mut literals = Self::default();
        let about_length = tokens.iter().any(|t| t == "length" || t == "octet_length");
        for (index, token) in tokens.iter().enumerate() {
            if let Some(inner) = token.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
                push_new(&mut literals.strings, inner.replace("''", "'"));
                continue;
            }
            let Some(number) = number(token) else {
                continue;
            };
            // A minus after an operator or `(` is a sign, not a subtraction.
            let negative = index >= 1
                && tokens[index - 1] == "-"
                && (index == 1 || !is_operand_end(&tokens[index - 2]));
            let number = if negative { negate(&number) } else { number };
            if about_length && let Value::Integer(length) = number {
                push_new(&mut literals.lengths, length);
            }
            push_new(&mut literals.numbers, number);
        }
        literals
    }

    /// Adds `other`'s literals that are not here yet.
    pub(super) fn merge(&mut self, other: &Literals) {
        for number in &other.numbers {
            push_new(&mut self.numbers, number.clone());
        }
        for string in &other.strings {
            push_new(&mut self.strings, string.clone());
        }
        for length in &other.lengths {
            push_new(&mut self.lengths, *length);
        }
    }
}

fn push_new<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// A numeric literal token (`6`, `1.5`, `1e3`, `0x1F`).
fn number(token: &str) -> Option<Value> {
    if !token.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if let Some(hex) = token.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(Value::Integer);
    }
    if let Ok(integer) = token.parse::<i64>() {
        return Some(Value::Integer(integer));
    }
    token.parse::<f64>().ok().map(Value::Real)
}

fn negate(number: &Value) -> Value {
    match number {
        Value::Integer(n) => Value::Integer(n.saturating_neg()),
        Value::Real(n) => Value::Real(-n),
        other => other.clone(),
    }
}

/// Whether a token can end an operand, making a following `-` a subtraction.
fn is_operand_end(token: &str) -> bool {
    token == ")"
        || token.starts_with('\'')
        || (token
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '"')
            && !matches!(
                token,
                "and" | "or" | "not" | "in" | "is" | "between" | "like" | "glob" | "when"
            ))
}

/// A rule from a row's index to a value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Candidate {
    /// `start + step × row`.
    Integer {
        start: i64,
        step: i64,
    },
    /// `start + step × row`.
    Real {
        start: f64,
        step: f64,
    },
    /// `{prefix}{row + 1}`.
    Tagged(String),
    /// `{"seed":N}`, for `json_valid(…)` checks.
    JsonObject,
    /// `[N]`.
    JsonArray,
    /// An ISO-8601 date and time, for `date(…)`/`datetime(…)` checks.
    Timestamp,
    /// Text of exactly this many characters, distinct per row while the length allows.
    Length(usize),
    /// The literal at `(row + offset) % len`: every literal gets tried, and rows differ.
    Literal {
        values: Vec<Value>,
        offset: usize,
    },
    /// A LIKE/GLOB pattern with its wildcards filled in.
    Pattern(String),
    /// Bytes that differ per row.
    Blob,
    /// Leave the column out of the INSERT: its default applies.
    Default,
    Null,
}

/// Candidates per column at most: enough for IN lists and ranges, few enough to stay fast.
const MOST_CANDIDATES: usize = 40;

/// The longest text a length candidate makes.
const LONGEST_TEXT: usize = 4096;

/// How a column looks to the candidate generator.
#[derive(Debug, Clone)]
pub(super) struct ColumnKind<'a> {
    pub(super) name: &'a str,
    pub(super) declared_type: &'a str,
    pub(super) nullable: bool,
    pub(super) has_default: bool,
    /// A column of an FTS table (untyped, but wants text).
    pub(super) full_text: bool,
}

/// Every candidate for a column, in the order they are tried: one that suits its type, those
/// its CHECK literals suggest, other shapes of value, its default, NULL.
pub(super) fn candidates(column: &ColumnKind<'_>, literals: &Literals) -> Vec<Candidate> {
    let affinity = affinity(column.declared_type);
    let untyped = column.declared_type.trim().is_empty();
    let tagged = Candidate::Tagged(format!("{}-", column.name.to_lowercase()));
    let counting = Candidate::Integer { start: 1, step: 1 };
    let mut list = vec![match affinity {
        Affinity::Text => tagged.clone(),
        Affinity::Blob if untyped && column.full_text => tagged.clone(),
        Affinity::Blob if !untyped => Candidate::Blob,
        Affinity::Real => Candidate::Real {
            start: 1.5,
            step: 1.0,
        },
        Affinity::Integer | Affinity::Numeric | Affinity::Blob => counting.clone(),
    }];
    // The neighbours of a few numbers (`x > 0`, `x BETWEEN 1 AND 5`), every literal as it is
    // (`IN` lists), a few patterns and lengths: a long IN list leaves room for the rest.
    for number in literals.numbers.iter().take(4) {
        match number {
            Value::Integer(n) => {
                list.push(Candidate::Integer {
                    start: n.saturating_add(1),
                    step: 1,
                });
                list.push(Candidate::Integer {
                    start: n.saturating_sub(1),
                    step: -1,
                });
            }
            Value::Real(n) => {
                list.push(Candidate::Real {
                    start: n + 1.0,
                    step: 1.0,
                });
                list.push(Candidate::Real {
                    start: n - 1.0,
                    step: -1.0,
                });
            }
            _ => {}
        }
    }
    let exact: Vec<Value> = literals
        .numbers
        .iter()
        .cloned()
        .chain(literals.strings.iter().cloned().map(Value::Text))
        .take(12)
        .collect();
    for offset in 0..exact.len() {
        list.push(Candidate::Literal {
            values: exact.clone(),
            offset,
        });
    }
    let patterns = literals
        .strings
        .iter()
        .filter(|string| string.contains(['%', '_', '*', '?']));
    list.extend(patterns.take(2).cloned().map(Candidate::Pattern));
    for &length in literals.lengths.iter().take(2) {
        for length in [length, length.saturating_add(1), length.saturating_sub(1)] {
            // `length(x) < 1000000000` must not cost a gigabyte: a short text passes it too.
            if let Ok(length @ 0..=LONGEST_TEXT) = usize::try_from(length) {
                list.push(Candidate::Length(length));
            }
        }
    }
    // Other shapes, for checks whose literals say nothing (`ends > starts`, `json_valid(x)`).
    list.extend([
        Candidate::Integer {
            start: 1001,
            step: 1,
        },
        Candidate::Integer { start: 0, step: -1 },
        tagged,
        Candidate::Tagged(String::new()),
        Candidate::JsonObject,
        Candidate::JsonArray,
        Candidate::Timestamp,
        counting,
    ]);
    let mut unique: Vec<Candidate> = Vec::with_capacity(list.len() + 2);
    for candidate in list {
        push_new(&mut unique, candidate);
    }
    unique.truncate(MOST_CANDIDATES - 2);
    if column.has_default {
        unique.push(Candidate::Default);
    }
    if column.nullable {
        unique.push(Candidate::Null);
    }
    unique
}

impl Candidate {
    /// The value for row `row`; `None` means "leave the column to its default".
    pub(super) fn value(&self, row: usize) -> Option<Value> {
        let index = i64::try_from(row).unwrap_or(i64::MAX);
        Some(match self {
            Candidate::Integer { start, step } => {
                Value::Integer(start.saturating_add(step.saturating_mul(index)))
            }
            #[expect(
                clippy::cast_precision_loss,
                reason = "row indexes are small; an inexact real is still a real"
            )]
            Candidate::Real { start, step } => Value::Real(start + step * index as f64),
            Candidate::Tagged(prefix) => Value::Text(format!("{prefix}{}", row + 1)),
            Candidate::JsonObject => Value::Text(format!("{{\"seed\":{}}}", row + 1)),
            Candidate::JsonArray => Value::Text(format!("[{}]", row + 1)),
            Candidate::Timestamp => Value::Text(format!(
                "2000-01-{:02} 00:00:{:02}",
                1 + (row / 60) % 28,
                row % 60
            )),
            Candidate::Length(length) => Value::Text(text_of_length(*length, row)),
            Candidate::Literal { values, offset } => values
                .get((row + offset) % values.len().max(1))
                .cloned()
                .unwrap_or(Value::Null),
            Candidate::Pattern(pattern) => Value::Text(fill_pattern(pattern, row)),
            Candidate::Blob => {
                let mut bytes = b"seed".to_vec();
                bytes.extend_from_slice(&u64::try_from(row).unwrap_or(u64::MAX).to_be_bytes());
                Value::Blob(bytes)
            }
            Candidate::Default => return None,
            Candidate::Null => Value::Null,
        })
    }
}

/// `length` letters spelling `row` in base 26 (`aaa`, `aab`, …), so rows differ.
fn text_of_length(length: usize, row: usize) -> String {
    let mut letters = vec![b'a'; length];
    let mut rest = row;
    for letter in letters.iter_mut().rev() {
        if rest == 0 {
            break;
        }
        // `rest % 26` is below 26, so the cast keeps every bit.
        *letter = b'a' + u8::try_from(rest % 26).unwrap_or(0);
        rest /= 26;
    }
    String::from_utf8(letters).unwrap_or_default()
}

/// A LIKE or GLOB pattern made into text that matches it: `%`/`*` become a tag that differs per
/// row, `_`/`?` one letter, a `[…]` class its first character.
fn fill_pattern(pattern: &str, row: usize) -> String {
    let mut filled = String::with_capacity(pattern.len() + 4);
    let mut characters = pattern.chars();
    while let Some(character) = characters.next() {
        match character {
            '%' | '*' => filled.push_str(&format!("s{}", row + 1)),
            '_' | '?' => filled.push('x'),
            '[' => {
                let class: String = characters.by_ref().take_while(|&c| c != ']').collect();
                let first = class.trim_start_matches('^').chars().next().unwrap_or('x');
                filled.push(first);
            }
            other => filled.push(other),
        }
    }
    filled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::schema::words;

    #[test]
    fn affinity_follows_sqlite_rules() {
        let cases = [
            ("INTEGER", Affinity::Integer),
            ("BIGINT", Affinity::Integer),
            ("VARCHAR(255)", Affinity::Text),
            ("text(36)", Affinity::Text),
            ("", Affinity::Blob),
            ("BLOB", Affinity::Blob),
            ("DOUBLE PRECISION", Affinity::Real),
            ("boolean", Affinity::Numeric),
            ("timestamp", Affinity::Numeric),
            ("TIMESTAMP WITH TIME ZONE", Affinity::Numeric),
            ("STRING", Affinity::Numeric),
            ("POINT", Affinity::Integer),
        ];
        for (declared, expected) in cases {
            assert_eq!(affinity(declared), expected, "{declared}");
        }
    }

    #[test]
    fn literals_of_check_expressions() {
        let of = |sql: &str| Literals::of_expression(&words(sql));
        let status = of("status IN ('draft', 'it''s')");
        assert_eq!(status.strings, ["draft", "it's"]);
        let range = of("x BETWEEN -5 AND 10 - 2.5");
        assert_eq!(
            range.numbers,
            [Value::Integer(-5), Value::Integer(10), Value::Real(2.5)]
        );
        let length = of("length(code) = 6");
        assert_eq!(length.lengths, [6]);
        assert_eq!(of("x < 0x10").numbers, [Value::Integer(16)]);
    }

    #[test]
    fn candidate_values_differ_per_row() {
        let literals = Literals::of_expression(&words("length(code) = 6"));
        let column = ColumnKind {
            name: "Code",
            declared_type: "TEXT",
            nullable: true,
            has_default: true,
            full_text: false,
        };
        let list = candidates(&column, &literals);
        assert_eq!(list[0].value(1), Some(Value::Text("code-2".to_owned())));
        assert!(list.contains(&Candidate::Length(6)));
        assert_eq!(list[list.len() - 2], Candidate::Default);
        assert_eq!(list[list.len() - 1], Candidate::Null);
        assert_eq!(text_of_length(3, 27), "abb");
        assert_eq!(fill_pattern("%@%._[ab]", 0), "s1@s1.xa");
    }
}
