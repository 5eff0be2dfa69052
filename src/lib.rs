//! d1ctl: carries SQL migrations for Cloudflare D1 from a laptop to production, one rung at a time.

pub mod backend;
pub mod d1;
pub mod sim;
