//! What a write session leaves on its target so that `rollback --last` can tell the truth:
//! a session row written with the lock (so a session that failed before its first unit is
//! still known), and the rollback point, written atomically with the first unit.

use serde::Serialize;

use crate::backend::{Backend, BackendError, RollbackPoint, Rows, Statement, Value};

/// One row per write session, newest last; `point` stays NULL until the first unit commits.
pub const SESSIONS_TABLE: &str = "_d1ctl_sessions";
/// d1ctl's record of the rollback points write sessions took (kept from d1ctl's first
/// releases, which wrote only this table).
pub const ROLLBACK_TABLE: &str = "_d1ctl_rollback_points";

fn create_sessions() -> Statement {
    Statement::new(format!(
        "CREATE TABLE IF NOT EXISTS {SESSIONS_TABLE} (\n  id INTEGER PRIMARY KEY AUTOINCREMENT,\n  holder TEXT NOT NULL,\n  command TEXT NOT NULL,\n  started_at TEXT NOT NULL,\n  point_kind TEXT,\n  point TEXT\n)"
    ))
}

fn create_points() -> Statement {
    Statement::new(format!(
        "CREATE TABLE IF NOT EXISTS {ROLLBACK_TABLE} (\n  id INTEGER PRIMARY KEY AUTOINCREMENT,\n  kind TEXT NOT NULL,\n  point TEXT NOT NULL,\n  taken_at TEXT NOT NULL,\n  taken_by TEXT NOT NULL,\n  command TEXT NOT NULL,\n  migrations TEXT NOT NULL\n)"
    ))
}

/// Written in the lock's own batch, after the lock row: the session exists from the moment it
/// holds the lock, and only if it does.
pub fn start_statements(holder: &str, command: &str) -> Vec<Statement> {
    vec![create_sessions(), insert_session(holder, command, true)]
}

fn insert_session(holder: &str, command: &str, if_locked: bool) -> Statement {
    let mut params = vec![Value::from(holder), Value::from(command)];
    let condition = if if_locked {
        params.push(Value::from(holder));
        format!(
            " WHERE EXISTS (SELECT 1 FROM {} WHERE holder = ?)",
            crate::core::lock::LOCK_TABLE
        )
    } else {
        String::new()
    };
    Statement::with_params(
        format!(
            "INSERT INTO {SESSIONS_TABLE} (holder, command, started_at) SELECT ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'){condition}"
        ),
        params,
    )
}

/// Forgets a session that wrote nothing because it had nothing to write (released in the
/// same batch as the lock).
pub fn forget_statement(holder: &str) -> Statement {
    Statement::with_params(
        format!("DELETE FROM {SESSIONS_TABLE} WHERE holder = ? AND point IS NULL"),
        vec![Value::from(holder)],
    )
}

/// Records `point` for the session `holder`: goes into the first unit, so the point is on
/// record exactly when something of the session committed.
pub fn point_statements(
    holder: &str,
    point: &RollbackPoint,
    taken_by: &str,
    command: &str,
    migrations: &[&str],
) -> Vec<Statement> {
    vec![
        create_sessions(),
        Statement::with_params(
            format!("UPDATE {SESSIONS_TABLE} SET point_kind = ?, point = ? WHERE holder = ?"),
            vec![
                Value::from(point.kind),
                Value::from(point.point.as_str()),
                Value::from(holder),
            ],
        ),
        create_points(),
        Statement::with_params(
            format!(
                "INSERT INTO {ROLLBACK_TABLE} (kind, point, taken_at, taken_by, command, migrations) VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?, ?, ?)"
            ),
            vec![
                Value::from(point.kind),
                Value::from(point.point.as_str()),
                Value::from(taken_by),
                Value::from(command),
                Value::from(migrations.join(",")),
            ],
        ),
    ]
}

/// Records a point that is the database's own clock, read inside the session's one batch
/// before anything of it is written (a fleet member's: Time Travel restores by timestamp,
/// §7, so no bookmark request is needed). The session row takes the same text.
pub fn clock_point_statements(
    holder: &str,
    taken_by: &str,
    command: &str,
    migrations: &[&str],
) -> Vec<Statement> {
    vec![
        create_points(),
        Statement::with_params(
            format!(
                "INSERT INTO {ROLLBACK_TABLE} (kind, point, taken_at, taken_by, command, migrations) SELECT 'timestamp', now, now, ?, ?, ? FROM (SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now') AS now)"
            ),
            vec![
                Value::from(taken_by),
                Value::from(command),
                Value::from(migrations.join(",")),
            ],
        ),
        create_sessions(),
        Statement::with_params(
            format!(
                "UPDATE {SESSIONS_TABLE} SET point_kind = 'timestamp', point = (SELECT point FROM {ROLLBACK_TABLE} ORDER BY id DESC LIMIT 1) WHERE holder = ?"
            ),
            vec![Value::from(holder)],
        ),
    ]
}

/// Reads back the point a session recorded.
pub fn point_read_statement(holder: &str) -> Statement {
    Statement::with_params(
        format!("SELECT point_kind, point FROM {SESSIONS_TABLE} WHERE holder = ?"),
        vec![Value::from(holder)],
    )
}

/// A session and its point as one record: what a write that replaces the whole database
/// (a restore, a pull) writes into the database it leaves behind.
pub fn record_statements(
    holder: &str,
    point: &RollbackPoint,
    taken_by: &str,
    command: &str,
) -> Vec<Statement> {
    let mut statements = vec![create_sessions(), insert_session(holder, command, false)];
    statements.extend(point_statements(holder, point, taken_by, command, &[]));
    statements
}

/// A rollback point on record.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedPoint {
    pub kind: String,
    pub point: String,
    pub taken_at: String,
    /// Seconds since it was taken, by the database's clock.
    pub age_seconds: i64,
    pub command: String,
    pub migrations: Vec<String>,
}

/// The newest write session on a database.
#[derive(Debug, Clone, Serialize)]
pub struct LastSession {
    /// The session's id (its lock holder's).
    pub holder: String,
    pub command: String,
    pub started_at: String,
    pub age_seconds: i64,
    /// `None`: it holds (or held) the lock but no unit of it committed a point.
    pub point: Option<String>,
}

/// What `rollback --last` needs: the newest session and every recorded point, newest first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct History {
    /// `None` on databases written only by d1ctl releases before sessions were recorded.
    pub last_session: Option<LastSession>,
    pub points: Vec<RecordedPoint>,
}

impl History {
    /// The point `rollback --last` restores: the newest session's, or (with no session on
    /// record) the newest point. `Err` carries the session that recorded none.
    pub fn last_point(&self) -> Result<Option<&str>, &LastSession> {
        match &self.last_session {
            Some(session) => match &session.point {
                Some(point) => Ok(Some(point)),
                None => Err(session),
            },
            None => Ok(self.points.first().map(|p| p.point.as_str())),
        }
    }

    /// The sessions a restore of `points[index]` undoes: it and every newer one.
    pub fn undone_by(&self, index: usize) -> &[RecordedPoint] {
        &self.points[..=index.min(self.points.len().saturating_sub(1))]
    }
}

/// Reads the history, leaving out the session of `holder` (the one reading it under the lock);
/// a database without the tables has none.
pub async fn read(backend: &dyn Backend, holder: Option<&str>) -> Result<History, BackendError> {
    let session = Statement::with_params(
        format!(
            "SELECT holder, command, started_at, point, CAST(unixepoch('now') - unixepoch(started_at) AS INTEGER) AS age FROM {SESSIONS_TABLE} WHERE holder IS NOT ? ORDER BY id DESC LIMIT 1"
        ),
        vec![holder.map_or(Value::Null, Value::from)],
    );
    let points = Statement::new(format!(
        "SELECT kind, point, taken_at, command, migrations, CAST(unixepoch('now') - unixepoch(taken_at) AS INTEGER) AS age FROM {ROLLBACK_TABLE} ORDER BY id DESC"
    ));
    let sessions = match backend.read(std::slice::from_ref(&session)).await {
        Ok(rows) => rows.into_iter().next(),
        Err(error) if error.is_missing_table().is_some() => None,
        Err(error) => return Err(error),
    };
    let points = match backend.read(&[points]).await {
        Ok(rows) => rows.into_iter().next().map(|r| parse_points(&r)),
        Err(error) if error.is_missing_table().is_some() => None,
        Err(error) => return Err(error),
    };
    Ok(History {
        last_session: sessions.and_then(|rows| {
            let row = rows.rows.first()?;
            Some(LastSession {
                holder: rows.get(row, "holder").to_text().unwrap_or_default(),
                command: rows.get(row, "command").to_text().unwrap_or_default(),
                started_at: rows.get(row, "started_at").to_text().unwrap_or_default(),
                age_seconds: rows.get(row, "age").as_i64().unwrap_or_default(),
                point: rows.get(row, "point").to_text(),
            })
        }),
        points: points.unwrap_or_default(),
    })
}

fn parse_points(rows: &Rows) -> Vec<RecordedPoint> {
    rows.rows
        .iter()
        .map(|row| RecordedPoint {
            kind: rows.get(row, "kind").to_text().unwrap_or_default(),
            point: rows.get(row, "point").to_text().unwrap_or_default(),
            taken_at: rows.get(row, "taken_at").to_text().unwrap_or_default(),
            age_seconds: rows.get(row, "age").as_i64().unwrap_or_default(),
            command: rows.get(row, "command").to_text().unwrap_or_default(),
            migrations: rows
                .get(row, "migrations")
                .to_text()
                .unwrap_or_default()
                .split(',')
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect(),
        })
        .collect()
}

/// Statements that clear what a source's copy must not carry into another database: its
/// lock rows, its sessions and its rollback points (which name bookmarks or backups of the
/// source, not of the copy).
pub fn foreign_bookkeeping() -> Vec<String> {
    vec![
        format!("DROP TABLE IF EXISTS {SESSIONS_TABLE}"),
        format!("DROP TABLE IF EXISTS {ROLLBACK_TABLE}"),
        format!("DROP TABLE IF EXISTS {}", crate::core::lock::LOCK_TABLE),
    ]
}
