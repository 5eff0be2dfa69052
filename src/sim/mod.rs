//! D1 HTTP API simulator (axum + rusqlite): used by tests and served by `d1ctl sim`.
