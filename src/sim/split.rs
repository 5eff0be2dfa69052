//! Splits the `sql` of a request into statements the way SQLite's `sqlite3_complete` decides
//! where a statement ends: at a `;` outside strings, quoted identifiers and comments, except
//! inside the body of a `CREATE [TEMP] TRIGGER … BEGIN … END`, which ends only at `END;`.

/// One lexical unit, as far as statement boundaries are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Semicolon,
    /// Whitespace or a comment.
    Blank,
    /// A bare word (keyword or unquoted identifier).
    Word(&'a str),
    /// Anything else: literals, quoted identifiers, operators.
    Other,
}

/// Where the current statement stands on the way to being complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing but blanks so far.
    Start,
    /// After a leading `EXPLAIN` (possibly followed by `QUERY PLAN`).
    Explain,
    /// After `CREATE` (and possibly `TEMP`/`TEMPORARY`).
    Create,
    /// Inside `CREATE TRIGGER`: only `; END ;` ends the statement.
    Trigger(TriggerEnd),
    /// An ordinary statement: the next `;` ends it.
    Normal,
}

/// Progress towards the `; END ;` that closes a trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TriggerEnd {
    Body,
    AfterSemicolon,
    AfterEnd,
}

/// Splits `sql` into statements. Each statement keeps its terminating `;` (when it has one) and
/// is trimmed of surrounding whitespace; pieces holding only blanks and semicolons are dropped.
/// Text after the last complete statement is returned as a final statement, so SQLite reports
/// it (for example `incomplete input`).
pub(crate) fn split_statements(sql: &str) -> Vec<&str> {
    let mut statements = Vec::new();
    let mut start = 0;
    let mut phase = Phase::Start;
    let mut has_content = false;
    let mut position = 0;
    while position < sql.len() {
        let (token, end) = next_token(sql, position);
        position = end;
        if token != Token::Blank && token != Token::Semicolon {
            has_content = true;
        }
        phase = advance(phase, token);
        if token == Token::Semicolon && matches!(phase, Phase::Start) {
            if has_content {
                statements.push(sql[start..end].trim());
            }
            start = end;
            has_content = false;
        }
    }
    if has_content {
        statements.push(sql[start..].trim());
    }
    statements
}

/// Whether `sql` ends with a complete statement (the `sqlite3_complete` question).
#[cfg(test)]
fn is_complete(sql: &str) -> bool {
    let mut phase = Phase::Start;
    let mut last_was_terminator = false;
    let mut position = 0;
    while position < sql.len() {
        let (token, end) = next_token(sql, position);
        position = end;
        if token == Token::Blank {
            continue;
        }
        phase = advance(phase, token);
        last_was_terminator = token == Token::Semicolon && phase == Phase::Start;
    }
    last_was_terminator
}

/// The phase after `token`. A `;` that ends a statement yields `Phase::Start`.
fn advance(phase: Phase, token: Token<'_>) -> Phase {
    if token == Token::Blank {
        return phase;
    }
    match phase {
        Phase::Start | Phase::Explain => match token {
            Token::Semicolon => Phase::Start,
            Token::Word(word) if word.eq_ignore_ascii_case("CREATE") => Phase::Create,
            Token::Word(word) if phase == Phase::Start && word.eq_ignore_ascii_case("EXPLAIN") => {
                Phase::Explain
            }
            Token::Word(_) | Token::Other if phase == Phase::Explain => Phase::Explain,
            _ => Phase::Normal,
        },
        Phase::Create => match token {
            Token::Semicolon => Phase::Start,
            Token::Word(word)
                if word.eq_ignore_ascii_case("TEMP") || word.eq_ignore_ascii_case("TEMPORARY") =>
            {
                Phase::Create
            }
            Token::Word(word) if word.eq_ignore_ascii_case("TRIGGER") => {
                Phase::Trigger(TriggerEnd::Body)
            }
            _ => Phase::Normal,
        },
        Phase::Trigger(progress) => match (progress, token) {
            (TriggerEnd::AfterEnd, Token::Semicolon) => Phase::Start,
            (_, Token::Semicolon) => Phase::Trigger(TriggerEnd::AfterSemicolon),
            (TriggerEnd::AfterSemicolon, Token::Word(word)) if word.eq_ignore_ascii_case("END") => {
                Phase::Trigger(TriggerEnd::AfterEnd)
            }
            _ => Phase::Trigger(TriggerEnd::Body),
        },
        Phase::Normal => {
            if token == Token::Semicolon {
                Phase::Start
            } else {
                Phase::Normal
            }
        }
    }
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$' || byte >= 0x80
}

/// The token starting at byte `start` of `sql` and the byte offset just after it. Unterminated
/// strings and comments run to the end of the text.
fn next_token(sql: &str, start: usize) -> (Token<'_>, usize) {
    let bytes = sql.as_bytes();
    let first = bytes[start];
    let find_from = |from: usize, needle: &str| sql[from..].find(needle).map(|at| from + at);
    match first {
        b';' => (Token::Semicolon, start + 1),
        b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => {
            let end = bytes[start..]
                .iter()
                .position(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c'))
                .map_or(bytes.len(), |offset| start + offset);
            (Token::Blank, end)
        }
        b'-' if bytes.get(start + 1) == Some(&b'-') => {
            let end = find_from(start, "\n").map_or(bytes.len(), |at| at + 1);
            (Token::Blank, end)
        }
        b'/' if bytes.get(start + 1) == Some(&b'*') => {
            let end = find_from(start + 2, "*/").map_or(bytes.len(), |at| at + 2);
            (Token::Blank, end)
        }
        b'\'' | b'"' | b'`' => (Token::Other, quoted_end(bytes, start, first)),
        b'[' => {
            let end = find_from(start, "]").map_or(bytes.len(), |at| at + 1);
            (Token::Other, end)
        }
        byte if is_word_byte(byte) => {
            let end = bytes[start..]
                .iter()
                .position(|byte| !is_word_byte(*byte))
                .map_or(bytes.len(), |offset| start + offset);
            if first.is_ascii_digit() {
                (Token::Other, end)
            } else {
                (Token::Word(&sql[start..end]), end)
            }
        }
        _ => {
            // One character of punctuation (possibly multi-byte UTF-8 is handled above).
            (Token::Other, start + 1)
        }
    }
}

/// End of a string or quoted identifier opened by `quote` at `start`; a doubled quote escapes.
fn quoted_end(bytes: &[u8], start: usize, quote: u8) -> usize {
    let mut position = start + 1;
    while position < bytes.len() {
        if bytes[position] == quote {
            if bytes.get(position + 1) == Some(&quote) {
                position += 2;
                continue;
            }
            return position + 1;
        }
        position += 1;
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_simple_statements() {
        assert_eq!(
            split_statements("CREATE TABLE t(a);INSERT INTO t VALUES (1);\nSELECT * FROM t"),
            vec![
                "CREATE TABLE t(a);",
                "INSERT INTO t VALUES (1);",
                "SELECT * FROM t"
            ]
        );
    }

    #[test]
    fn semicolons_inside_strings_identifiers_and_comments_do_not_split() {
        let sql = "INSERT INTO t VALUES ('a;b', \"c;d\", `e;f`, [g;h]); -- x;y\n/* z; */ SELECT 1;";
        assert_eq!(
            split_statements(sql),
            vec![
                "INSERT INTO t VALUES ('a;b', \"c;d\", `e;f`, [g;h]);",
                "-- x;y\n/* z; */ SELECT 1;"
            ]
        );
    }

    #[test]
    fn doubled_quotes_stay_inside_the_string() {
        assert_eq!(
            split_statements("SELECT 'it''s;here'; SELECT 2;"),
            vec!["SELECT 'it''s;here';", "SELECT 2;"]
        );
    }

    #[test]
    fn trigger_body_stays_whole() {
        let trigger = "CREATE TRIGGER IF NOT EXISTS trg AFTER INSERT ON t BEGIN \
                       UPDATE t SET name = 'a;b' WHERE id = new.id; \
                       INSERT INTO log VALUES (CASE WHEN 1 THEN 'x' END); END;";
        let sql = format!("{trigger}\nSELECT 1;");
        assert_eq!(split_statements(&sql), vec![trigger, "SELECT 1;"]);
    }

    #[test]
    fn temp_trigger_and_explain_are_recognised() {
        let sql = "CREATE TEMP TRIGGER x INSTEAD OF INSERT ON v BEGIN SELECT 1; END; SELECT 2";
        assert_eq!(
            split_statements(sql),
            vec![
                "CREATE TEMP TRIGGER x INSTEAD OF INSERT ON v BEGIN SELECT 1; END;",
                "SELECT 2"
            ]
        );
        assert!(is_complete(
            "EXPLAIN CREATE TRIGGER x AFTER DELETE ON t BEGIN SELECT 1; END;"
        ));
        assert!(!is_complete(
            "EXPLAIN CREATE TRIGGER x AFTER DELETE ON t BEGIN SELECT 1;"
        ));
    }

    #[test]
    fn end_must_follow_a_semicolon_to_close_a_trigger() {
        let sql = "CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT CASE WHEN 1 THEN 2 END; END;";
        assert_eq!(split_statements(sql), vec![sql]);
        assert!(!is_complete(
            "CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT CASE WHEN 1 THEN 2 END;"
        ));
    }

    #[test]
    fn blank_pieces_are_dropped() {
        assert_eq!(
            split_statements(" ;; -- only a comment\n ; SELECT 1 ;  ;"),
            vec!["SELECT 1 ;"]
        );
        assert!(split_statements("  -- nothing\n").is_empty());
    }

    #[test]
    fn unterminated_trailing_text_is_kept() {
        assert_eq!(
            split_statements("SELECT 1; CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1;"),
            vec![
                "SELECT 1;",
                "CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1;"
            ]
        );
        assert_eq!(
            split_statements("SELECT 'abc; def"),
            vec!["SELECT 'abc; def"]
        );
    }

    #[test]
    fn completeness_matches_sqlite() {
        assert!(is_complete("SELECT 1;"));
        assert!(is_complete("SELECT 1; -- trailing comment"));
        assert!(!is_complete("SELECT 1"));
        assert!(!is_complete("SELECT 'a;"));
        assert!(!is_complete("SELECT 1 /* ; */"));
        assert!(is_complete(
            "CREATE TRIGGER t1 AFTER INSERT ON t BEGIN UPDATE t SET a = 'a;b'; END;"
        ));
    }

    #[test]
    fn words_named_like_keywords_in_identifiers_do_not_confuse() {
        // `created` is not `CREATE`; a column named `trigger` after a normal start is harmless.
        assert_eq!(
            split_statements("SELECT created, \"trigger\" FROM t; SELECT 2;"),
            vec!["SELECT created, \"trigger\" FROM t;", "SELECT 2;"]
        );
    }
}
