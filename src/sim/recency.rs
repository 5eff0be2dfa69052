//! Which file-backed databases keep an open SQLite connection: the most recently used ones, up
//! to a limit, so a fleet of thousands of databases does not hold thousands of open files.
//! In-memory databases never come here: closing one would lose it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError, Weak};

use crate::sim::engine::Database;

/// How many file-backed databases stay open at once by default.
pub(crate) const OPEN_DATABASES: usize = 256;

#[derive(Default)]
struct Recency {
    clock: u64,
    /// uuid → when it was last used.
    last_used: HashMap<String, u64>,
    /// When → (uuid, database), oldest first.
    by_age: BTreeMap<u64, (String, Weak<Database>)>,
}

/// The open databases, least recently used first.
pub(crate) struct OpenDatabases {
    limit: usize,
    state: Mutex<Recency>,
}

impl OpenDatabases {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            state: Mutex::new(Recency::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Recency> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that `database` (open now) was just used, and closes the least recently used
    /// others beyond the limit. A database busy in a request is skipped: it is closed at a
    /// later use of another one, once idle. Callers must not hold any database's lock (this
    /// only tries theirs), so no two locks are ever waited for in opposite orders.
    pub(crate) fn used(&self, uuid: &str, database: &Weak<Database>) {
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        if let Some(previous) = state.last_used.insert(uuid.to_owned(), now) {
            state.by_age.remove(&previous);
        }
        state
            .by_age
            .insert(now, (uuid.to_owned(), Weak::clone(database)));
        let mut excess = state.by_age.len().saturating_sub(self.limit);
        if excess == 0 {
            return;
        }
        let oldest: Vec<u64> = state
            .by_age
            .keys()
            .copied()
            .filter(|age| *age != now)
            .collect();
        for age in oldest {
            if excess == 0 {
                break;
            }
            let Some((uuid, weak)) = state.by_age.get(&age) else {
                continue;
            };
            let closed = weak
                .upgrade()
                .is_none_or(|database| database.close_if_idle());
            if closed {
                let uuid = uuid.clone();
                state.by_age.remove(&age);
                state.last_used.remove(&uuid);
                excess -= 1;
            }
        }
    }

    /// Forgets a deleted database.
    pub(crate) fn forget(&self, uuid: &str) {
        let mut state = self.lock();
        if let Some(age) = state.last_used.remove(uuid) {
            state.by_age.remove(&age);
        }
    }

    /// How many databases are open (as far as this list knows).
    #[cfg(test)]
    pub(crate) fn open_count(&self) -> usize {
        self.lock().by_age.len()
    }
}
