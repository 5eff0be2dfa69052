//! The promotion lock: a lease row in the target database itself, so two machines racing to
//! promote to the same database see each other.
//!
//! Taken atomically in one batch (expired leases are cleared, then `INSERT OR IGNORE`, then the
//! row is read back); renewed by every migration's batch, whose first statements fail the whole
//! batch when the lease is no longer ours; released at the end.

use serde::Serialize;

use crate::backend::{Backend, BackendError, Rows, Statement, Value};

pub const LOCK_TABLE: &str = "_d1ctl_lock";
/// A table that can never hold a row: inserting into it aborts a batch whose lease was lost.
pub const LEASE_GUARD_TABLE: &str = "_d1ctl_lease_guard";
/// How long a lease lasts without renewal.
pub const LEASE_SECONDS: i64 = 120;

/// Who holds (or wants) the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// Random per run.
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub command: String,
}

impl Holder {
    pub fn for_this_process(command: &str) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            pid: std::process::id(),
            command: command.to_owned(),
        }
    }

    /// Whether this holder is a process on this host that no longer exists, so its lease can be
    /// taken over at once instead of waiting for it to expire.
    pub fn is_dead_local_process(&self) -> bool {
        let this_host = gethostname::gethostname().to_string_lossy().into_owned();
        self.host == this_host
            && self.pid != std::process::id()
            && cfg!(target_os = "linux")
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// The lock row as read from a database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub holder: Holder,
    /// Unix seconds, by the database's clock.
    pub acquired_at: i64,
    pub expires_at: i64,
    /// The database's clock when the row was read.
    pub now: i64,
}

impl Lease {
    pub fn expired(&self) -> bool {
        self.expires_at < self.now
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("`{env}` is locked by {} on {} (pid {}, `{}`) since {} s, for {} s more",
        .lease.holder.id, .lease.holder.host, .lease.holder.pid, .lease.holder.command,
        .lease.now - .lease.acquired_at, .lease.expires_at - .lease.now)]
    Held { env: String, lease: Lease },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

pub fn create_statements() -> Vec<Statement> {
    vec![
        Statement::new(format!(
            "CREATE TABLE IF NOT EXISTS {LOCK_TABLE} (\n  id INTEGER PRIMARY KEY CHECK (id = 1),\n  holder TEXT NOT NULL,\n  host TEXT NOT NULL,\n  pid INTEGER NOT NULL,\n  command TEXT NOT NULL,\n  acquired_at INTEGER NOT NULL,\n  expires_at INTEGER NOT NULL\n)"
        )),
        Statement::new(format!(
            "CREATE TABLE IF NOT EXISTS {LEASE_GUARD_TABLE} (lease_lost INTEGER CHECK (lease_lost IS NULL))"
        )),
    ]
}

/// Reads the lock row (with the database's clock).
pub fn read_statement() -> Statement {
    Statement::new(format!(
        "SELECT holder, host, pid, command, acquired_at, expires_at, unixepoch() AS now FROM {LOCK_TABLE}"
    ))
}

pub fn parse(rows: &Rows) -> Option<Lease> {
    let row = rows.rows.first()?;
    let text = |column: &str| rows.get(row, column).to_text().unwrap_or_default();
    let number = |column: &str| rows.get(row, column).as_i64().unwrap_or_default();
    Some(Lease {
        holder: Holder {
            id: text("holder"),
            host: text("host"),
            pid: u32::try_from(number("pid")).unwrap_or_default(),
            command: text("command"),
        },
        acquired_at: number("acquired_at"),
        expires_at: number("expires_at"),
        now: number("now"),
    })
}

/// Takes the lock in one batch; a live lease held by someone else is an error naming them. A
/// lease of a dead process on this host is taken over at once (the returned lease says whose).
pub async fn acquire(
    backend: &dyn Backend,
    env: &str,
    me: &Holder,
) -> Result<Option<Lease>, LockError> {
    acquire_with(backend, env, me, &[]).await
}

/// [`acquire`], with `extra` statements run in the same batch right after the lock row is
/// written (they must make themselves conditional on holding it).
pub async fn acquire_with(
    backend: &dyn Backend,
    env: &str,
    me: &Holder,
    extra: &[Statement],
) -> Result<Option<Lease>, LockError> {
    let mut statements = create_statements();
    statements.push(read_statement());
    statements.push(Statement::new(format!(
        "DELETE FROM {LOCK_TABLE} WHERE expires_at < unixepoch()"
    )));
    statements.push(insert_statement(me));
    statements.extend_from_slice(extra);
    statements.push(read_statement());
    let rows = backend.batch(&statements).await?;
    let before = parse(&rows[2]);
    let after = parse(&rows[rows.len() - 1]);
    match after {
        Some(lease) if lease.holder.id == me.id => {
            Ok(before.filter(|previous| previous.holder.id != me.id))
        }
        Some(lease) if lease.holder.is_dead_local_process() => {
            // Its process is gone: nothing can still be writing under that lease.
            let mut statements = vec![
                Statement::with_params(
                    format!("DELETE FROM {LOCK_TABLE} WHERE holder = ?"),
                    vec![Value::from(lease.holder.id.as_str())],
                ),
                insert_statement(me),
            ];
            statements.extend_from_slice(extra);
            statements.push(read_statement());
            let rows = backend.batch(&statements).await?;
            match parse(&rows[rows.len() - 1]) {
                Some(now) if now.holder.id == me.id => Ok(Some(lease)),
                Some(other) => Err(LockError::Held {
                    env: env.to_owned(),
                    lease: other,
                }),
                None => Err(LockError::Backend(BackendError::Statement {
                    index: None,
                    message: "the lock row vanished while taking it over".to_owned(),
                })),
            }
        }
        Some(lease) => Err(LockError::Held {
            env: env.to_owned(),
            lease,
        }),
        None => Err(LockError::Backend(BackendError::Statement {
            index: None,
            message: "the lock row could not be written".to_owned(),
        })),
    }
}

fn insert_statement(me: &Holder) -> Statement {
    Statement::with_params(
        format!(
            "INSERT OR IGNORE INTO {LOCK_TABLE} (id, holder, host, pid, command, acquired_at, expires_at) VALUES (1, ?, ?, ?, ?, unixepoch(), unixepoch() + {LEASE_SECONDS})"
        ),
        vec![
            Value::from(me.id.as_str()),
            Value::from(me.host.as_str()),
            Value::Integer(i64::from(me.pid)),
            Value::from(me.command.as_str()),
        ],
    )
}

/// The first statements of every batch written under the lock: renew the lease, and abort the
/// whole batch (CHECK constraint) when the lease is no longer ours.
pub fn guard_statements(me: &Holder) -> Vec<Statement> {
    vec![
        Statement::with_params(
            format!(
                "INSERT INTO {LEASE_GUARD_TABLE} (lease_lost) SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM {LOCK_TABLE} WHERE holder = ?)"
            ),
            vec![Value::from(me.id.as_str())],
        ),
        Statement::with_params(
            format!(
                "UPDATE {LOCK_TABLE} SET expires_at = unixepoch() + {LEASE_SECONDS} WHERE holder = ?"
            ),
            vec![Value::from(me.id.as_str())],
        ),
    ]
}

/// Releases our lease (a no-op when it is not ours any more).
pub fn release_statement(me: &Holder) -> Statement {
    Statement::with_params(
        format!("DELETE FROM {LOCK_TABLE} WHERE holder = ?"),
        vec![Value::from(me.id.as_str())],
    )
}

/// Releases whatever lease has the id `id` (the operator's `lock release --id`).
pub async fn force_release(backend: &dyn Backend, id: &str) -> Result<bool, BackendError> {
    let rows = backend
        .batch(&[
            Statement::with_params(
                format!("DELETE FROM {LOCK_TABLE} WHERE holder = ?"),
                vec![Value::from(id)],
            ),
            Statement::new("SELECT changes() AS removed"),
        ])
        .await?;
    Ok(rows[1].rows.first().and_then(|row| row[0].as_i64()) == Some(1))
}

/// Reads the lock, if the table exists.
pub async fn status(backend: &dyn Backend) -> Result<Option<Lease>, BackendError> {
    match backend.read(&[read_statement()]).await {
        Ok(rows) => Ok(parse(&rows[0])),
        Err(error) if error.is_missing_table().is_some() => Ok(None),
        Err(error) => Err(error),
    }
}
