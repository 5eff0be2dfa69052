//! Time-travel bookmarks of a simulated database: one snapshot file per committed change, the
//! lookup of the bookmark at a time, and restores (d1-platform.md §7).
//!
//! Bookmark times are milliseconds, the resolution of the timestamps clients hand back (SQLite's
//! `strftime('%Y-%m-%dT%H:%M:%fZ','now')`, or an ISO 8601 time of their own). §7 says a
//! timestamp restores "the nearest bookmark at or before" it but not what happens when a write
//! commits in the same millisecond as the timestamp; the simulator makes that case impossible
//! instead of guessing. A bookmark is dated one millisecond after its commit finished, and a
//! request on the same database starts only once the clock has reached the newest bookmark's
//! time (a wait of at most a millisecond). So any time read inside a request lies at or after
//! every earlier commit's bookmark and before its own: restoring to a timestamp taken inside a
//! write's batch gives the state before that write, and one taken inside a later request gives
//! the state after it.

use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::d1::sqlite_text::describe;
use crate::sim::clock;
use crate::sim::engine::{Database, Inner, Unavailable};

/// How far ahead of the wall clock the newest bookmark may be for a request to wait for the
/// clock to catch up; further means the clock went backwards, and waiting would hang.
const LONGEST_WAIT_MILLIS: i64 = 2;

/// A time-travel bookmark and the snapshot holding the database as it was then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Bookmark {
    pub(crate) id: String,
    pub(crate) millis: i64,
    pub(crate) sequence: u64,
    /// File name inside the database's snapshot directory.
    pub(crate) snapshot: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RestoreError {
    #[error("no bookmark {0} exists for this database")]
    UnknownBookmark(String),
    #[error("{0}")]
    Failed(String),
}

impl From<Unavailable> for RestoreError {
    fn from(error: Unavailable) -> Self {
        Self::Failed(error.to_string())
    }
}

impl Inner {
    /// Waits until the wall clock reaches the newest bookmark's time, so that no time read by
    /// the coming request can equal or precede it (see the module's comment).
    pub(crate) fn wait_past_last_bookmark(&self) {
        let Some(last) = self.bookmarks.last() else {
            return;
        };
        loop {
            let ahead = last.millis - clock::now_millis();
            if ahead <= 0 || ahead > LONGEST_WAIT_MILLIS {
                return;
            }
            std::thread::sleep(Duration::from_millis(u64::try_from(ahead).unwrap_or(1)));
        }
    }

    /// Snapshots the database and appends a bookmark for it; returns the bookmark. `at` dates
    /// the first bookmark of a database at its creation, which may be long before its first
    /// use; every later one is dated just after the commit it follows.
    pub(crate) fn record_bookmark(
        &mut self,
        uuid: &str,
        at: Option<i64>,
    ) -> Result<String, String> {
        let last = self.bookmarks.last();
        let millis = at
            .unwrap_or_else(|| clock::now_millis() + 1)
            .max(last.map_or(0, |bookmark| bookmark.millis));
        let sequence = last.map_or(1, |bookmark| bookmark.sequence + 1);
        let id = bookmark_id(uuid, millis, sequence);
        let snapshot = format!("{sequence:010}.sqlite");
        let path = self.files.snapshots.join(&snapshot);
        if path.exists() {
            fs_err::remove_file(&path).map_err(|error| error.to_string())?;
        }
        let target = path
            .to_str()
            .ok_or_else(|| format!("snapshot path {} is not UTF-8", path.display()))?;
        self.connection
            .execute("VACUUM INTO ?1", [target])
            .map_err(|error| describe(&error))?;
        self.bookmarks.push(Bookmark {
            id: id.clone(),
            millis,
            sequence,
            snapshot,
        });
        if let Some(file) = &self.files.bookmarks {
            let text = serde_json::to_string(&self.bookmarks).map_err(|error| error.to_string())?;
            let temporary = file.with_extension("json.tmp");
            fs_err::write(&temporary, text).map_err(|error| error.to_string())?;
            fs_err::rename(&temporary, file).map_err(|error| error.to_string())?;
        }
        Ok(id)
    }

    pub(crate) fn newest_bookmark(&self) -> String {
        self.bookmarks
            .last()
            .map(|bookmark| bookmark.id.clone())
            .unwrap_or_default()
    }
}

impl Database {
    /// The newest bookmark.
    pub(crate) fn current_bookmark(&self) -> Result<String, Unavailable> {
        self.with_open(|inner| inner.newest_bookmark())
    }

    /// The newest bookmark taken at or before `millis`.
    pub(crate) fn bookmark_at(&self, millis: i64) -> Result<Option<String>, Unavailable> {
        self.with_open(|inner| {
            inner
                .bookmarks
                .iter()
                .rev()
                .find(|bookmark| bookmark.millis <= millis)
                .map(|bookmark| bookmark.id.clone())
        })
    }

    /// Replaces the database with the snapshot of `bookmark`. Returns (new bookmark, previous
    /// bookmark).
    pub(crate) fn restore(&self, bookmark: &str) -> Result<(String, String), RestoreError> {
        self.with_open(|inner| {
            let target = inner
                .bookmarks
                .iter()
                .find(|candidate| candidate.id == bookmark)
                .cloned()
                .ok_or_else(|| RestoreError::UnknownBookmark(bookmark.to_owned()))?;
            let previous = inner.newest_bookmark();
            let snapshot = inner.files.snapshots.join(&target.snapshot);
            let failed = |error: rusqlite::Error| RestoreError::Failed(describe(&error));
            {
                let source =
                    Connection::open_with_flags(&snapshot, OpenFlags::SQLITE_OPEN_READ_ONLY)
                        .map_err(failed)?;
                crate::d1::authorizer::harden(&source).map_err(failed)?;
                let backup = rusqlite::backup::Backup::new(&source, &mut inner.connection)
                    .map_err(failed)?;
                backup
                    .run_to_completion(256, Duration::ZERO, None)
                    .map_err(failed)?;
            }
            let new = inner
                .record_bookmark(&self.uuid, None)
                .map_err(RestoreError::Failed)?;
            Ok((new, previous))
        })?
    }
}

/// `%08x-%08x-%08x-<32 hex>`: milliseconds (high, low 32 bits), sequence, and a hash. Fixed
/// width hex, so bookmarks sort oldest first.
pub(crate) fn bookmark_id(uuid: &str, millis: i64, sequence: u64) -> String {
    let millis = u64::try_from(millis).unwrap_or(0);
    let mut hasher = Sha256::new();
    hasher.update(format!("{uuid}/{millis}/{sequence}").as_bytes());
    let digest = hex::encode(hasher.finalize());
    format!(
        "{:08x}-{:08x}-{:08x}-{}",
        (millis >> 32) & 0xffff_ffff,
        millis & 0xffff_ffff,
        sequence & 0xffff_ffff,
        &digest[..32]
    )
}

#[cfg(test)]
mod tests {
    use rusqlite::types::Value;

    use super::*;
    use crate::sim::engine::{DatabaseFiles, QueryEntry};

    fn entry(sql: &str) -> QueryEntry {
        QueryEntry {
            sql: sql.to_owned(),
            params: Vec::new(),
        }
    }

    /// Back-to-back writes, many within one millisecond: a time read inside each write's batch
    /// names the bookmark of the write before it, and one read after all of them the last.
    #[test]
    fn a_time_read_inside_a_write_names_the_state_before_it() {
        let snapshots =
            std::env::temp_dir().join(format!("d1ctl-sim-bookmarks-{}", uuid::Uuid::new_v4()));
        let database = Database::new(
            "db",
            DatabaseFiles {
                database: None,
                bookmarks: None,
                snapshots: snapshots.clone(),
            },
            clock::now_millis(),
            None,
        );
        database.execute(&[entry("CREATE TABLE t (n)")]).unwrap();
        let now = "SELECT strftime('%Y-%m-%dT%H:%M:%fZ','now')";
        let mut before_each = Vec::new();
        for number in 1..=40 {
            let bookmark_before = database.current_bookmark().unwrap();
            let outputs = database
                .execute(&[
                    entry(&format!("INSERT INTO t VALUES ({number})")),
                    entry(now),
                ])
                .unwrap();
            let Value::Text(time) = &outputs[1].rows[0][0] else {
                panic!("strftime gave {:?}", outputs[1].rows);
            };
            before_each.push((clock::parse_timestamp(time).unwrap(), bookmark_before));
        }
        for (millis, bookmark_before) in &before_each {
            assert_eq!(
                database.bookmark_at(*millis).unwrap().as_ref(),
                Some(bookmark_before)
            );
        }
        let outputs = database.execute(&[entry(now)]).unwrap();
        let Value::Text(time) = &outputs[0].rows[0][0] else {
            panic!("strftime gave {:?}", outputs[0].rows);
        };
        assert_eq!(
            database
                .bookmark_at(clock::parse_timestamp(time).unwrap())
                .unwrap(),
            Some(database.current_bookmark().unwrap())
        );
        let _ = fs_err::remove_dir_all(snapshots);
    }

    #[test]
    fn bookmarks_sort_by_time_then_sequence() {
        let first = bookmark_id("x", 1_700_000_000_000, 1);
        let second = bookmark_id("x", 1_700_000_000_000, 2);
        let third = bookmark_id("x", 1_700_000_000_001, 3);
        assert!(first < second && second < third);
        assert_eq!(first.len(), 8 * 3 + 32 + 3);
        assert!(first.starts_with("0000018b-cfe56800-00000001-"));
    }
}
