//! D1's SQL authorizer rules (d1-platform.md section 10), in one place for every SQLite
//! connection that runs migration text: the simulator's databases, local envs, lint's shadow,
//! the replays of drift and baseline, rehearsal copies, seeding and `lint --fix`'s check.
//!
//! The rules: the PRAGMA allow-list, the reserved `_cf_` prefix, no attached or temporary
//! objects (so no `ATTACH`, and no `VACUUM INTO`, which attaches its target), virtual tables
//! only for FTS5, a few blocked functions, and no SQL-level transactions.
//!
//! They apply only while [`D1Rules::enforce`] runs: the statements of migration text (and what
//! a backend is sent, which D1 would check too), never d1ctl's own transaction control, its
//! backups or its reads of the schema through table-valued PRAGMAs. [`harden`] is what every
//! connection gets besides, checked or not.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::config::DbConfig;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

use crate::d1::pragma::{PragmaArgument, allowed_pragma};

/// workerd's message for a refused `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT` or `RELEASE`.
pub const TRANSACTION_REFUSED: &str = "To execute a transaction, please use the \
    state.storage.transaction() or state.storage.transactionSync() APIs instead of the SQL \
    BEGIN TRANSACTION or SAVEPOINT statements. The JavaScript API is safer because it will \
    automatically roll back on exceptions, and because it interacts correctly with Durable \
    Objects' automatic atomic write coalescing.";

/// What the authorizer answers for one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    /// Denied because it is transaction control; reported with [`TRANSACTION_REFUSED`].
    DenyTransaction,
}

/// Functions D1 refuses to user SQL.
const BLOCKED_FUNCTIONS: &[&str] = &[
    "sqlite_version",
    "sqlite_source_id",
    "sqlite_compileoption_used",
    "sqlite_compileoption_get",
    "sqlite_offset",
    "load_extension",
    "fts3_tokenizer",
];

/// True for names D1 reserves: `_cf_` in any letter case.
pub fn is_reserved_name(name: &str) -> bool {
    name.get(..4)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("_cf_"))
}

fn is_boolean_literal(value: &str) -> bool {
    let value = value
        .strip_prefix('\'')
        .and_then(|rest| rest.strip_suffix('\''))
        .or_else(|| {
            value
                .strip_prefix('"')
                .and_then(|rest| rest.strip_suffix('"'))
        })
        .unwrap_or(value);
    ["true", "false", "yes", "no", "on", "off", "1", "0"]
        .iter()
        .any(|literal| value.eq_ignore_ascii_case(literal))
}

fn pragma_allowed(pragma: &str, value: Option<&str>) -> bool {
    let Some(kind) = allowed_pragma(pragma) else {
        return false;
    };
    let name_allowed = |name: &str| !is_reserved_name(name);
    match (kind, value) {
        (PragmaArgument::Any, _)
        | (
            PragmaArgument::None
            | PragmaArgument::Boolean
            | PragmaArgument::OptionalObjectName
            | PragmaArgument::OptionalNumber
            | PragmaArgument::OptionalNumberOrObjectName,
            None,
        ) => true,
        (PragmaArgument::None, Some(_)) | (PragmaArgument::ObjectName, None) => false,
        (PragmaArgument::Boolean, Some(value)) => is_boolean_literal(value),
        (PragmaArgument::ObjectName | PragmaArgument::OptionalObjectName, Some(name)) => {
            name_allowed(name)
        }
        (PragmaArgument::OptionalNumber, Some(value)) => value.parse::<i32>().is_ok(),
        (PragmaArgument::OptionalNumberOrObjectName, Some(value)) => {
            value.parse::<u32>().is_ok() || name_allowed(value)
        }
    }
}

/// The decision for one action of user SQL against database `database_name`.
pub fn decide(action: &AuthAction<'_>, database_name: Option<&str>) -> Decision {
    let allow_if = |allowed: bool| {
        if allowed {
            Decision::Allow
        } else {
            Decision::Deny
        }
    };
    let name_ok = |name: &str| !is_reserved_name(name);

    if matches!(
        action,
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. }
    ) {
        return Decision::DenyTransaction;
    }
    if let AuthAction::AlterTable {
        database_name,
        table_name,
    } = action
    {
        // SQLite passes ALTER TABLE's schema as the action's first argument and puts the column
        // of `DROP COLUMN` where other actions have their schema.
        return allow_if(database_name.eq_ignore_ascii_case("main") && name_ok(table_name));
    }
    match database_name {
        Some("temp") => {
            // Only reads and updates of the temporary schema's own tables are allowed.
            return match action {
                AuthAction::Read { table_name, .. } | AuthAction::Update { table_name, .. } => {
                    allow_if(name_ok(table_name))
                }
                _ => Decision::Deny,
            };
        }
        Some("main") | None => {}
        Some(_) => return Decision::Deny,
    }

    match action {
        AuthAction::Select | AuthAction::Recursive | AuthAction::Analyze { .. } => Decision::Allow,
        AuthAction::CreateTable { table_name }
        | AuthAction::Delete { table_name }
        | AuthAction::DropTable { table_name }
        | AuthAction::Insert { table_name }
        | AuthAction::Read { table_name, .. }
        | AuthAction::Update { table_name, .. } => allow_if(name_ok(table_name)),
        AuthAction::CreateView { view_name } | AuthAction::DropView { view_name } => {
            allow_if(name_ok(view_name))
        }
        AuthAction::Reindex { index_name } => allow_if(name_ok(index_name)),
        AuthAction::CreateIndex {
            index_name,
            table_name,
        }
        | AuthAction::DropIndex {
            index_name,
            table_name,
        } => allow_if(name_ok(index_name) && name_ok(table_name)),
        AuthAction::CreateTrigger {
            trigger_name,
            table_name,
        }
        | AuthAction::DropTrigger {
            trigger_name,
            table_name,
        } => allow_if(name_ok(trigger_name) && name_ok(table_name)),
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => allow_if(pragma_allowed(pragma_name, *pragma_value)),
        AuthAction::Function { function_name } => allow_if(
            !BLOCKED_FUNCTIONS
                .iter()
                .any(|blocked| function_name.eq_ignore_ascii_case(blocked)),
        ),
        AuthAction::CreateVtable {
            table_name,
            module_name,
        }
        | AuthAction::DropVtable {
            table_name,
            module_name,
        } => allow_if(
            name_ok(table_name)
                && (module_name.eq_ignore_ascii_case("fts5")
                    || module_name.eq_ignore_ascii_case("fts5vocab")),
        ),
        // Attached databases, temporary objects and anything unknown are refused.
        _ => Decision::Deny,
    }
}

/// What the rules refused since the last look.
#[derive(Debug, Default)]
struct State {
    /// When false (the default), every action is allowed: d1ctl's own statements.
    enforcing: AtomicBool,
    refused: AtomicBool,
    /// The refusal was of transaction control, which D1 words differently.
    transaction_refused: AtomicBool,
}

/// D1's rules installed on one connection: a handle to switch them on around the statements
/// they judge, and to learn whether a failure was theirs.
#[derive(Debug, Clone)]
pub struct D1Rules {
    state: Arc<State>,
}

impl D1Rules {
    /// Installs the authorizer on `connection`; it judges nothing until [`D1Rules::enforce`].
    pub fn install(connection: &mut rusqlite::Connection) -> rusqlite::Result<Self> {
        let state = Arc::new(State::default());
        let hook_state = Arc::clone(&state);
        connection.authorizer(Some(move |context: AuthContext<'_>| {
            if !hook_state.enforcing.load(Ordering::SeqCst) {
                return Authorization::Allow;
            }
            match decide(&context.action, context.database_name) {
                Decision::Allow => Authorization::Allow,
                Decision::Deny => {
                    hook_state.refused.store(true, Ordering::SeqCst);
                    Authorization::Deny
                }
                Decision::DenyTransaction => {
                    hook_state.refused.store(true, Ordering::SeqCst);
                    hook_state.transaction_refused.store(true, Ordering::SeqCst);
                    Authorization::Deny
                }
            }
        }))?;
        Ok(Self { state })
    }

    /// Runs `work` (preparing and stepping statements to judge) with the rules on, and clears
    /// what an earlier statement left, so [`D1Rules::refusal`] speaks of `work` only. SQLite
    /// asks the authorizer while preparing, and again while stepping when a statement is
    /// re-prepared or runs SQL of its own (`VACUUM INTO` attaches its target), so both belong
    /// inside.
    pub fn enforce<T>(&self, work: impl FnOnce() -> T) -> T {
        /// Switches the rules off again however `work` ends.
        struct Off<'a>(&'a State);
        impl Drop for Off<'_> {
            fn drop(&mut self) {
                self.0.enforcing.store(false, Ordering::SeqCst);
            }
        }
        self.state.refused.store(false, Ordering::SeqCst);
        self.state
            .transaction_refused
            .store(false, Ordering::SeqCst);
        self.state.enforcing.store(true, Ordering::SeqCst);
        let _off = Off(&self.state);
        work()
    }

    /// Whether the rules refused something in the last [`D1Rules::enforce`].
    pub fn refused(&self) -> bool {
        self.state.refused.load(Ordering::SeqCst)
    }

    /// D1's words for `error` when the rules caused it: workerd's message for transaction
    /// control, `<SQLite's message>: SQLITE_AUTH` (or the code SQLite gave) otherwise.
    pub fn refusal(&self, error: &rusqlite::Error) -> Option<String> {
        if self.state.transaction_refused.load(Ordering::SeqCst) {
            Some(TRANSACTION_REFUSED.to_owned())
        } else if self.refused() {
            Some(crate::d1::sqlite_text::describe(error))
        } else {
            None
        }
    }
}

/// What every connection d1ctl opens gets, whether D1's rules judge it or not: SQLite's
/// defensive mode (no `writable_schema`, no writes to shadow tables, no `journal_mode=OFF`),
/// `ATTACH` unable to create or write a file, and extension loading off. So no SQL text can
/// reach the file system beyond the database's own files.
pub fn harden(connection: &rusqlite::Connection) -> rusqlite::Result<()> {
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    // Without write access ATTACH cannot create a file either (SQLite's documentation);
    // VACUUM INTO, d1ctl's own backup, sets both flags for itself.
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_ATTACH_WRITE, false)?;
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_ATTACH_CREATE, false)?;
    disable_extension_loading(connection)
}

/// rusqlite offers no way to switch extension loading off (only, behind a feature this crate
/// does not enable, to switch it on); SQLite's default is off, and this keeps it so whatever the
/// build's default.
fn disable_extension_loading(connection: &rusqlite::Connection) -> rusqlite::Result<()> {
    #[expect(
        unsafe_code,
        reason = "sqlite3_enable_load_extension only sets a flag of a live connection"
    )]
    // SAFETY: the handle belongs to `connection`, which is open for the whole call.
    let code = unsafe { rusqlite::ffi::sqlite3_enable_load_extension(connection.handle(), 0) };
    if code == rusqlite::ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            Some("could not switch extension loading off".to_owned()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::hooks::TransactionOperation;

    use super::*;

    fn pragma<'a>(name: &'a str, value: Option<&'a str>) -> AuthAction<'a> {
        AuthAction::Pragma {
            pragma_name: name,
            pragma_value: value,
        }
    }

    #[test]
    fn transactions_are_refused_with_their_own_message() {
        let begin = AuthAction::Transaction {
            operation: TransactionOperation::Begin,
        };
        let savepoint = AuthAction::Savepoint {
            operation: TransactionOperation::Begin,
            savepoint_name: "sp",
        };
        assert_eq!(decide(&begin, None), Decision::DenyTransaction);
        assert_eq!(decide(&savepoint, Some("main")), Decision::DenyTransaction);
    }

    #[test]
    fn reserved_names_are_refused_in_any_case() {
        let read = AuthAction::Read {
            table_name: "_cf_METADATA",
            column_name: "key",
        };
        let insert = AuthAction::Insert {
            table_name: "_CF_kv",
        };
        let create = AuthAction::CreateIndex {
            index_name: "i",
            table_name: "_cf_x",
        };
        assert_eq!(decide(&read, Some("main")), Decision::Deny);
        assert_eq!(decide(&insert, Some("main")), Decision::Deny);
        assert_eq!(decide(&create, Some("main")), Decision::Deny);
        let ok = AuthAction::Read {
            table_name: "users",
            column_name: "email",
        };
        assert_eq!(decide(&ok, Some("main")), Decision::Allow);
        assert_eq!(
            decide(
                &AuthAction::Read {
                    table_name: "cf_users",
                    column_name: "x"
                },
                Some("main")
            ),
            Decision::Allow
        );
    }

    #[test]
    fn pragma_allow_list() {
        let cases = [
            (pragma("foreign_keys", Some("OFF")), Decision::Allow),
            (pragma("foreign_keys", Some("'off'")), Decision::Allow),
            (pragma("defer_foreign_keys", Some("on")), Decision::Allow),
            (pragma("defer_foreign_keys", Some("maybe")), Decision::Deny),
            (pragma("foreign_keys", None), Decision::Allow),
            (pragma("writable_schema", Some("ON")), Decision::Deny),
            (pragma("journal_mode", None), Decision::Deny),
            (pragma("user_version", Some("3")), Decision::Deny),
            (pragma("page_size", None), Decision::Allow),
            (pragma("page_size", Some("4096")), Decision::Deny),
            (pragma("table_info", Some("users")), Decision::Allow),
            (pragma("table_info", Some("_cf_METADATA")), Decision::Deny),
            (pragma("index_list", None), Decision::Deny),
            (pragma("foreign_key_check", None), Decision::Allow),
            (pragma("quick_check", Some("10")), Decision::Allow),
            (pragma("quick_check", Some("users")), Decision::Allow),
            (pragma("optimize", Some("0x10002")), Decision::Deny),
            (pragma("optimize", Some("5")), Decision::Allow),
            (pragma("table_list", None), Decision::Allow),
        ];
        for (action, expected) in cases {
            assert_eq!(decide(&action, Some("main")), expected, "{action:?}");
        }
    }

    #[test]
    fn functions_attach_temp_and_virtual_tables() {
        let version = AuthAction::Function {
            function_name: "sqlite_version",
        };
        let upper = AuthAction::Function {
            function_name: "upper",
        };
        assert_eq!(decide(&version, None), Decision::Deny);
        assert_eq!(decide(&upper, None), Decision::Allow);
        assert_eq!(
            decide(&AuthAction::Attach { filename: "x.db" }, None),
            Decision::Deny
        );
        assert_eq!(
            decide(
                &AuthAction::CreateTempTable { table_name: "t" },
                Some("temp")
            ),
            Decision::Deny
        );
        let fts = AuthAction::CreateVtable {
            table_name: "docs",
            module_name: "fts5",
        };
        let rtree = AuthAction::CreateVtable {
            table_name: "geo",
            module_name: "rtree",
        };
        assert_eq!(decide(&fts, Some("main")), Decision::Allow);
        assert_eq!(decide(&rtree, Some("main")), Decision::Deny);
        let other_db = AuthAction::Read {
            table_name: "t",
            column_name: "a",
        };
        assert_eq!(decide(&other_db, Some("aux")), Decision::Deny);
    }

    #[test]
    fn drop_column_is_judged_by_its_schema_not_by_its_column() {
        let drop_column = AuthAction::AlterTable {
            database_name: "main",
            table_name: "t",
        };
        // SQLite's fourth argument for `ALTER TABLE t DROP COLUMN b` is the column, `b`.
        assert_eq!(decide(&drop_column, Some("b")), Decision::Allow);
        let attached = AuthAction::AlterTable {
            database_name: "aux",
            table_name: "t",
        };
        assert_eq!(decide(&attached, None), Decision::Deny);
        let reserved = AuthAction::AlterTable {
            database_name: "main",
            table_name: "_cf_KV",
        };
        assert_eq!(decide(&reserved, None), Decision::Deny);
    }
}
