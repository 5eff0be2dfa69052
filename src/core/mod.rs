//! The domain: registry, migration set, ledgers, apply. Nothing here knows about terminals;
//! progress reaches the user through the reporter traits.

pub mod apply;
pub mod checklist;
pub mod export;
pub mod fix;
pub mod fk;
pub mod fleet;
pub mod guard;
pub mod init;
pub mod ledger;
pub mod ledger_gap;
pub mod lint;
pub mod lock;
pub mod migrations;
pub mod promote;
pub mod registry;
pub mod rehearse;
pub mod rows;
pub mod schema;
pub mod seed;
pub mod sql;
pub mod steps;
pub mod temp;
pub mod wrangler_config;
pub mod write;

/// Lives below `core` so `local` can stamp its backups; `core::clock` paths keep working.
pub use crate::clock;
