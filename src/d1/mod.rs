//! Cloudflare D1 HTTP API: shared wire types (`api`) and, later, the client.
