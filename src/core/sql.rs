//! Splitting migration text into statements by SQLite's own completeness rule.
//!
//! At every `;` the accumulated text is handed to `sqlite3_complete`, exactly as the `sqlite3`
//! shell does, so a trigger body with `;` inside stays whole and a `;` in a comment or a string
//! literal does not split.

/// SQLite's own question, asked of SQLite: it lives with the SQLite backend.
pub use crate::local::is_complete;

/// One statement of a migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlStatement {
    /// The statement text from its first token to its terminating `;` (LF line endings).
    pub sql: String,
    /// 1-based line of the statement's first token in the file.
    pub line: usize,
}

/// The drizzle-kit marker between generated statements.
pub const DRIZZLE_BREAKPOINT: &str = "--> statement-breakpoint";

/// Text with a leading BOM removed and CRLF (and lone CR) converted to LF.
pub fn normalize_line_endings(text: &str) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        text.to_owned()
    }
}

/// Splits `text` (already LF-normalised) into statements; `first_line` is the file line the text
/// starts on.
pub fn split_statements(text: &str, first_line: usize) -> Vec<SqlStatement> {
    let mut statements = Vec::new();
    let mut start = 0;
    for (index, byte) in text.bytes().enumerate() {
        if byte == b';' && is_complete(&text[start..=index]) {
            push_statement(&mut statements, text, start, index + 1, first_line);
            start = index + 1;
        }
    }
    push_statement(&mut statements, text, start, text.len(), first_line);
    statements
}

/// Splits drizzle-kit output: on `--> statement-breakpoint` first (as drizzle's migrator does),
/// then each chunk by SQLite's rule, so a chunk holding two statements still yields two.
pub fn split_drizzle_statements(text: &str) -> Vec<SqlStatement> {
    let mut statements = Vec::new();
    let mut offset = 0;
    for chunk in text.split(DRIZZLE_BREAKPOINT) {
        let line = 1 + text[..offset].matches('\n').count();
        statements.extend(split_statements(chunk, line));
        offset += chunk.len() + DRIZZLE_BREAKPOINT.len();
    }
    statements
}

fn push_statement(
    statements: &mut Vec<SqlStatement>,
    text: &str,
    start: usize,
    end: usize,
    first_line: usize,
) {
    let fragment = &text[start..end];
    let Some(token_offset) = first_token_offset(fragment) else {
        return;
    };
    let body = fragment[token_offset..].trim_end();
    if body == ";" {
        return;
    }
    let line = first_line + text[..start + token_offset].matches('\n').count();
    statements.push(SqlStatement {
        sql: body.to_owned(),
        line,
    });
}

/// Byte offset of the first character that is neither whitespace nor part of a comment.
pub fn first_token_offset(fragment: &str) -> Option<usize> {
    let bytes = fragment.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => index += 1,
            b'-' if bytes.get(index + 1) == Some(&b'-') => {
                index = fragment[index..]
                    .find('\n')
                    .map_or(bytes.len(), |newline| index + newline + 1);
            }
            b'/' if bytes.get(index + 1) == Some(&b'*') => {
                index = fragment[index + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |close| index + 2 + close + 2);
            }
            _ => return Some(index),
        }
    }
    None
}

/// The leading keywords of a statement, upper-cased, comments skipped: `["CREATE", "TABLE"]`.
pub fn leading_keywords(sql: &str, count: usize) -> Vec<String> {
    let mut words = Vec::with_capacity(count);
    let mut rest = sql;
    while words.len() < count {
        let Some(offset) = first_token_offset(rest) else {
            break;
        };
        rest = &rest[offset..];
        let word: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if word.is_empty() {
            break;
        }
        rest = &rest[word.len()..];
        words.push(word.to_ascii_uppercase());
    }
    words
}

/// Statements D1 refuses as transaction control (`BEGIN`, `COMMIT`, `END`, `ROLLBACK`,
/// `SAVEPOINT`, `RELEASE`).
pub fn is_transaction_control(sql: &str) -> bool {
    matches!(
        leading_keywords(sql, 1).first().map(String::as_str),
        Some("BEGIN" | "COMMIT" | "END" | "ROLLBACK" | "SAVEPOINT" | "RELEASE")
    )
}

/// D1's per-statement size limit, in bytes.
pub const D1_MAX_STATEMENT_BYTES: usize = 100_000;

/// Quotes an SQL identifier the way wrangler does: `"` + name with `"` doubled + `"`.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(statements: &[SqlStatement]) -> Vec<&str> {
        statements.iter().map(|s| s.sql.as_str()).collect()
    }

    #[test]
    fn splits_simple_statements_with_lines() {
        let statements = split_statements(
            "-- header\nCREATE TABLE a(x);\n\nINSERT INTO a VALUES (1);\n",
            1,
        );
        assert_eq!(
            texts(&statements),
            ["CREATE TABLE a(x);", "INSERT INTO a VALUES (1);"]
        );
        assert_eq!(statements[0].line, 2);
        assert_eq!(statements[1].line, 4);
    }

    #[test]
    fn keeps_trigger_bodies_and_literals_whole() {
        let sql = "CREATE TRIGGER IF NOT EXISTS t AFTER INSERT ON a BEGIN\n  UPDATE a SET x = 'a;b';\n  DELETE FROM b; -- gone;\nEND;\nSELECT 1;";
        let statements = split_statements(sql, 1);
        assert_eq!(statements.len(), 2);
        assert!(statements[0].sql.ends_with("END;"));
        assert_eq!(statements[1].sql, "SELECT 1;");
        assert_eq!(statements[1].line, 5);
    }

    #[test]
    fn semicolons_in_comments_do_not_split() {
        let statements = split_statements("/* a; b */ SELECT 1 -- c;\n;\n-- trailing;\n", 1);
        assert_eq!(texts(&statements), ["SELECT 1 -- c;\n;"]);
    }

    #[test]
    fn trailing_statement_without_semicolon_is_kept() {
        let statements = split_statements("SELECT 1;\nSELECT 2", 1);
        assert_eq!(texts(&statements), ["SELECT 1;", "SELECT 2"]);
    }

    #[test]
    fn comment_only_text_has_no_statements() {
        assert!(split_statements("-- Migration number: 0001 \t 2026\n", 1).is_empty());
        assert!(split_statements(" ; ;\n", 1).is_empty());
    }

    #[test]
    fn drizzle_breakpoints_split_and_keep_lines() {
        let sql = "CREATE TABLE `a` (\n\t`x` integer\n);\n--> statement-breakpoint\nCREATE INDEX `i` ON `a` (`x`);--> statement-breakpoint\nDROP TABLE `b`;";
        let statements = split_drizzle_statements(sql);
        assert_eq!(statements.len(), 3);
        assert_eq!(statements[1].line, 5);
        assert_eq!(statements[2].line, 6);
    }

    #[test]
    fn normalises_crlf_and_bom() {
        assert_eq!(normalize_line_endings("\u{feff}a\r\nb\rc"), "a\nb\nc");
    }

    #[test]
    fn recognises_transaction_control() {
        assert!(is_transaction_control("begin transaction;"));
        assert!(is_transaction_control("-- c\nSAVEPOINT x;"));
        assert!(!is_transaction_control("CREATE TABLE begin_x(a);"));
    }
}
