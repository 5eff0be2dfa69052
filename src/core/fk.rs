//! What deleting rows does to other tables through their foreign keys.
//!
//! On D1 foreign keys are always on: `PRAGMA foreign_keys = off` is ignored inside a migration,
//! and `PRAGMA defer_foreign_keys = on` postpones constraint *checks* only. `DROP TABLE` runs an
//! implicit `DELETE`, and every child's `ON DELETE` action fires, deferred or not
//! (`../shared/reference/d1-platform.md` §10). Lint and the row guard both reason with this one
//! model: which tables a deletion reaches, through which column, with which action.

use std::collections::{BTreeSet, VecDeque};

use serde::Serialize;

use crate::core::schema::Schema;

/// A child's `ON DELETE` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The child's rows are deleted with the parent's.
    Cascade,
    /// The child's key columns become NULL.
    SetNull,
    /// The child's key columns take their default.
    SetDefault,
    /// Checked when the statement ends (or at commit when deferred): a child row left
    /// pointing at nothing fails it.
    NoAction,
    /// Checked at once, deferred or not.
    Restrict,
}

impl Action {
    pub fn parse(on_delete: &str) -> Self {
        match on_delete.to_ascii_uppercase().as_str() {
            "CASCADE" => Action::Cascade,
            "SET NULL" => Action::SetNull,
            "SET DEFAULT" => Action::SetDefault,
            "RESTRICT" => Action::Restrict,
            _ => Action::NoAction,
        }
    }

    pub fn sql(self) -> &'static str {
        match self {
            Action::Cascade => "ON DELETE CASCADE",
            Action::SetNull => "ON DELETE SET NULL",
            Action::SetDefault => "ON DELETE SET DEFAULT",
            Action::NoAction => "REFERENCES without an ON DELETE action",
            Action::Restrict => "ON DELETE RESTRICT",
        }
    }

    /// Whether the action changes the child's data (rather than failing the statement).
    pub fn loses_data(self) -> bool {
        matches!(self, Action::Cascade | Action::SetNull | Action::SetDefault)
    }
}

/// One table reached by a deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Effect {
    /// The child table (lower-cased).
    pub table: String,
    /// Its key columns that reference `parent`.
    pub columns: Vec<String>,
    pub parent: String,
    pub action: Action,
    /// 1 for a direct child of a deleted table, 2 for a grandchild, …
    pub depth: usize,
}

impl Effect {
    /// `posts.user_id (ON DELETE CASCADE on users)`.
    pub fn describe(&self) -> String {
        format!(
            "`{}.{}` ({} → `{}`)",
            self.table,
            self.columns.join(", "),
            self.action.sql(),
            self.parent
        )
    }
}

/// Direct references to `parent` from other tables.
pub fn children<'a>(schema: &'a Schema, parent: &str) -> impl Iterator<Item = Effect> + 'a {
    let parent = parent.to_ascii_lowercase();
    schema.tables.values().flat_map(move |child| {
        let parent = parent.clone();
        child
            .foreign_keys
            .iter()
            .filter(move |key| key.references.eq_ignore_ascii_case(&parent) && child.name != parent)
            .map(move |key| Effect {
                table: child.name.clone(),
                columns: key.columns.clone(),
                parent: key.references.to_ascii_lowercase(),
                action: Action::parse(&key.on_delete),
                depth: 1,
            })
    })
}

/// Every table a deletion of all rows of `deleted` reaches: cascades are followed to the
/// grandchildren; a `SET NULL`/`SET DEFAULT` child keeps its rows, so the walk stops there;
/// `NO ACTION`/`RESTRICT` children are listed (they make the deletion fail when they hold rows).
/// Tables in `deleted` themselves are not listed.
pub fn deletion_effects(schema: &Schema, deleted: &[String]) -> Vec<Effect> {
    let mut effects = Vec::new();
    let mut emptied: BTreeSet<String> = deleted.iter().map(|t| t.to_ascii_lowercase()).collect();
    let mut queue: VecDeque<(String, usize)> = emptied.iter().map(|t| (t.clone(), 0)).collect();
    while let Some((parent, depth)) = queue.pop_front() {
        for mut effect in children(schema, &parent) {
            if deleted
                .iter()
                .any(|d| d.eq_ignore_ascii_case(&effect.table))
            {
                continue;
            }
            effect.depth = depth + 1;
            if effect.action == Action::Cascade && emptied.insert(effect.table.clone()) {
                queue.push_back((effect.table.clone(), depth + 1));
            }
            effects.push(effect);
        }
    }
    effects
}

/// The tables that reference `root`, transitively, parents before children: what a rebuild
/// of `root` must copy aside before its `DROP` so that no row is lost.
pub fn family(schema: &Schema, root: &str) -> Vec<String> {
    let mut members: Vec<String> = Vec::new();
    let mut queue = VecDeque::from([root.to_ascii_lowercase()]);
    while let Some(parent) = queue.pop_front() {
        for effect in children(schema, &parent) {
            if effect.table != root.to_ascii_lowercase() && !members.contains(&effect.table) {
                members.push(effect.table.clone());
                queue.push_back(effect.table);
            }
        }
    }
    members
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::schema::{RawObject, Snapshot};

    fn schema(sql: &[&str]) -> Schema {
        let objects = sql
            .iter()
            .enumerate()
            .map(|(i, sql)| RawObject {
                kind: "table".to_owned(),
                name: format!("t{i}"),
                table: format!("t{i}"),
                sql: Some((*sql).to_owned()),
            })
            .collect();
        Schema::build(&Snapshot { objects }, &[]).unwrap()
    }

    const BLOG: &[&str] = &[
        "CREATE TABLE users (id INTEGER PRIMARY KEY)",
        "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE CASCADE)",
        "CREATE TABLE comments (id INTEGER PRIMARY KEY, post_id INTEGER REFERENCES posts(id) ON DELETE CASCADE)",
        "CREATE TABLE likes (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE SET NULL)",
        "CREATE TABLE follows (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id))",
        "CREATE TABLE audits (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE RESTRICT)",
        "CREATE TABLE tags (id INTEGER PRIMARY KEY, comment_id INTEGER REFERENCES comments(id) ON DELETE SET NULL)",
    ];

    #[test]
    fn a_deletion_reaches_children_and_grandchildren_by_action() {
        let effects = deletion_effects(&schema(BLOG), &["users".to_owned()]);
        let found: Vec<(&str, Action, usize)> = effects
            .iter()
            .map(|e| (e.table.as_str(), e.action, e.depth))
            .collect();
        assert_eq!(
            found,
            [
                ("audits", Action::Restrict, 1),
                ("follows", Action::NoAction, 1),
                ("likes", Action::SetNull, 1),
                ("posts", Action::Cascade, 1),
                ("comments", Action::Cascade, 2),
                ("tags", Action::SetNull, 3),
            ]
        );
        assert_eq!(
            effects[2].describe(),
            "`likes.user_id` (ON DELETE SET NULL → `users`)"
        );
    }

    #[test]
    fn the_family_of_a_table_is_every_table_that_references_it() {
        assert_eq!(
            family(&schema(BLOG), "users"),
            ["audits", "follows", "likes", "posts", "comments", "tags"]
        );
        assert!(family(&schema(BLOG), "tags").is_empty());
    }

    #[test]
    fn a_self_reference_is_not_a_child() {
        let tree = schema(&[
            "CREATE TABLE nodes (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES nodes(id) ON DELETE CASCADE)",
        ]);
        assert!(deletion_effects(&tree, &["nodes".to_owned()]).is_empty());
        assert!(family(&tree, "nodes").is_empty());
    }
}
