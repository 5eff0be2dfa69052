//! Cloudflare D1 HTTP API: the wire types shared with the simulator (`api`), D1's dump format
//! (`dump`), PRAGMA allow-list (`pragma`), authorizer rules (`authorizer`) and wording of SQLite
//! failures (`sqlite_text`), and the client.

pub mod api;
pub mod authorizer;
pub mod budget;
pub mod client;
pub mod dump;
pub mod pragma;
pub mod sqlite_text;
