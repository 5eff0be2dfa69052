//! How many rows a data step will touch, asked of the database before it runs: a `COUNT(*)`
//! derived from the step's own statement, where one can be.
//!
//! - A chunked statement carries a `LIMIT`: the query that `LIMIT` bounds, counted without
//!   it, is the rows still to do (`UPDATE t SET … WHERE id IN (SELECT id FROM t WHERE x IS
//!   NULL LIMIT 500)` counts `SELECT id FROM t WHERE x IS NULL`). Once the step finished it
//!   must be 0, which is how a finished chunked step is verified by its rows.
//! - `UPDATE t … WHERE c` and `DELETE FROM t WHERE c` count `t WHERE c`; `INSERT … SELECT`
//!   counts its `SELECT`.
//!
//! The query is rebuilt from the statement's tokens (words lower-cased, literals as written), so
//! it is one `SELECT` and nothing else.

use crate::core::schema::{Token, join_tokens, tokenize};

/// A chunked statement's `LIMIT`: how many rows one repetition takes, and the query counting
/// the rows left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub limit: u64,
    /// `None` when the bounded query could not be isolated (then nothing is estimated).
    pub remaining: Option<String>,
}

/// Why a statement cannot be chunked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotChunkable {
    NoLimit,
    /// `LIMIT` is followed by something other than a whole number.
    LimitNotANumber(String),
    /// Not an `INSERT`, `UPDATE`, `DELETE` or `REPLACE`.
    NotAWrite,
}

/// The `LIMIT` of a chunked statement and the query that counts what is left.
pub fn chunk(sql: &str) -> Result<Chunk, NotChunkable> {
    let tokens = statement_tokens(sql);
    if !is_write(&tokens) {
        return Err(NotChunkable::NotAWrite);
    }
    let depths = depths(&tokens);
    let Some(at) = tokens.iter().position(|t| is(t, "limit")) else {
        return Err(NotChunkable::NoLimit);
    };
    let value = tokens
        .get(at + 1)
        .map(|t| t.text.clone())
        .unwrap_or_default();
    let Ok(limit) = value.parse::<u64>() else {
        return Err(NotChunkable::LimitNotANumber(value));
    };
    if limit == 0 {
        return Err(NotChunkable::LimitNotANumber(value));
    }
    let depth = depths[at];
    // The query the LIMIT bounds: from the `(` that opens its depth, or from the first
    // top-level SELECT (`INSERT … SELECT … LIMIT n`).
    let start = if depth > 0 {
        (0..at)
            .rev()
            .find(|&i| depths[i] == depth - 1 && is(&tokens[i], "("))
            .map(|open| open + 1)
    } else {
        (0..at).find(|&i| depths[i] == 0 && is(&tokens[i], "select"))
    };
    let remaining = start.and_then(|start| count_of_query(&tokens[start..at], &depths[start..at]));
    Ok(Chunk { limit, remaining })
}

/// A `COUNT(*)` of the rows one (unchunked) statement touches, where it can be derived.
pub fn count_query(sql: &str) -> Option<String> {
    let tokens = statement_tokens(sql);
    let depths = depths(&tokens);
    let first = tokens.first()?;
    let top = |i: usize, word: &str| depths[i] == 0 && is(&tokens[i], word);
    match first.text.as_str() {
        "update" => {
            let table_start = if tokens.get(1).is_some_and(|t| is(t, "or")) {
                3
            } else {
                1
            };
            let set = (table_start..tokens.len()).find(|&i| top(i, "set"))?;
            let end = (set..tokens.len())
                .find(|&i| top(i, "returning") || top(i, "order") || top(i, "limit"))
                .unwrap_or(tokens.len());
            // `UPDATE … FROM` joins other tables: the count would need the join.
            if (set..end).any(|i| top(i, "from")) {
                return None;
            }
            let filter = (set..end).find(|&i| top(i, "where"));
            Some(count_from(
                &tokens[table_start..set],
                filter.map(|w| &tokens[w..end]),
            ))
        }
        "delete" => {
            if !tokens.get(1).is_some_and(|t| is(t, "from")) {
                return None;
            }
            let end = (2..tokens.len())
                .find(|&i| top(i, "returning") || top(i, "order") || top(i, "limit"))
                .unwrap_or(tokens.len());
            let filter = (2..end).find(|&i| top(i, "where"));
            let table_end = filter.unwrap_or(end);
            Some(count_from(
                &tokens[2..table_end],
                filter.map(|w| &tokens[w..end]),
            ))
        }
        "insert" | "replace" => {
            let select = (0..tokens.len()).find(|&i| top(i, "select"))?;
            let end = (select..tokens.len())
                .find(|&i| {
                    top(i, "returning")
                        || (top(i, "on") && tokens.get(i + 1).is_some_and(|t| is(t, "conflict")))
                })
                .unwrap_or(tokens.len());
            count_of_query(&tokens[select..end], &depths[select..end])
        }
        _ => None,
    }
}

/// `SELECT COUNT(*) FROM (query)`, the query's own top-level `ORDER BY` dropped.
fn count_of_query(query: &[Token], depths: &[usize]) -> Option<String> {
    let base = *depths.first()?;
    if !query.first().is_some_and(|t| is(t, "select")) {
        return None;
    }
    let end = (0..query.len())
        .find(|&i| {
            depths[i] == base
                && is(&query[i], "order")
                && query.get(i + 1).is_some_and(|t| is(t, "by"))
        })
        .unwrap_or(query.len());
    Some(format!(
        "SELECT COUNT(*) FROM ({})",
        join_tokens(&query[..end])
    ))
}

fn count_from(table: &[Token], filter: Option<&[Token]>) -> String {
    let mut out = format!("SELECT COUNT(*) FROM {}", join_tokens(table));
    if let Some(filter) = filter {
        out.push(' ');
        out.push_str(&join_tokens(filter));
    }
    out
}

/// The statement's tokens, without its terminating `;`; a second statement makes it empty
/// (a step's statement is one statement).
fn statement_tokens(sql: &str) -> Vec<Token> {
    let mut tokens = tokenize(sql);
    while tokens.last().is_some_and(|t| is(t, ";")) {
        tokens.pop();
    }
    if tokens.iter().any(|t| is(t, ";")) {
        return Vec::new();
    }
    tokens
}

fn is_write(tokens: &[Token]) -> bool {
    tokens
        .first()
        .is_some_and(|t| ["insert", "update", "delete", "replace"].contains(&t.text.as_str()))
}

fn is(token: &Token, word: &str) -> bool {
    !token.literal && token.text == word
}

/// The parenthesis depth each token is at (a `(` is at the depth outside it).
fn depths(tokens: &[Token]) -> Vec<usize> {
    let mut depth = 0usize;
    tokens
        .iter()
        .map(|token| match token.text.as_str() {
            "(" if !token.literal => {
                depth += 1;
                depth - 1
            }
            ")" if !token.literal => {
                depth = depth.saturating_sub(1);
                depth
            }
            _ => depth,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_update_counts_the_rows_its_limited_subquery_selects() {
        let chunk = chunk(
            "UPDATE posts SET slug = lower(title)\nWHERE id IN (SELECT id FROM posts WHERE slug IS NULL ORDER BY id LIMIT 500);",
        )
        .unwrap();
        assert_eq!(chunk.limit, 500);
        assert_eq!(
            chunk.remaining.as_deref(),
            Some("SELECT COUNT(*) FROM (select id from posts where slug is null)")
        );
    }

    #[test]
    fn a_chunked_insert_select_counts_its_select() {
        let chunk = chunk(
            "INSERT INTO metrics (agent_id, total) SELECT a.id, count(*) FROM agents a JOIN runs r ON r.agent_id = a.id WHERE NOT EXISTS (SELECT 1 FROM metrics m WHERE m.agent_id = a.id) GROUP BY a.id LIMIT 200",
        )
        .unwrap();
        assert_eq!(chunk.limit, 200);
        assert_eq!(
            chunk.remaining.as_deref(),
            Some(
                "SELECT COUNT(*) FROM (select a.id, count(*) from agents a join runs r on r.agent_id = a.id where not exists (select 1 from metrics m where m.agent_id = a.id) group by a.id)"
            )
        );
    }

    #[test]
    fn refuses_what_cannot_be_chunked() {
        assert_eq!(
            chunk("UPDATE t SET x = 1 WHERE x IS NULL"),
            Err(NotChunkable::NoLimit)
        );
        assert_eq!(
            chunk("DELETE FROM t WHERE id IN (SELECT id FROM t LIMIT ?)"),
            Err(NotChunkable::LimitNotANumber("?".to_owned()))
        );
        assert_eq!(
            chunk("SELECT * FROM t LIMIT 5"),
            Err(NotChunkable::NotAWrite)
        );
        // Two statements are not one chunk.
        assert_eq!(
            chunk("UPDATE t SET x = 1 WHERE id IN (SELECT id FROM t LIMIT 5); DELETE FROM t"),
            Err(NotChunkable::NotAWrite)
        );
    }

    #[test]
    fn counts_updates_deletes_and_insert_selects() {
        assert_eq!(
            count_query(
                "UPDATE OR IGNORE users SET plan = 'free' WHERE plan IS NULL AND name <> 'it''s';"
            )
            .as_deref(),
            Some("SELECT COUNT(*) FROM users where plan is null and name <> 'it''s'")
        );
        assert_eq!(
            count_query("DELETE FROM \"Old Sessions\" WHERE expires < unixepoch() RETURNING id")
                .as_deref(),
            Some("SELECT COUNT(*) FROM \"old sessions\" where expires < unixepoch()")
        );
        assert_eq!(
            count_query("update posts set views = 0").as_deref(),
            Some("SELECT COUNT(*) FROM posts")
        );
        assert_eq!(
            count_query("INSERT INTO b SELECT * FROM a WHERE true ON CONFLICT DO NOTHING")
                .as_deref(),
            Some("SELECT COUNT(*) FROM (select * from a where true)")
        );
        assert_eq!(
            count_query("UPDATE t SET x = s.x FROM s WHERE s.id = t.id"),
            None
        );
        assert_eq!(count_query("CREATE INDEX i ON t (x)"), None);
        assert_eq!(count_query("INSERT INTO t VALUES (1)"), None);
    }

    #[test]
    fn derived_queries_run_on_sqlite() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch(
            "CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT, slug TEXT);
             INSERT INTO posts (title) VALUES ('A'), ('B'), ('C');
             UPDATE posts SET slug = 'a' WHERE id = 1;",
        )
        .unwrap();
        let count = |sql: &str| -> i64 { db.query_row(sql, [], |row| row.get(0)).unwrap() };
        let remaining = chunk(
            "UPDATE posts SET slug = lower(title) WHERE id IN (SELECT id FROM posts WHERE slug IS NULL LIMIT 1)",
        )
        .unwrap()
        .remaining
        .unwrap();
        assert_eq!(count(&remaining), 2);
        assert_eq!(
            count(&count_query("DELETE FROM posts WHERE slug IS NOT NULL").unwrap()),
            1
        );
    }
}
