//! One integration-test binary: every test runs the real `d1ctl` binary against temp folders.

mod apply;
mod common;
mod config;
mod corpus;
mod drizzle;
mod files;
mod wrangler;
