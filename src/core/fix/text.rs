//! The migration file as bytes: where each statement starts and ends, identifiers with their
//! positions, and insertion of new statements between existing ones without touching a byte of
//! what is already there (comments, blank lines, CRLF, drizzle's breakpoints).

use std::collections::BTreeMap;

use crate::core::sql::{self, DRIZZLE_BREAKPOINT};

/// Byte range of one statement in the file: from its first token to its `;` (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) start: usize,
    pub(super) end: usize,
}

/// The statements of `text` as d1ctl splits them (see `sql::locate_statements`), located in the
/// raw text, so insertions land between the right bytes.
pub(super) fn statement_spans(text: &str, drizzle: bool) -> Vec<Span> {
    // Leniently: text after an unterminated literal is one last statement, as SQLite would see.
    sql::locate_statements(text, drizzle)
        .statements
        .iter()
        .map(|located| Span {
            start: located.start,
            end: located.end,
        })
        .collect()
}

/// How a token was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Word,
    /// A quoted identifier, with its opening quote (`"`, `` ` `` or `[`).
    Quoted(u8),
    Literal,
    Punctuation,
}

/// A token with its byte range; `text` is lower-cased and unquoted for words and identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Token {
    pub(super) kind: Kind,
    pub(super) text: String,
    pub(super) start: usize,
    pub(super) end: usize,
}

impl Token {
    fn is_name(&self) -> bool {
        matches!(self.kind, Kind::Word | Kind::Quoted(_))
    }

    fn is_word(&self, word: &str) -> bool {
        self.kind == Kind::Word && self.text == word
    }
}

/// The tokens of one statement, comments and whitespace skipped.
pub(super) fn tokens(sql: &str) -> Vec<Token> {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        let start = index;
        if byte.is_ascii_whitespace() {
            index += 1;
            continue;
        }
        if byte == b'-' && bytes.get(index + 1) == Some(&b'-') {
            index = sql[index..]
                .find('\n')
                .map_or(bytes.len(), |n| index + n + 1);
            continue;
        }
        if byte == b'/' && bytes.get(index + 1) == Some(&b'*') {
            index = sql[index + 2..]
                .find("*/")
                .map_or(bytes.len(), |n| index + 2 + n + 2);
            continue;
        }
        let (kind, text) = match byte {
            b'\'' => {
                index = closing(bytes, index, b'\'');
                (Kind::Literal, sql[start..index].to_owned())
            }
            b'"' | b'`' | b'[' => {
                let close = if byte == b'[' { b']' } else { byte };
                index = closing(bytes, index, close);
                // Without its closing quote (only in broken SQL) the name runs to the end.
                let inner_end = if bytes.get(index - 1) == Some(&close) && index > start + 1 {
                    index - 1
                } else {
                    index
                };
                let inner = &sql[start + 1..inner_end];
                let doubled = [char::from(close); 2].iter().collect::<String>();
                let single = char::from(close).to_string();
                (
                    Kind::Quoted(byte),
                    inner.replace(&doubled, &single).to_lowercase(),
                )
            }
            _ if is_word_byte(byte) => {
                while index < bytes.len() && is_word_byte(bytes[index]) {
                    index += 1;
                }
                (Kind::Word, sql[start..index].to_lowercase())
            }
            _ => {
                // One character, whole (it may be multi-byte).
                let width = sql[index..].chars().next().map_or(1, char::len_utf8);
                index += width;
                (Kind::Punctuation, sql[start..index].to_owned())
            }
        };
        tokens.push(Token {
            kind,
            text,
            start,
            end: index,
        });
    }
    tokens
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$' || byte >= 0x80
}

/// The index just past the quote closing the one at `open` (a doubled quote is kept inside).
fn closing(bytes: &[u8], open: usize, close: u8) -> usize {
    let mut index = open + 1;
    while index < bytes.len() {
        if bytes[index] == close {
            if close != b']' && bytes.get(index + 1) == Some(&close) {
                index += 2;
                continue;
            }
            return index + 1;
        }
        index += 1;
    }
    bytes.len()
}

/// `name` quoted like `like` was (bare stays bare when it can), or with `fallback`.
fn quote_like(name: &str, like: Kind, fallback: u8) -> String {
    match like {
        Kind::Quoted(b'`') => quote(name, b'`'),
        Kind::Quoted(_) => quote(name, b'"'),
        _ if is_plain(name) => name.to_owned(),
        _ => quote(name, fallback),
    }
}

fn is_plain(name: &str) -> bool {
    name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.bytes().next().is_some_and(|b| !b.is_ascii_digit())
}

/// `name` in `"…"` or `` `…` ``, the quote doubled inside.
pub(super) fn quote(name: &str, quote: u8) -> String {
    let mark = char::from(quote);
    format!(
        "{mark}{}{mark}",
        name.replace(mark, &format!("{mark}{mark}"))
    )
}

/// Where the name of a `CREATE TABLE` starts and ends (a `main.` prefix included), and the
/// name's token.
fn created_name(tokens: &[Token]) -> Option<(usize, usize, &Token)> {
    let mut index = 0;
    if !tokens.first()?.is_word("create") {
        return None;
    }
    index += 1;
    if tokens
        .get(index)
        .is_some_and(|t| t.is_word("temp") || t.is_word("temporary"))
    {
        index += 1;
    }
    if !tokens.get(index)?.is_word("table") {
        return None;
    }
    index += 1;
    if tokens.get(index).is_some_and(|t| t.is_word("if")) {
        index += 3;
    }
    let first = tokens.get(index)?;
    let name = if tokens.get(index + 1).is_some_and(|t| t.text == ".") {
        tokens.get(index + 2)?
    } else {
        first
    };
    name.is_name().then_some((first.start, name.end, name))
}

/// The tables a statement's `REFERENCES` clauses name, lower-cased.
pub(super) fn referenced_tables(sql: &str) -> Vec<String> {
    let tokens = tokens(sql);
    tokens
        .windows(2)
        .filter(|pair| pair[0].is_word("references") && pair[1].is_name())
        .map(|pair| pair[1].text.clone())
        .collect()
}

/// A `CREATE TABLE` statement renamed to `new_name`, each `REFERENCES t` whose `t` is a key of
/// `references` pointed at its value instead; every other byte as it was.
pub(super) fn rename_create_table(
    sql: &str,
    new_name: &str,
    references: &BTreeMap<String, String>,
    fallback_quote: u8,
) -> Option<String> {
    let tokens = tokens(sql);
    let (start, end, name) = created_name(&tokens)?;
    let mut edits = vec![(start, end, quote_like(new_name, name.kind, fallback_quote))];
    for pair in tokens.windows(2) {
        if pair[0].is_word("references")
            && pair[1].is_name()
            && let Some(target) = references.get(&pair[1].text)
        {
            edits.push((
                pair[1].start,
                pair[1].end,
                quote_like(target, pair[1].kind, fallback_quote),
            ));
        }
    }
    edits.sort_by_key(|(start, _, _)| std::cmp::Reverse(*start));
    let mut out = sql.to_owned();
    for (start, end, replacement) in edits {
        out.replace_range(start..end, &replacement);
    }
    Some(out)
}

/// New statements to put between statement `gap - 1` and statement `gap` (0: before the first).
#[derive(Debug, Clone)]
pub(super) struct Insertion {
    pub(super) gap: usize,
    /// One `--` line above the statements: why they are there.
    pub(super) comment: String,
    /// Statements without their `;`, LF line endings.
    pub(super) statements: Vec<String>,
}

/// `text` with `insertions` placed, in the file's line endings, with drizzle's breakpoint after
/// each inserted statement in a drizzle file; no existing byte is changed or moved out of order.
pub(super) fn insert(
    text: &str,
    spans: &[Span],
    insertions: &[Insertion],
    drizzle: bool,
) -> String {
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut placed: Vec<(usize, String)> = insertions
        .iter()
        .map(|insertion| place(text, spans, insertion, drizzle, newline))
        .collect();
    // Stable: two insertions at one position keep their order.
    placed.sort_by_key(|(position, _)| *position);
    let mut out =
        String::with_capacity(text.len() + placed.iter().map(|p| p.1.len()).sum::<usize>());
    let mut copied = 0;
    for (position, block) in placed {
        out.push_str(&text[copied..position]);
        out.push_str(&block);
        copied = position;
    }
    out.push_str(&text[copied..]);
    out
}

fn place(
    text: &str,
    spans: &[Span],
    insertion: &Insertion,
    drizzle: bool,
    newline: &str,
) -> (usize, String) {
    let mut lines: Vec<String> = insertion
        .statements
        .iter()
        .map(|statement| format!("{};", statement.replace('\n', newline)))
        .collect();
    // The comment travels with the first statement: in drizzle it shares its chunk.
    if let Some(first) = lines.first_mut() {
        *first = format!("-- {}{newline}{first}", insertion.comment);
    }
    let separator = if drizzle {
        format!("{DRIZZLE_BREAKPOINT}{newline}")
    } else {
        newline.to_owned()
    };
    let block = |lines: &[String]| -> String {
        lines.iter().fold(String::new(), |mut out, line| {
            out.push_str(line);
            out.push_str(&separator);
            out
        })
    };
    let previous = insertion.gap.checked_sub(1).and_then(|i| spans.get(i));
    let next = spans.get(insertion.gap);
    let Some(previous) = previous else {
        // Before the first statement: after whatever header comments precede it.
        return (next.map_or(0, |s| s.start), block(&lines));
    };
    let limit = next.map_or(text.len(), |s| s.start);
    let between = &text[previous.end..limit];
    if drizzle && let Some(marker) = between.find(DRIZZLE_BREAKPOINT) {
        let mut position = previous.end + marker + DRIZZLE_BREAKPOINT.len();
        let mut prefix = String::new();
        if text[position..].starts_with(newline) {
            position += newline.len();
        } else if text[position..].starts_with('\n') {
            position += 1;
        } else {
            prefix.push_str(newline);
        }
        return (position, prefix + &block(&lines));
    }
    if drizzle && next.is_none() {
        // After the last statement of a drizzle file: a breakpoint between, none after.
        let mut out = format!("{DRIZZLE_BREAKPOINT}{newline}");
        out.push_str(&lines.join(&separator));
        return (previous.end, out);
    }
    // After the previous statement's line, when the rest of that line is only a comment.
    let line_end = text[previous.end..]
        .find('\n')
        .map_or(text.len(), |n| previous.end + n + 1);
    let rest = text[previous.end..line_end].trim();
    if line_end <= limit && (rest.is_empty() || rest.starts_with("--")) {
        let prefix = if text[..line_end].ends_with('\n') {
            ""
        } else {
            newline
        };
        return (line_end, format!("{prefix}{}", block(&lines)));
    }
    // Something else shares the line: right after the `;`, on lines of their own.
    let mut out = String::new();
    for line in &lines {
        out.push_str(newline);
        out.push_str(line);
        if drizzle {
            out.push_str(DRIZZLE_BREAKPOINT);
        }
    }
    if next.is_some_and(|s| s.start == limit) && !between.contains('\n') {
        out.push_str(newline);
    }
    (previous.end, out)
}
