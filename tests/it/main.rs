//! One integration-test binary: every test runs the real `d1ctl` binary against temp folders, or
//! talks to the bundled simulator over real HTTP on 127.0.0.1.

mod apply;
mod authz;
mod base_url;
mod ci_formats;
mod common;
mod config;
mod corpus;
mod d1;
mod drift;
mod drizzle;
mod engine;
mod engine_recovery;
mod export;
mod files;
mod fleet;
mod fleet_summaries;
mod init;
mod keyring;
mod lease;
mod lint_fix;
mod messages;
mod names;
mod promote;
mod rehearse;
mod release;
mod reset;
mod rows;
mod sim;
mod sim_fleet;
mod simulated;
mod steps;
mod wrangler;
