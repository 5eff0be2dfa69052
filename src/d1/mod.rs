//! Cloudflare D1 HTTP API: the wire types shared with the simulator (`api`), D1's dump format
//! (`dump`) and PRAGMA allow-list (`pragma`), and the client.

pub mod api;
pub mod client;
pub mod dump;
pub mod pragma;
