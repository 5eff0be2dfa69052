//! Splitting migration text into statements by SQLite's own completeness rule.
//!
//! The text is scanned once, front to back, with the token classes and states `sqlite3_complete`
//! uses (the rule the `sqlite3` shell splits by), so a trigger body with `;` inside stays whole
//! and a `;` in a comment or a string literal does not split. One pass also yields every
//! statement's line and finds an unterminated literal or comment: the work is linear in the
//! text, whatever its shape. Statements are slices of the file: no byte of them is rewritten.

/// SQLite's own question, asked of SQLite: it lives with the SQLite backend.
pub use crate::local::is_complete;

/// One statement of a migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlStatement {
    /// The statement's bytes as the file has them, from its first token to its terminating `;`.
    pub sql: String,
    /// 1-based line of the statement's first token in the file.
    pub line: usize,
}

/// The drizzle-kit marker between generated statements.
pub const DRIZZLE_BREAKPOINT: &str = "--> statement-breakpoint";

/// Text with a leading BOM removed and CRLF (and lone CR) converted to LF: what `sha256_lf`
/// hashes. Statements are never taken from it.
pub fn normalize_line_endings(text: &str) -> String {
    let text = strip_bom(text);
    if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        text.to_owned()
    }
}

fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// What was left open at the end of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// `'…`
    String,
    /// `"…`, `` `…`` or `[…`
    QuotedIdentifier(char),
    /// `/*…`
    BlockComment,
}

impl std::fmt::Display for Opening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Opening::String => f.write_str("string literal (`'`)"),
            Opening::QuotedIdentifier(quote) => write!(f, "quoted identifier (`{quote}`)"),
            Opening::BlockComment => f.write_str("block comment (`/*`)"),
        }
    }
}

/// A literal, quoted identifier or block comment that is never closed: SQLite would read the
/// rest of the file into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unterminated {opening} starting on line {line}")]
pub struct Unterminated {
    pub opening: Opening,
    /// 1-based line of the opening quote or `/*`.
    pub line: usize,
}

/// Where one statement lies in the text it was split from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    /// Byte offset of its first token.
    pub start: usize,
    /// Byte offset just past its `;` (or its last non-blank byte, for trailing text).
    pub end: usize,
    /// 1-based line of `start`.
    pub line: usize,
}

/// The statements of a text, and what was left open at its end, if anything. Text after an
/// unterminated opening is kept as the last statement, so a lenient caller sees what SQLite
/// would be handed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    pub statements: Vec<Located>,
    pub unterminated: Option<Unterminated>,
}

/// Locates the statements of `text` as it is on disk (a leading BOM is skipped); `drizzle`
/// splits on `--> statement-breakpoint` first, as drizzle's migrator does, then each chunk by
/// SQLite's rule, so a chunk holding two statements still yields two.
pub fn locate_statements(text: &str, drizzle: bool) -> Split {
    Scanner::new(text).locate(drizzle)
}

/// Splits `text` into statements; `first_line` is the file line the text starts on.
pub fn split_statements(text: &str, first_line: usize) -> Result<Vec<SqlStatement>, Unterminated> {
    statements_of(text, false, first_line)
}

/// Splits drizzle-kit output (see `locate_statements`).
pub fn split_drizzle_statements(text: &str) -> Result<Vec<SqlStatement>, Unterminated> {
    statements_of(text, true, 1)
}

/// How many byte look-ups locating the statements of `text` takes (for the linearity test).
#[cfg(test)]
fn visits(text: &str, drizzle: bool) -> u64 {
    let mut scanner = Scanner::new(text);
    let mut split = Split::default();
    let start = text.len() - strip_bom(text).len();
    if drizzle {
        scanner.locate_chunks(start, &mut split);
    } else {
        scanner.locate_chunk(start, text.len(), &mut split);
    }
    scanner.visits
}

fn statements_of(
    text: &str,
    drizzle: bool,
    first_line: usize,
) -> Result<Vec<SqlStatement>, Unterminated> {
    let split = locate_statements(text, drizzle);
    let shift = first_line - 1;
    if let Some(mut unterminated) = split.unterminated {
        unterminated.line += shift;
        return Err(unterminated);
    }
    Ok(split
        .statements
        .into_iter()
        .map(|located| SqlStatement {
            sql: text[located.start..located.end].to_owned(),
            line: located.line + shift,
        })
        .collect())
}

/// A token, classed as `sqlite3_complete` classes them: only these words matter to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Semicolon,
    /// Whitespace or a comment.
    Blank,
    Explain,
    Create,
    /// `TEMP` or `TEMPORARY`.
    Temp,
    Trigger,
    End,
    /// Any other token: words, literals, quoted identifiers, operators.
    Other,
}

/// How far the current statement is on its way to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the first token, or just after a complete statement.
    Start,
    /// After a leading `EXPLAIN`.
    Explain,
    /// After a leading `CREATE` (perhaps `TEMP`).
    Create,
    /// Any other statement: its next `;` ends it.
    Normal,
    /// Inside `CREATE TRIGGER`: only `; END ;` ends it.
    TriggerBody,
    /// The `;` of that `; END ;`.
    TriggerSemicolon,
    /// The `; END` of it.
    TriggerEnd,
}

impl Phase {
    /// The phase after `token`; a statement is complete when a `;` leads back to `Start`.
    fn after(self, token: Token) -> Phase {
        use Phase::{Create, Explain, Normal, Start, TriggerBody, TriggerEnd, TriggerSemicolon};
        if token == Token::Blank {
            return self;
        }
        match (self, token) {
            (Start | Explain | Create | Normal | TriggerEnd, Token::Semicolon) => Start,
            (TriggerBody | TriggerSemicolon, Token::Semicolon) => TriggerSemicolon,
            (Start | Explain, Token::Create) | (Create, Token::Temp) => Create,
            (Start, Token::Explain) | (Explain, Token::Other) => Explain,
            (TriggerSemicolon, Token::End) => TriggerEnd,
            (Create, Token::Trigger) | (TriggerBody | TriggerSemicolon | TriggerEnd, _) => {
                TriggerBody
            }
            _ => Normal,
        }
    }
}

/// Bytes `sqlite3_complete` counts as whitespace.
fn is_blank(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

/// Bytes SQLite allows in an unquoted word.
fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$' || byte >= 0x80
}

/// One pass over the text: tokens, statement boundaries and line numbers.
struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    /// Every byte look-up of the scan (tokens and line counting), for the linearity test.
    visits: u64,
    /// Line breaks are counted up to here...
    counted_to: usize,
    /// ...and this is the line there.
    line: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            visits: 0,
            counted_to: 0,
            line: 1,
        }
    }

    fn byte(&mut self, position: usize) -> Option<u8> {
        self.visits += 1;
        self.bytes.get(position).copied()
    }

    /// The line of `position`, which never lies before the last one asked: counting goes on
    /// from there, so all the line numbers of a text cost one pass. A CRLF is one line break,
    /// and so is a lone CR.
    fn line_at(&mut self, position: usize) -> usize {
        while self.counted_to < position {
            match self.byte(self.counted_to) {
                Some(b'\n') => self.line += 1,
                Some(b'\r') if self.byte(self.counted_to + 1) != Some(b'\n') => self.line += 1,
                _ => {}
            }
            self.counted_to += 1;
        }
        self.line
    }

    fn locate(mut self, drizzle: bool) -> Split {
        let mut split = Split::default();
        let start = self.text.len() - strip_bom(self.text).len();
        if drizzle {
            self.locate_chunks(start, &mut split);
        } else {
            self.locate_chunk(start, self.text.len(), &mut split);
        }
        split
    }

    /// Splits on drizzle's breakpoints, then each chunk by SQLite's rule.
    fn locate_chunks(&mut self, start: usize, split: &mut Split) {
        let mut position = start;
        loop {
            let chunk_end = self.text[position..]
                .find(DRIZZLE_BREAKPOINT)
                .map_or(self.text.len(), |at| position + at);
            self.visits += (chunk_end - position) as u64;
            self.locate_chunk(position, chunk_end, split);
            if chunk_end == self.text.len() {
                break;
            }
            position = chunk_end + DRIZZLE_BREAKPOINT.len();
        }
    }

    /// Splits `text[start..end]` by SQLite's rule, appending to `split`.
    fn locate_chunk(&mut self, start: usize, end: usize, split: &mut Split) {
        let mut phase = Phase::Start;
        let mut statement_start = None;
        let mut position = start;
        while position < end {
            let (token, next) = match self.token(position, end) {
                Ok(found) => found,
                Err(opening) => {
                    // Lines are counted forwards only: the statement's line is taken first.
                    if statement_start.is_none() {
                        statement_start = Some((position, self.line_at(position)));
                    }
                    let line = self.line_at(position);
                    split
                        .unterminated
                        .get_or_insert(Unterminated { opening, line });
                    (Token::Other, end)
                }
            };
            if statement_start.is_none() && !matches!(token, Token::Blank | Token::Semicolon) {
                statement_start = Some((position, self.line_at(position)));
            }
            phase = phase.after(token);
            if token == Token::Semicolon
                && phase == Phase::Start
                && let Some((first, line)) = statement_start.take()
            {
                split.statements.push(Located {
                    start: first,
                    end: next,
                    line,
                });
            }
            position = next;
        }
        if let Some((first, line)) = statement_start {
            let trailing = self.text[first..end].trim_end();
            split.statements.push(Located {
                start: first,
                end: first + trailing.len(),
                line,
            });
        }
    }

    /// The token at `position` and the offset just past it, or what it opens and never closes
    /// before `end`.
    fn token(&mut self, position: usize, end: usize) -> Result<(Token, usize), Opening> {
        let first = self.byte(position).unwrap_or(b' ');
        let second = if position + 1 < end {
            self.byte(position + 1)
        } else {
            None
        };
        Ok(match (first, second) {
            (b';', _) => (Token::Semicolon, position + 1),
            (byte, _) if is_blank(byte) => (Token::Blank, position + 1),
            (b'-', Some(b'-')) => {
                let close = self.find(position + 2, end, |byte| byte == b'\n');
                (Token::Blank, close.map_or(end, |at| at + 1))
            }
            (b'/', Some(b'*')) => {
                let mut from = position + 2;
                loop {
                    let star = self
                        .find(from, end, |byte| byte == b'*')
                        .ok_or(Opening::BlockComment)?;
                    if star + 1 < end && self.byte(star + 1) == Some(b'/') {
                        break (Token::Blank, star + 2);
                    }
                    from = star + 1;
                }
            }
            (quote @ (b'\'' | b'"' | b'`' | b'['), _) => {
                let closing = if quote == b'[' { b']' } else { quote };
                let close = self.find(position + 1, end, |byte| byte == closing).ok_or(
                    if quote == b'\'' {
                        Opening::String
                    } else {
                        Opening::QuotedIdentifier(char::from(quote))
                    },
                )?;
                (Token::Other, close + 1)
            }
            (byte, _) if is_word_byte(byte) => {
                let word_end = self
                    .find(position + 1, end, |byte| !is_word_byte(byte))
                    .unwrap_or(end);
                (keyword(&self.text[position..word_end]), word_end)
            }
            _ => (Token::Other, position + 1),
        })
    }

    /// The first offset in `from..end` whose byte matches.
    fn find(&mut self, from: usize, end: usize, matches: impl Fn(u8) -> bool) -> Option<usize> {
        let found = self.bytes[from.min(end)..end]
            .iter()
            .position(|byte| matches(*byte))
            .map(|offset| from + offset);
        self.visits += (found.unwrap_or(end) + 1 - from.min(end)) as u64;
        found
    }
}

fn keyword(word: &str) -> Token {
    let is = |keyword: &str| word.eq_ignore_ascii_case(keyword);
    if is("create") {
        Token::Create
    } else if is("temp") || is("temporary") {
        Token::Temp
    } else if is("trigger") {
        Token::Trigger
    } else if is("end") {
        Token::End
    } else if is("explain") {
        Token::Explain
    } else {
        Token::Other
    }
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

    fn split(text: &str) -> Vec<SqlStatement> {
        split_statements(text, 1).unwrap()
    }

    fn texts(statements: &[SqlStatement]) -> Vec<&str> {
        statements.iter().map(|s| s.sql.as_str()).collect()
    }

    #[test]
    fn splits_simple_statements_with_lines() {
        let statements = split("-- header\nCREATE TABLE a(x);\n\nINSERT INTO a VALUES (1);\n");
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
        let statements = split(sql);
        assert_eq!(statements.len(), 2);
        assert!(statements[0].sql.ends_with("END;"));
        assert_eq!(statements[1].sql, "SELECT 1;");
        assert_eq!(statements[1].line, 5);
    }

    #[test]
    fn semicolons_in_comments_do_not_split() {
        let statements = split("/* a; b */ SELECT 1 -- c;\n;\n-- trailing;\n");
        assert_eq!(texts(&statements), ["SELECT 1 -- c;\n;"]);
    }

    #[test]
    fn trailing_statement_without_semicolon_is_kept() {
        let statements = split("SELECT 1;\nSELECT 2");
        assert_eq!(texts(&statements), ["SELECT 1;", "SELECT 2"]);
    }

    #[test]
    fn comment_only_text_has_no_statements() {
        assert!(split("-- Migration number: 0001 \t 2026\n").is_empty());
        assert!(split(" ; ;\n").is_empty());
    }

    #[test]
    fn drizzle_breakpoints_split_and_keep_lines() {
        let sql = "CREATE TABLE `a` (\n\t`x` integer\n);\n--> statement-breakpoint\nCREATE INDEX `i` ON `a` (`x`);--> statement-breakpoint\nDROP TABLE `b`;";
        let statements = split_drizzle_statements(sql).unwrap();
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

    #[test]
    fn crlf_text_keeps_its_bytes_and_lines() {
        let statements = split(
            "CREATE TABLE a(t);\r\nINSERT INTO a(t) VALUES('l1\r\nl2');\r\nINSERT INTO a(t) VALUES('x\ry')\r\n",
        );
        assert_eq!(
            texts(&statements),
            [
                "CREATE TABLE a(t);",
                "INSERT INTO a(t) VALUES('l1\r\nl2');",
                "INSERT INTO a(t) VALUES('x\ry')"
            ]
        );
        assert_eq!(statements[1].line, 2);
        assert_eq!(statements[2].line, 4);
        // A lone CR is a line break too, as it was when lines were counted on an LF copy.
        assert_eq!(split("SELECT 1;\rSELECT 2;")[1].line, 2);
        // A BOM is not part of the first statement.
        assert_eq!(texts(&split("\u{feff}SELECT 1;")), ["SELECT 1;"]);
    }

    #[test]
    fn an_unterminated_opening_is_an_error_naming_its_line() {
        let error = |text: &str| split_statements(text, 1).unwrap_err();
        assert_eq!(
            error("SELECT 1;\nSELECT 'a;\nSELECT 2;\n"),
            Unterminated {
                opening: Opening::String,
                line: 2
            }
        );
        assert_eq!(error("SELECT 1;\r\n\r\n/* a */ /* b; */ /* c;").line, 3);
        assert_eq!(error("SELECT [a;").opening, Opening::QuotedIdentifier('['));
        assert_eq!(
            error("SELECT \"a;").to_string(),
            "unterminated quoted identifier (`\"`) starting on line 1"
        );
        assert_eq!(error("SELECT 1 /*/;").opening, Opening::BlockComment);
        assert_eq!(split_statements("SELECT 1;\n'", 10).unwrap_err().line, 11);
        let drizzle = split_drizzle_statements("SELECT 1;\n--> statement-breakpoint\nSELECT `a;");
        assert_eq!(drizzle.unwrap_err().line, 3);
        // A line comment may end the text; a trigger may be left open (SQLite reports that).
        assert_eq!(texts(&split("SELECT 1 -- c")), ["SELECT 1 -- c"]);
        assert_eq!(
            texts(&split("CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1;")),
            ["CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1;"]
        );
        // Leniently, the rest of the text is one last statement.
        let lenient = locate_statements("SELECT 1; SELECT 'a; b", false);
        assert_eq!(lenient.statements.len(), 2);
        assert_eq!(lenient.statements[1].start, 10);
    }

    /// The splitting rule as it was, asking `sqlite3_complete` at every `;` about everything
    /// since the last split: quadratic, but SQLite's own answer.
    fn split_by_sqlite(text: &str) -> Vec<SqlStatement> {
        let mut statements = Vec::new();
        let mut start = 0;
        let mut push = |start: usize, end: usize| {
            let fragment = &text[start..end];
            let Some(offset) = first_token_offset(fragment) else {
                return;
            };
            let body = fragment[offset..].trim_end();
            if body != ";" {
                statements.push(SqlStatement {
                    sql: body.to_owned(),
                    line: 1 + text[..start + offset].matches('\n').count(),
                });
            }
        };
        for (index, byte) in text.bytes().enumerate() {
            if byte == b';' && is_complete(&text[start..=index]) {
                push(start, index + 1);
                start = index + 1;
            }
        }
        push(start, text.len());
        statements
    }

    /// A small deterministic generator (xorshift), so every run checks the same texts.
    struct Random(u64);

    impl Random {
        fn below(&mut self, bound: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            usize::try_from(self.0 % bound as u64).unwrap()
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    /// Random migration text: statements, strings and identifiers holding `;`, comments of
    /// both kinds, triggers (with `CASE … END` and `END` as a name inside), `EXPLAIN`,
    /// `TEMP`, stray `;`, and CRLF or LF line ends; the text may end without a `;`.
    fn random_migration(random: &mut Random) -> String {
        const PIECES: &[&str] = &[
            "CREATE TABLE t(a, \"b;c\", [d;e], `f;g`);",
            "INSERT INTO t VALUES ('x;y', 'it''s;', \"q\");",
            "INSERT INTO t VALUES ('l1\nl2;\nl3');",
            "UPDATE t SET a = 1 -- no; split\nWHERE b = 2;",
            "/* a; block */ SELECT 1;",
            "SELECT /* ; */ 2 /**/;",
            "SELECT 'end' AS end, \"trigger\", temp FROM t;",
            "EXPLAIN SELECT 1;",
            "EXPLAIN CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; END;",
            "CREATE TEMP TRIGGER tr1 AFTER INSERT ON t BEGIN\n  UPDATE t SET a = 'a;b';\n  DELETE FROM t; -- gone;\nEND;",
            "CREATE TRIGGER IF NOT EXISTS tr2 BEFORE DELETE ON t BEGIN SELECT CASE WHEN 1 THEN 2 END; INSERT INTO t VALUES (1) ; END ;",
            "CREATE TEMPORARY TABLE tmp(x);",
            "CREATE INDEX i ON t(a);",
            "CREATE VIEW v AS SELECT 1 END;",
            "DROP TABLE IF EXISTS t;",
            ";",
            "-- only a comment; here\n",
            "-- a comment that ends the line of the next piece;",
            "/* multi\nline; comment */",
            "SELECT $a, x1, _b, caf\u{e9};",
            "SELECT 1 - -2, 3/4, 5*6;",
        ];
        const BLANKS: &[&str] = &["", " ", "\n", "\n\n", "\t", " -- c;\n", " /* ; */ "];
        let mut text = String::new();
        for _ in 0..random.below(12) {
            text.push_str(random.pick(PIECES));
            text.push_str(random.pick(BLANKS));
            if random.below(4) == 0 {
                text.push('\n');
            }
        }
        if random.below(3) == 0 {
            text.push_str(random.pick(&["SELECT 9", "SELECT 9 -- tail", "DELETE FROM t\n"]));
        }
        if random.below(2) == 0 {
            text = text.replace('\n', "\r\n");
        }
        text
    }

    #[test]
    fn agrees_with_sqlite3_complete_on_every_boundary() {
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        let mut unterminated = 0;
        for _ in 0..3_000 {
            let text = random_migration(&mut random);
            let found = locate_statements(&text, false);
            let statements: Vec<SqlStatement> = found
                .statements
                .iter()
                .map(|located| SqlStatement {
                    sql: text[located.start..located.end].to_owned(),
                    line: located.line,
                })
                .collect();
            assert_eq!(statements, split_by_sqlite(&text), "{text:?}");
            if let Some(opening) = found.unterminated {
                // SQLite agrees: no `;` ends what is still open.
                let last = &statements[statements.len() - 1].sql;
                assert!(!is_complete(&format!("{last}\n;")), "{opening}: {text:?}");
                unterminated += 1;
            }
        }
        assert!((10..1_000).contains(&unterminated), "{unterminated}");
    }

    #[test]
    fn scans_in_linear_time() {
        type Shape = (&'static str, fn(usize) -> String);
        let shapes: [Shape; 5] = [
            ("single-row inserts", |n| {
                "INSERT INTO t VALUES (1, 'a;b');\n".repeat(n)
            }),
            ("an unclosed quote at the top", |n| {
                format!("SELECT ';\n{}", "INSERT INTO t VALUES (1);\n".repeat(n))
            }),
            ("one long trigger", |n| {
                format!(
                    "CREATE TRIGGER x AFTER INSERT ON t BEGIN\r\n{}END;",
                    "UPDATE t SET a = 1;\r\n".repeat(n)
                )
            }),
            ("stars in block comments", |n| {
                "/* **** ; **** */ SELECT 1;\n".repeat(n)
            }),
            ("drizzle chunks", |n| {
                "CREATE TABLE a(x);\n--> statement-breakpoint\n".repeat(n)
            }),
        ];
        for (shape, text) in shapes {
            let small = text(1_000);
            let large = text(100_000);
            let drizzle = shape == "drizzle chunks";
            let (small_visits, large_visits) = (visits(&small, drizzle), visits(&large, drizzle));
            let length = |text: &str| u64::try_from(text.len()).unwrap();
            assert!(
                large_visits <= 4 * length(&large),
                "{shape}: {large_visits} visits for {} bytes",
                large.len()
            );
            // A hundred times the text costs a hundred times the work, not ten thousand.
            assert!(
                u128::from(large_visits) * u128::from(length(&small)) * 100
                    <= u128::from(small_visits) * u128::from(length(&large)) * 101,
                "{shape}: {large_visits} visits at 100 k, {small_visits} at 1 k"
            );
        }
    }
}
