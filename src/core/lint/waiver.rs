//! `-- d1ctl:allow CODE reason` and `-- d1ctl:allow CODE(table) reason` comments.
//!
//! A waiver with a table covers that table only: it is how a migration says "this table may
//! lose rows, and here is why", to lint and to the row guard alike.

use crate::core::migrations::Migration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiver {
    /// Upper-cased rule code, e.g. `DS105`.
    pub code: String,
    /// Lower-cased table the waiver is limited to.
    pub table: Option<String>,
    pub reason: String,
}

impl Waiver {
    /// Whether this waiver covers `code` on `table` (a finding about no table in particular is
    /// covered by a waiver without a table only).
    pub fn covers(&self, code: &str, table: Option<&str>) -> bool {
        self.code.eq_ignore_ascii_case(code)
            && match (&self.table, table) {
                (None, _) => true,
                (Some(mine), Some(theirs)) => mine.eq_ignore_ascii_case(theirs),
                (Some(_), None) => false,
            }
    }
}

/// Whether a waiver of `code` names `table` itself: what lets a table lose rows. A waiver
/// without a table never does, so no single comment can waive losses everywhere.
pub fn names_table(waivers: &[Waiver], code: &str, table: &str) -> bool {
    waivers.iter().any(|w| {
        w.code.eq_ignore_ascii_case(code)
            && w.table
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(table))
    })
}

/// The waivers in a migration's text, in order.
pub fn parse(text: &str) -> Vec<Waiver> {
    text.lines()
        .filter_map(|line| {
            let rest = line
                .trim()
                .strip_prefix("--")?
                .trim()
                .strip_prefix("d1ctl:allow")?
                .trim();
            let (word, reason) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let (code, table) = match word.split_once('(') {
                Some((code, table)) => (
                    code,
                    Some(
                        table
                            .trim_end_matches(')')
                            .trim_matches(['"', '`'])
                            .to_ascii_lowercase(),
                    ),
                ),
                None => (word, None),
            };
            Some(Waiver {
                code: code.to_ascii_uppercase(),
                table,
                reason: reason.trim().to_owned(),
            })
        })
        .collect()
}

/// The waivers of a migration file (none when it cannot be read).
pub fn of(migration: &Migration) -> Vec<Waiver> {
    fs_err::read_to_string(&migration.path)
        .map(|text| parse(&text))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiver_names_a_code_and_maybe_a_table() {
        let found = parse(
            "-- d1ctl:allow DS102 the legacy table was emptied\n  --d1ctl:allow ds105(Posts) posts are rebuilt nightly\nSELECT 1; -- d1ctl:allow not at line start\n",
        );
        assert_eq!(
            found,
            [
                Waiver {
                    code: "DS102".to_owned(),
                    table: None,
                    reason: "the legacy table was emptied".to_owned()
                },
                Waiver {
                    code: "DS105".to_owned(),
                    table: Some("posts".to_owned()),
                    reason: "posts are rebuilt nightly".to_owned()
                }
            ]
        );
        assert!(found[1].covers("DS105", Some("posts")));
        assert!(!found[1].covers("DS105", Some("likes")));
        assert!(!found[1].covers("DS105", None));
        assert!(found[0].covers("DS102", Some("legacy")));
        assert!(names_table(&found, "DS105", "POSTS"));
        assert!(!names_table(&found, "DS102", "legacy"));
    }
}
