//! Cloudflare D1 HTTP API: the wire types shared with the simulator (`api`) and the client.

pub mod api;
pub mod client;
pub mod dump;
