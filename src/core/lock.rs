//! The promotion lock: a lease row in the target database itself, so two machines racing to
//! promote to the same database see each other.
//!
//! Taken atomically in one batch (expired leases are cleared, then `INSERT OR IGNORE`, then the
//! row is read back); renewed by every migration's batch, whose first statements fail the whole
//! batch when the lease is no longer ours; released at the end.
//!
//! A live lease is taken over before it expires only when its holder is provably dead (see
//! [`liveness`]): same host, same boot, same pid namespace, and its pid gone or reused by a
//! process started after it. A hostname alone proves nothing: containers often share one.

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
    /// Linux's boot id of the holder's machine (`/proc/sys/kernel/random/boot_id`); `None` in a
    /// lease written by an older d1ctl or off Linux.
    pub boot_id: Option<String>,
    /// The holder's pid namespace (`readlink /proc/self/ns/pid`, e.g. `pid:[4026531836]`).
    pub pid_namespace: Option<String>,
    /// The holder's start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub started: Option<u64>,
}

impl Holder {
    pub fn for_this_process(command: &str) -> Self {
        let here = LocalFacts::of_this_machine();
        let pid = std::process::id();
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            host: here.host,
            pid,
            command: command.to_owned(),
            boot_id: here.boot_id,
            pid_namespace: here.pid_namespace,
            started: match probe_pid(pid) {
                PidProbe::Running { started } => Some(started),
                PidProbe::Gone | PidProbe::Unknown => None,
            },
        }
    }

    /// Whether this holder is provably a process of this machine that no longer runs, so its
    /// lease can be taken over at once instead of waiting for it to expire.
    pub fn is_dead_local_process(&self) -> bool {
        matches!(self.liveness_here(), Liveness::Dead(_))
    }

    /// [`liveness`] of this holder, judged from this process.
    pub fn liveness_here(&self) -> Liveness {
        liveness(self, &LocalFacts::of_this_machine(), &probe_pid)
    }

    /// The `host` column's text. The lock table predates the boot id, pid namespace and start
    /// time, and lives on in users' databases (created with `IF NOT EXISTS`, kept after release),
    /// so those facts ride in the existing `host` TEXT column instead of new columns (an `ALTER
    /// TABLE ADD COLUMN` fails the whole batch once the column exists, and SQLite has no `IF NOT
    /// EXISTS` for it): `HOSTNAME boot_id=… pid_namespace=… started=…`. An older d1ctl reading
    /// such a row sees a host that is never its own, so it never takes such a lease over as dead;
    /// a row without the facts (an older d1ctl's) is never provably dead here.
    fn host_column(&self) -> String {
        let mut text = self.host.clone();
        for (key, value) in [
            (BOOT_ID_KEY, self.boot_id.clone()),
            (PID_NAMESPACE_KEY, self.pid_namespace.clone()),
            (STARTED_KEY, self.started.map(|started| started.to_string())),
        ] {
            if let Some(value) = value.filter(|v| !v.is_empty() && !v.contains(char::is_whitespace))
            {
                text.push_str(&format!(" {key}={value}"));
            }
        }
        text
    }

    /// The holder of a lock row, its `host` column split back into the hostname and the facts.
    fn from_columns(id: String, host_column: &str, pid: u32, command: String) -> Self {
        let mut holder = Self {
            id,
            host: String::new(),
            pid,
            command,
            boot_id: None,
            pid_namespace: None,
            started: None,
        };
        let mut words: Vec<&str> = host_column.split(' ').collect();
        while words.len() > 1 {
            let Some((key, value)) = words[words.len() - 1].split_once('=') else {
                break;
            };
            match key {
                BOOT_ID_KEY => holder.boot_id = Some(value.to_owned()),
                PID_NAMESPACE_KEY => holder.pid_namespace = Some(value.to_owned()),
                STARTED_KEY => holder.started = value.parse().ok(),
                _ => break,
            }
            words.pop();
        }
        holder.host = words.join(" ");
        holder
    }
}

const BOOT_ID_KEY: &str = "boot_id";
const PID_NAMESPACE_KEY: &str = "pid_namespace";
const STARTED_KEY: &str = "started";

/// What the takeover rule needs to know of the machine and pid namespace it runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFacts {
    pub host: String,
    pub boot_id: Option<String>,
    pub pid_namespace: Option<String>,
}

impl LocalFacts {
    /// This process's facts; off Linux (or without `/proc`) only the hostname is known.
    pub fn of_this_machine() -> Self {
        Self {
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            boot_id: fs_err::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|id| id.trim().to_owned())
                .filter(|id| !id.is_empty()),
            pid_namespace: fs_err::read_link("/proc/self/ns/pid")
                .ok()
                .map(|link| link.display().to_string()),
        }
    }
}

/// What runs at a pid of this pid namespace now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidProbe {
    /// No such process (or only its zombie, which can write nothing).
    Gone,
    /// A process that started `started` clock ticks after boot.
    Running { started: u64 },
    /// `/proc` could not tell.
    Unknown,
}

/// Reads `/proc/PID/stat`: its state (field 3) and start time (field 22). The command name
/// (field 2) is in parentheses and may hold spaces or parentheses, so fields are counted after
/// the last `)`.
pub fn probe_pid(pid: u32) -> PidProbe {
    let text = match fs_err::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return if std::path::Path::new("/proc/self/stat").exists() {
                PidProbe::Gone
            } else {
                PidProbe::Unknown
            };
        }
        Err(_) => return PidProbe::Unknown,
    };
    let Some((_, after_name)) = text.rsplit_once(')') else {
        return PidProbe::Unknown;
    };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (the state), so field 22 is fields[19].
    match (fields.first(), fields.get(19).and_then(|f| f.parse().ok())) {
        (Some(&("Z" | "X")), _) => PidProbe::Gone,
        (Some(_), Some(started)) => PidProbe::Running { started },
        _ => PidProbe::Unknown,
    }
}

/// Whether a lease's holder can be proven dead from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// Provably gone: the text says why.
    Dead(String),
    /// It may still be running (or nothing proves otherwise): the text says why.
    MaybeAlive(String),
}

/// The takeover rule, pure over the holder's recorded facts, this process's facts and what runs
/// at the holder's pid here. Dead only when every fact matches (same host, same boot, same pid
/// namespace) and the pid is gone or now belongs to a process started after the holder.
pub fn liveness(holder: &Holder, here: &LocalFacts, probe: &dyn Fn(u32) -> PidProbe) -> Liveness {
    let maybe = |why: String| Liveness::MaybeAlive(why);
    let Some(boot_id) = &holder.boot_id else {
        return maybe(
            "the lease records no boot id (an older d1ctl wrote it), so only its expiry frees it"
                .to_owned(),
        );
    };
    if holder.host != here.host {
        return maybe(format!("it runs on another host, `{}`", holder.host));
    }
    if here.boot_id.as_ref() != Some(boot_id) {
        return maybe(format!(
            "it ran under another boot id ({boot_id}): another boot, or another machine named `{}`",
            holder.host
        ));
    }
    match (&holder.pid_namespace, &here.pid_namespace) {
        (Some(theirs), Some(ours)) if theirs == ours => {}
        (Some(theirs), _) => {
            return maybe(format!(
                "it runs in another pid namespace ({theirs}), e.g. another container on this host"
            ));
        }
        (None, _) => return maybe("the lease records no pid namespace".to_owned()),
    }
    match (probe(holder.pid), holder.started) {
        (PidProbe::Gone, _) => Liveness::Dead(format!("pid {} no longer exists", holder.pid)),
        (PidProbe::Running { started }, Some(theirs)) if started > theirs => {
            Liveness::Dead(format!(
                "pid {} now belongs to a process started after it",
                holder.pid
            ))
        }
        (PidProbe::Running { .. }, _) => maybe(format!("pid {} is still running", holder.pid)),
        (PidProbe::Unknown, _) => maybe(format!("pid {} could not be inspected", holder.pid)),
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

/// Why a live lease was not taken over, for messages.
fn not_taken_over(lease: &Lease) -> String {
    match lease.holder.liveness_here() {
        Liveness::MaybeAlive(why) | Liveness::Dead(why) => why,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("`{env}` is locked by {} on {} (pid {}, `{}`) since {} s, for {} s more; not taken over: {}",
        .lease.holder.id, .lease.holder.host, .lease.holder.pid, .lease.holder.command,
        .lease.now - .lease.acquired_at, .lease.expires_at - .lease.now, not_taken_over(.lease))]
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
        holder: Holder::from_columns(
            text("holder"),
            &text("host"),
            u32::try_from(number("pid")).unwrap_or_default(),
            text("command"),
        ),
        acquired_at: number("acquired_at"),
        expires_at: number("expires_at"),
        now: number("now"),
    })
}

/// Takes the lock in one batch; a live lease held by someone else is an error naming them. A
/// lease whose holder is provably dead ([`liveness`]) is taken over at once (the returned lease
/// says whose). `extra` statements run in the same batch right after the lock row is written
/// (they must make themselves conditional on holding it: the write engine's session record).
pub async fn acquire(
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
                None => Err(LockError::Backend(BackendError::sql(
                    None,
                    "the lock row vanished while taking it over".to_owned(),
                ))),
            }
        }
        Some(lease) => Err(LockError::Held {
            env: env.to_owned(),
            lease,
        }),
        None => Err(LockError::Backend(BackendError::sql(
            None,
            "the lock row could not be written".to_owned(),
        ))),
    }
}

/// Takes a free (or expired) lock for `me` inside a larger batch: the batch's next statements
/// are the lease guard, which aborts it when someone else holds the lock.
pub fn take_statements(me: &Holder) -> Vec<Statement> {
    vec![
        Statement::new(format!(
            "DELETE FROM {LOCK_TABLE} WHERE expires_at < unixepoch()"
        )),
        insert_statement(me),
    ]
}

fn insert_statement(me: &Holder) -> Statement {
    Statement::with_params(
        format!(
            "INSERT OR IGNORE INTO {LOCK_TABLE} (id, holder, host, pid, command, acquired_at, expires_at) VALUES (1, ?, ?, ?, ?, unixepoch(), unixepoch() + {LEASE_SECONDS})"
        ),
        vec![
            Value::from(me.id.as_str()),
            Value::from(me.host_column()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn here() -> LocalFacts {
        LocalFacts {
            host: "builder".to_owned(),
            boot_id: Some("boot-a".to_owned()),
            pid_namespace: Some("pid:[4026531836]".to_owned()),
        }
    }

    fn holder() -> Holder {
        Holder {
            id: "holder-1".to_owned(),
            host: "builder".to_owned(),
            pid: 4242,
            command: "promote --to production".to_owned(),
            boot_id: Some("boot-a".to_owned()),
            pid_namespace: Some("pid:[4026531836]".to_owned()),
            started: Some(1000),
        }
    }

    fn gone(_: u32) -> PidProbe {
        PidProbe::Gone
    }

    fn is_dead(holder: &Holder, here: &LocalFacts, probe: &dyn Fn(u32) -> PidProbe) -> bool {
        matches!(liveness(holder, here, probe), Liveness::Dead(_))
    }

    #[test]
    fn a_gone_pid_of_this_boot_and_namespace_is_dead() {
        assert_eq!(
            liveness(&holder(), &here(), &gone),
            Liveness::Dead("pid 4242 no longer exists".to_owned())
        );
    }

    #[test]
    fn a_pid_reused_by_a_later_process_is_dead() {
        let later = |_: u32| PidProbe::Running { started: 1001 };
        assert!(is_dead(&holder(), &here(), &later));
    }

    #[test]
    fn a_running_holder_is_alive() {
        let same = |_: u32| PidProbe::Running { started: 1000 };
        assert!(!is_dead(&holder(), &here(), &same));
        // A process older than the holder at its pid cannot be a reuse: nothing proves death.
        let older = |_: u32| PidProbe::Running { started: 10 };
        assert!(!is_dead(&holder(), &here(), &older));
        assert!(!is_dead(&holder(), &here(), &|_| PidProbe::Unknown));
    }

    #[test]
    fn another_boot_namespace_or_host_proves_nothing() {
        let mut other_boot = here();
        other_boot.boot_id = Some("boot-b".to_owned());
        assert!(!is_dead(&holder(), &other_boot, &gone));
        let mut unknown_boot = here();
        unknown_boot.boot_id = None;
        assert!(!is_dead(&holder(), &unknown_boot, &gone));
        let mut other_namespace = here();
        other_namespace.pid_namespace = Some("pid:[4026532999]".to_owned());
        assert!(!is_dead(&holder(), &other_namespace, &gone));
        let mut other_host = here();
        other_host.host = "laptop".to_owned();
        assert!(!is_dead(&holder(), &other_host, &gone));
    }

    #[test]
    fn a_lease_of_an_older_d1ctl_is_never_provably_dead() {
        let old =
            Holder::from_columns("holder-1".to_owned(), "builder", 4242, "promote".to_owned());
        assert_eq!(old.boot_id, None);
        let Liveness::MaybeAlive(why) = liveness(&old, &here(), &gone) else {
            panic!("an old lease was judged dead");
        };
        assert!(why.contains("no boot id"), "{why}");
        let mut no_namespace = holder();
        no_namespace.pid_namespace = None;
        assert!(!is_dead(&no_namespace, &here(), &gone));
    }

    #[test]
    fn the_host_column_round_trips_and_stays_a_hostname_for_old_rows() {
        let holder = holder();
        let column = holder.host_column();
        assert_eq!(
            column,
            "builder boot_id=boot-a pid_namespace=pid:[4026531836] started=1000"
        );
        let parsed = Holder::from_columns(
            holder.id.clone(),
            &column,
            holder.pid,
            holder.command.clone(),
        );
        assert_eq!(parsed, holder);
        let odd = Holder::from_columns("x".to_owned(), "my host a=b", 1, "c".to_owned());
        assert_eq!((odd.host.as_str(), odd.boot_id), ("my host a=b", None));
    }

    #[test]
    fn this_process_reads_its_own_facts() {
        let me = Holder::for_this_process("test");
        if cfg!(target_os = "linux") {
            assert!(me.boot_id.is_some() && me.pid_namespace.is_some() && me.started.is_some());
            // Judged from itself, a running process is never dead.
            assert!(!me.is_dead_local_process());
        }
    }
}
