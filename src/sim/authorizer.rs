//! D1's SQL authorizer rules (d1-platform.md section 10): the PRAGMA allow-list, the reserved
//! `_cf_` prefix, no attached or temporary objects, virtual tables only for FTS5, a few blocked
//! functions, and no SQL-level transactions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

use crate::d1::pragma::{PragmaArgument, allowed_pragma};

/// workerd's message for a refused `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT` or `RELEASE`.
pub(crate) const TRANSACTION_REFUSED: &str = "To execute a transaction, please use the \
    state.storage.transaction() or state.storage.transactionSync() APIs instead of the SQL \
    BEGIN TRANSACTION or SAVEPOINT statements. The JavaScript API is safer because it will \
    automatically roll back on exceptions, and because it interacts correctly with Durable \
    Objects' automatic atomic write coalescing.";

/// What the authorizer answers for one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
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
pub(crate) fn is_reserved_name(name: &str) -> bool {
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
pub(crate) fn decide(action: &AuthAction<'_>, database_name: Option<&str>) -> Decision {
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
        | AuthAction::AlterTable { table_name, .. }
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

/// Shared between a connection's authorizer callback and the code running statements on it.
#[derive(Debug, Default)]
pub(crate) struct AuthState {
    /// When false (the default), every action is allowed: the simulator's own statements.
    enforcing: AtomicBool,
    /// Set when the authorizer refused transaction control since the last `take_transaction_denied`.
    transaction_denied: AtomicBool,
}

impl AuthState {
    pub(crate) fn set_enforcing(&self, enforcing: bool) {
        self.enforcing.store(enforcing, Ordering::SeqCst);
    }

    pub(crate) fn take_transaction_denied(&self) -> bool {
        self.transaction_denied.swap(false, Ordering::SeqCst)
    }
}

/// Installs the D1 authorizer on `connection`, active only while `state` is enforcing.
pub(crate) fn install(
    connection: &mut rusqlite::Connection,
    state: Arc<AuthState>,
) -> rusqlite::Result<()> {
    connection.authorizer(Some(move |context: AuthContext<'_>| {
        if !state.enforcing.load(Ordering::SeqCst) {
            return Authorization::Allow;
        }
        match decide(&context.action, context.database_name) {
            Decision::Allow => Authorization::Allow,
            Decision::Deny => Authorization::Deny,
            Decision::DenyTransaction => {
                state.transaction_denied.store(true, Ordering::SeqCst);
                Authorization::Deny
            }
        }
    }))
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
}
