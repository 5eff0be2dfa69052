//! The D1 HTTP API simulator, driven over real HTTP on 127.0.0.1.

use std::time::{Duration, Instant};

use d1ctl::sim::{Faults, SimConfig, Simulator};
use reqwest::StatusCode;
use serde_json::{Value, json};

const TOKEN: &str = "sim-test-token";
const ACCOUNT: &str = "023e105f4ecef8ad9ca31a8372d0c353";
const TRANSACTION_REFUSED: &str = "To execute a transaction, please use the \
    state.storage.transaction() or state.storage.transactionSync() APIs instead of the SQL \
    BEGIN TRANSACTION or SAVEPOINT statements. The JavaScript API is safer because it will \
    automatically roll back on exceptions, and because it interacts correctly with Durable \
    Objects' automatic atomic write coalescing.";

struct Harness {
    sim: Simulator,
    client: reqwest::Client,
    database: String,
}

fn config() -> SimConfig {
    SimConfig {
        data_dir: None,
        tokens: vec![TOKEN.to_owned()],
        databases: Vec::new(),
    }
}

fn start() -> Harness {
    start_with(config())
}

fn start_with(config: SimConfig) -> Harness {
    let sim = Simulator::start(config).unwrap();
    let database = sim.create_database("main-db");
    Harness {
        sim,
        client: reqwest::Client::new(),
        database,
    }
}

impl Harness {
    fn url(&self, tail: &str) -> String {
        format!(
            "{}/accounts/{ACCOUNT}/d1/database{tail}",
            self.sim.base_url()
        )
    }

    fn database_url(&self, tail: &str) -> String {
        self.url(&format!("/{}{tail}", self.database))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.bearer_auth(TOKEN).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    async fn post(&self, url: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.client.post(url).json(body)).await
    }

    async fn get(&self, url: &str) -> (StatusCode, Value) {
        self.send(self.client.get(url)).await
    }

    async fn query(&self, body: &Value) -> (StatusCode, Value) {
        self.post(&self.database_url("/query"), body).await
    }

    /// Runs `sql` through `/query` and insists on success.
    async fn ok(&self, sql: &str) -> Value {
        let (status, body) = self.query(&json!({ "sql": sql })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["success"], json!(true));
        body
    }

    fn rows(&self, sql: &str) -> Vec<Vec<Value>> {
        self.sim.query_rows(&self.database, sql).unwrap()
    }
}

fn single_error(body: &Value) -> (i64, String) {
    assert_eq!(body["success"], json!(false), "{body}");
    assert_eq!(body["result"], Value::Null);
    assert_eq!(body["messages"], json!([]));
    let error = &body["errors"][0];
    (
        error["code"].as_i64().unwrap(),
        error["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn missing_or_wrong_credentials_fail_with_10000() {
    let harness = start();
    let url = harness.database_url("/query");
    let response = harness
        .client
        .post(&url)
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["errors"],
        json!([{"code": 10000, "message": "Authentication error"}])
    );

    let response = harness
        .client
        .post(&url)
        .bearer_auth("wrong")
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(single_error(&body).0, 10000);

    // The global API key pair is accepted when the key is a configured token.
    let response = harness
        .client
        .post(&url)
        .header("X-Auth-Email", "someone@example.com")
        .header("X-Auth-Key", TOKEN)
        .json(&json!({"sql": "SELECT 1 AS one"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_database_bad_account_and_unknown_route() {
    let harness = start();
    let missing = "11111111-1111-4111-8111-111111111111";
    let (status, body) = harness
        .post(
            &harness.url(&format!("/{missing}/query")),
            &json!({"sql": "SELECT 1"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        single_error(&body),
        (7404, format!("The database {missing} could not be found"))
    );

    let bad_account = format!(
        "{}/accounts/{}/d1/database",
        harness.sim.base_url(),
        "x".repeat(40)
    );
    let (status, body) = harness.get(&bad_account).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["code"], json!(7003));
    assert_eq!(
        body["errors"][1],
        json!({"code": 7000, "message": "No route for that URI"})
    );

    let (status, body) = harness
        .get(&format!(
            "{}/accounts/{ACCOUNT}/d1/nothing",
            harness.sim.base_url()
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["errors"][0]["code"], json!(7003));
}

#[tokio::test]
async fn malformed_bodies_answer_7400() {
    let harness = start();
    let url = harness.database_url("/query");
    let bodies = [
        harness
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body("{not json"),
        harness.client.post(&url).json(&json!({"params": []})),
        harness.client.post(&url).json(&json!({"sql": 5})),
        harness
            .client
            .post(&url)
            .json(&json!({"sql": "SELECT ?", "params": [{"a": 1}]})),
        harness
            .client
            .post(&url)
            .json(&json!({"batch": {"sql": "x"}})),
        harness
            .client
            .post(&url)
            .json(&json!({"sql": "SELECT 1", "batch": []})),
    ];
    for request in bodies {
        let (status, body) = harness.send(request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (code, message) = single_error(&body);
        assert_eq!(code, 7400);
        assert!(
            message.starts_with("The request is malformed: "),
            "{message}"
        );
    }
}

#[tokio::test]
async fn results_values_and_meta() {
    let harness = start();
    harness
        .ok("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, data BLOB)")
        .await;
    let (status, body) = harness
        .query(&json!({
            "sql": "INSERT INTO items (name, price, data) VALUES (?, ?, X'00ff'), (?, ?, NULL)",
            "params": ["pen", 1.5, "cap", null]
        }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let meta = &body["result"][0]["meta"];
    assert_eq!(meta["changed_db"], json!(true));
    assert_eq!(meta["changes"], json!(2));
    assert_eq!(meta["last_row_id"], json!(2));
    assert_eq!(meta["rows_written"], json!(2));
    assert!(meta["size_after"].as_u64().unwrap() > 0);
    assert!(meta["duration"].is_number());
    assert!(meta["timings"]["sql_duration_ms"].is_number());
    assert_eq!(meta["served_by_primary"], json!(true));
    assert!(meta["served_by_region"].is_string());
    assert!(meta["served_by_colo"].is_string());

    let body = harness
        .ok("SELECT id, name, price, data FROM items ORDER BY id; SELECT count(*) AS n FROM items")
        .await;
    let results = body["result"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(
        results[0]["results"],
        json!([
            {"id": 1, "name": "pen", "price": 1.5, "data": [0, 255]},
            {"id": 2, "name": "cap", "price": null, "data": null}
        ])
    );
    assert_eq!(results[0]["meta"]["changed_db"], json!(false));
    assert_eq!(results[1]["results"], json!([{"n": 2}]));

    let (status, body) = harness
        .post(
            &harness.database_url("/raw"),
            &json!({"sql": "SELECT id, name FROM items WHERE id = ?", "params": ["1"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["result"][0]["results"],
        json!({"columns": ["id", "name"], "rows": [[1, "pen"]]})
    );

    // One element per statement across batch entries.
    let (status, body) = harness
        .query(&json!({"batch": [
            {"sql": "SELECT 1 AS a; SELECT 2 AS b"},
            {"sql": "SELECT ? AS c", "params": [true]}
        ]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results: Vec<&Value> = body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| &result["results"][0])
        .collect();
    assert_eq!(
        results,
        vec![&json!({"a": 1}), &json!({"b": 2}), &json!({"c": 1})]
    );
}

#[tokio::test]
async fn batch_and_multi_statement_sql_are_atomic() {
    let harness = start();
    harness
        .ok("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)")
        .await;
    let (status, body) = harness
        .query(&json!({"batch": [
            {"sql": "INSERT INTO t (v) VALUES (?)", "params": ["first"]},
            {"sql": "INSERT INTO t (v) VALUES (?)", "params": [null]}
        ]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        single_error(&body),
        (
            7500,
            "NOT NULL constraint failed: t.v: SQLITE_CONSTRAINT (extended: \
             SQLITE_CONSTRAINT_NOTNULL)"
                .to_owned()
        )
    );
    assert_eq!(harness.rows("SELECT count(*) FROM t"), vec![vec![json!(0)]]);

    let (status, body) = harness
        .query(&json!({"sql": "INSERT INTO t (v) VALUES ('a'); INSERT INTO t (v) VALUES ('a');"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(single_error(&body).0, 7500);
    assert_eq!(harness.rows("SELECT count(*) FROM t"), vec![vec![json!(0)]]);

    // A trigger body with `;` and a string with `;` stay whole.
    harness
        .ok("CREATE TABLE log (msg TEXT);\n\
             CREATE TRIGGER IF NOT EXISTS t_log AFTER INSERT ON t BEGIN \
             INSERT INTO log VALUES ('a;b'); INSERT INTO log VALUES (new.v); END;\n\
             INSERT INTO t (v) VALUES ('x;y');")
        .await;
    assert_eq!(
        harness.rows("SELECT msg FROM log ORDER BY rowid"),
        vec![vec![json!("a;b")], vec![json!("x;y")]]
    );
}

#[tokio::test]
async fn transactions_reserved_tables_and_pragmas_are_refused() {
    let harness = start();
    harness.ok("CREATE TABLE t (a)").await;
    for sql in [
        "BEGIN TRANSACTION",
        "BEGIN; INSERT INTO t VALUES (1); COMMIT;",
        "SAVEPOINT s",
        "COMMIT",
    ] {
        let (status, body) = harness.query(&json!({ "sql": sql })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{sql}");
        assert_eq!(single_error(&body), (7500, TRANSACTION_REFUSED.to_owned()));
    }
    assert_eq!(harness.rows("SELECT count(*) FROM t"), vec![vec![json!(0)]]);

    let (_, body) = harness
        .query(&json!({"sql": "SELECT * FROM _cf_METADATA"}))
        .await;
    assert_eq!(
        single_error(&body),
        (
            7500,
            "access to _cf_METADATA.key is prohibited: SQLITE_AUTH".to_owned()
        )
    );
    // The table exists in every database.
    assert_eq!(
        harness.rows("SELECT count(*) FROM sqlite_schema WHERE name = '_cf_METADATA'"),
        vec![vec![json!(1)]]
    );
    let (_, body) = harness
        .query(&json!({"sql": "INSERT INTO _cf_METADATA VALUES (9, 9)"}))
        .await;
    assert_eq!(
        single_error(&body),
        (7500, "not authorized: SQLITE_AUTH".to_owned())
    );
    let (_, body) = harness
        .query(&json!({"sql": "PRAGMA writable_schema=ON"}))
        .await;
    assert_eq!(
        single_error(&body),
        (7500, "not authorized: SQLITE_AUTH".to_owned())
    );
    let body = harness.ok("PRAGMA table_info(t)").await;
    assert_eq!(body["result"][0]["results"][0]["name"], json!("a"));
}

#[tokio::test]
async fn foreign_keys_stay_on() {
    let harness = start();
    harness
        .ok("CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id));
             CREATE TABLE owned (id INTEGER PRIMARY KEY,
                 parent_id INTEGER REFERENCES parent(id) ON DELETE CASCADE);
             INSERT INTO parent VALUES (1), (2);
             INSERT INTO child VALUES (10, 1);
             INSERT INTO owned VALUES (20, 2);")
        .await;
    let (status, body) = harness
        .query(&json!({"sql": "PRAGMA foreign_keys=OFF; DELETE FROM parent WHERE id = 1;"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        single_error(&body),
        (
            7500,
            "FOREIGN KEY constraint failed: SQLITE_CONSTRAINT (extended: \
             SQLITE_CONSTRAINT_FOREIGNKEY)"
                .to_owned()
        )
    );
    harness
        .ok("PRAGMA foreign_keys=OFF; DELETE FROM parent WHERE id = 2;")
        .await;
    assert_eq!(
        harness.rows("SELECT count(*) FROM owned"),
        vec![vec![json!(0)]]
    );
    // A separate request cannot turn them off either.
    harness.ok("PRAGMA foreign_keys = OFF").await;
    let (status, _) = harness
        .query(&json!({"sql": "INSERT INTO child VALUES (11, 99)"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Deferred checks run at commit: unresolved violations fail the request, resolved ones pass.
    let (status, body) = harness
        .query(
            &json!({"sql": "PRAGMA defer_foreign_keys = on; INSERT INTO child VALUES (12, 99);"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        single_error(&body)
            .1
            .starts_with("FOREIGN KEY constraint failed")
    );
    harness
        .ok(
            "PRAGMA defer_foreign_keys = on; INSERT INTO child VALUES (13, 77); \
             INSERT INTO parent VALUES (77);",
        )
        .await;
    assert_eq!(
        harness.rows("SELECT count(*) FROM child"),
        vec![vec![json!(2)]]
    );
}

#[tokio::test]
async fn statement_and_parameter_limits() {
    let harness = start();
    let long_string = "x".repeat(100_000);
    let (status, body) = harness
        .query(&json!({ "sql": format!("SELECT '{long_string}'") }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        single_error(&body),
        (7500, "statement too long: SQLITE_TOOBIG".to_owned())
    );
    // The limit is per statement: two statements just under it pass.
    let just_under = format!("SELECT '{}' AS x;", "x".repeat(99_900));
    harness.ok(&format!("{just_under}\n{just_under}")).await;

    let placeholders = vec!["?"; 101].join(", ");
    let params: Vec<Value> = (0..101).map(|value| json!(value)).collect();
    let (status, body) = harness
        .query(&json!({ "sql": format!("SELECT {placeholders}"), "params": params }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(single_error(&body).0, 7500);
    let placeholders = vec!["?"; 100].join(", ");
    let params: Vec<Value> = (0..100).map(|value| json!(value)).collect();
    let (status, _) = harness
        .query(&json!({ "sql": format!("SELECT {placeholders}"), "params": params }))
        .await;
    assert_eq!(status, StatusCode::OK);
}

async fn poll_export(harness: &Harness, options: &Value) -> (String, Value) {
    let request = json!({"output_format": "polling", "dump_options": options});
    let url = harness.database_url("/export");
    let (status, first) = harness.post(&url, &request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["result"]["status"], json!("active"));
    assert_eq!(first["result"]["type"], json!("export"));
    let at_bookmark = first["result"]["at_bookmark"].as_str().unwrap().to_owned();
    let mut polls = 0;
    loop {
        polls += 1;
        assert!(polls < 10, "the export never completed");
        let mut request = request.clone();
        request["current_bookmark"] = json!(at_bookmark);
        let (status, body) = harness.post(&url, &request).await;
        assert_eq!(body["result"]["at_bookmark"], json!(at_bookmark));
        if status == StatusCode::ACCEPTED {
            continue;
        }
        assert_eq!(status, StatusCode::OK);
        return (at_bookmark, body["result"].clone());
    }
}

#[tokio::test]
async fn export_polls_then_serves_the_dump() {
    let harness = start();
    harness
        .ok(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, avatar BLOB);
             CREATE TABLE \"Tags\" (label TEXT);
             CREATE INDEX users_name ON users(name);
             INSERT INTO users VALUES (1, 'Ann''s', X'cafe'), (2, 'two
lines', NULL);
             INSERT INTO \"Tags\" VALUES ('x');",
        )
        .await;
    let (at_bookmark, result) = poll_export(&harness, &json!({})).await;
    assert_eq!(result["status"], json!("complete"));
    assert!(
        result["result"]["filename"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase()
            .ends_with(".sql")
    );
    let signed_url = result["result"]["signed_url"].as_str().unwrap();
    // Plain GET without credentials.
    let dump = reqwest::get(signed_url)
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        dump,
        "PRAGMA defer_foreign_keys=TRUE;\n\
         CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, avatar BLOB);\n\
         INSERT INTO \"users\" (\"id\",\"name\",\"avatar\") VALUES(1,'Ann''s',X'cafe');\n\
         INSERT INTO \"users\" (\"id\",\"name\",\"avatar\") VALUES(2,replace('two\\nlines','\\n',char(10)),NULL);\n\
         CREATE TABLE IF NOT EXISTS \"Tags\" (label TEXT);\n\
         INSERT INTO \"Tags\" (\"label\") VALUES('x');\n\
         CREATE INDEX users_name ON users(name);"
    );
    let (status, body) = harness
        .get(&harness.database_url("/time_travel/bookmark"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"]["bookmark"], json!(at_bookmark));

    let (_, result) = poll_export(&harness, &json!({"no_schema": true, "tables": ["Tags"]})).await;
    let dump = reqwest::get(result["result"]["signed_url"].as_str().unwrap())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        dump,
        "PRAGMA defer_foreign_keys=TRUE;\nINSERT INTO \"Tags\" (\"label\") VALUES('x');"
    );

    harness
        .ok("CREATE VIRTUAL TABLE docs USING fts5(body)")
        .await;
    let (_, result) = poll_export(&harness, &json!({})).await;
    assert_eq!(result["status"], json!("error"));
    assert_eq!(
        result["error"],
        json!("D1 Export error: cannot export databases with Virtual Tables (fts5)")
    );
}

#[tokio::test]
async fn bookmarks_and_restore() {
    let harness = start();
    harness.ok("CREATE TABLE notes (body TEXT)").await;
    let (_, body) = harness
        .get(&harness.database_url("/time_travel/bookmark"))
        .await;
    let before_insert = body["result"]["bookmark"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = before_insert.split('-').collect();
    assert_eq!(
        parts.iter().map(|part| part.len()).collect::<Vec<_>>(),
        vec![8, 8, 8, 32]
    );

    // Reads do not move the bookmark; writes do, and later bookmarks sort after earlier ones.
    harness.ok("SELECT * FROM notes").await;
    let (_, body) = harness
        .get(&harness.database_url("/time_travel/bookmark"))
        .await;
    assert_eq!(body["result"]["bookmark"], json!(before_insert));
    harness
        .ok("INSERT INTO notes VALUES ('kept'), ('also kept')")
        .await;
    let (_, body) = harness
        .get(&harness.database_url("/time_travel/bookmark"))
        .await;
    let after_insert = body["result"]["bookmark"].as_str().unwrap().to_owned();
    assert!(after_insert > before_insert);

    // A timestamp far in the future maps to the newest bookmark; one before creation fails.
    let (_, body) = harness
        .get(&harness.database_url("/time_travel/bookmark?timestamp=2999-01-01T00:00:00Z"))
        .await;
    assert_eq!(body["result"]["bookmark"], json!(after_insert));
    let (status, _) = harness
        .get(&harness.database_url("/time_travel/bookmark?timestamp=2000-01-01T00:00:00Z"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, body) = harness
        .post(
            &harness.database_url(&format!("/time_travel/restore?bookmark={before_insert}")),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["result"]["message"],
        json!("Database restored successfully")
    );
    assert_eq!(body["result"]["previous_bookmark"], json!(after_insert));
    let restored = body["result"]["bookmark"].as_str().unwrap().to_owned();
    assert!(restored > after_insert);
    assert_eq!(
        harness.rows("SELECT count(*) FROM notes"),
        vec![vec![json!(0)]]
    );

    // Undo the restore with previous_bookmark.
    let (status, _) = harness
        .post(
            &harness.database_url(&format!("/time_travel/restore?bookmark={after_insert}")),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        harness.rows("SELECT count(*) FROM notes"),
        vec![vec![json!(2)]]
    );

    let (status, body) = harness
        .post(&harness.database_url("/time_travel/restore"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(single_error(&body).0, 7400);
}

#[tokio::test]
async fn rate_limit_burst_answers_429_with_retry_after() {
    let harness = start();
    harness.sim.set_faults(Faults {
        rate_limit_burst: 2,
        retry_after_secs: 7,
        ..Faults::default()
    });
    for _ in 0..2 {
        let response = harness
            .client
            .get(harness.url(""))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "7");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            single_error(&body),
            (
                971,
                "Please wait and consider throttling your request speed".to_owned()
            )
        );
    }
    let (status, _) = harness.get(&harness.url("")).await;
    assert_eq!(status, StatusCode::OK);

    // Cloudflare's limit with its lockout, set over HTTP (tests/it/sim_fleet.rs has more).
    let response = harness
        .client
        .post(format!("{}/__sim/faults", harness.sim.root_url()))
        .json(&json!({"rate_limit": {"requests": 2, "window_ms": 60_000, "lockout_ms": 60_000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(harness.get(&harness.url("")).await.0, StatusCode::OK);
    assert_eq!(harness.get(&harness.url("")).await.0, StatusCode::OK);
    let response = harness
        .client
        .get(harness.url(""))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "60");
}

#[tokio::test]
async fn failures_before_and_after_commit() {
    let harness = start();
    harness.ok("CREATE TABLE t (a)").await;

    harness.sim.set_faults(Faults {
        fail_before_commit: 1,
        ..Faults::default()
    });
    let (status, body) = harness
        .query(&json!({"sql": "INSERT INTO t VALUES (1)"}))
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["success"], json!(false));
    assert_eq!(harness.rows("SELECT count(*) FROM t"), vec![vec![json!(0)]]);

    harness.sim.set_faults(Faults {
        fail_after_commit: 1,
        ..Faults::default()
    });
    let (status, _) = harness
        .query(&json!({"sql": "INSERT INTO t VALUES (2)"}))
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(harness.rows("SELECT a FROM t"), vec![vec![json!(2)]]);

    harness.sim.set_faults(Faults {
        drop_after_commit: 1,
        ..Faults::default()
    });
    let error = harness
        .client
        .post(harness.database_url("/raw"))
        .bearer_auth(TOKEN)
        .json(&json!({"sql": "INSERT INTO t VALUES (3)"}))
        .send()
        .await
        .unwrap_err();
    assert!(!error.is_status(), "{error:?}");
    assert_eq!(
        harness.rows("SELECT a FROM t ORDER BY a"),
        vec![vec![json!(2)], vec![json!(3)]]
    );
    // Every fault was used up: the next request is normal.
    assert_eq!(harness.sim.faults(), Faults::default());
    harness.ok("SELECT 1").await;
}

#[tokio::test]
async fn latency_is_added_to_api_requests() {
    let harness = start();
    harness.sim.set_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    let started = Instant::now();
    harness.ok("SELECT 1").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn stats_count_api_requests_only() {
    let harness = start();
    harness.sim.reset_stats();
    harness.ok("SELECT 1").await;
    harness.ok("SELECT 2").await;
    harness
        .post(&harness.database_url("/raw"), &json!({"sql": "SELECT 1"}))
        .await;
    harness.get(&harness.database_url("")).await;
    harness.get(&harness.url("")).await;
    let stats_url = format!("{}/__sim/stats", harness.sim.root_url());
    let over_http: Value = reqwest::get(&stats_url)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        over_http,
        json!({"total": 5, "by_endpoint": {
            "query": 2, "raw": 1, "get_database": 1, "list_databases": 1
        }, "held": 0, "rate_limited": 0, "lockouts": 0, "by_database": {"main-db": 4}})
    );
    let stats = harness.sim.stats();
    assert_eq!(stats.total, 5);
    assert_eq!(stats.by_endpoint["query"], 2);

    let reset = reqwest::Client::new()
        .post(format!("{}/__sim/stats/reset", harness.sim.root_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), StatusCode::OK);
    assert_eq!(harness.sim.stats().total, 0);
}

#[tokio::test]
async fn database_lifecycle() {
    let harness = start();
    let (status, body) = harness
        .post(
            &harness.url(""),
            &json!({"name": "second-db", "primary_location_hint": "weur"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let uuid = body["result"]["uuid"].as_str().unwrap().to_owned();
    assert_eq!(body["result"]["name"], json!("second-db"));
    assert_eq!(body["result"]["version"], json!("production"));
    assert_eq!(
        body["result"]["read_replication"],
        json!({"mode": "disabled"})
    );

    let (status, body) = harness
        .post(&harness.url(""), &json!({"name": "second-db"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["success"], json!(false));
    let (status, body) = harness
        .post(&harness.url(""), &json!({"name": "bad name"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(single_error(&body).0, 7400);

    // Get by name, with `fields`.
    let (status, body) = harness
        .get(&harness.url("/second-db?fields=uuid,name"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"], json!({"uuid": uuid, "name": "second-db"}));

    let (_, body) = harness.get(&harness.url("?name=second")).await;
    assert_eq!(body["result"].as_array().unwrap().len(), 1);
    assert_eq!(body["result_info"]["total_count"], json!(1));
    let (_, body) = harness.get(&harness.url("")).await;
    assert_eq!(body["result"].as_array().unwrap().len(), 2);

    let (status, body) = harness
        .send(
            harness
                .client
                .patch(harness.url(&format!("/{uuid}")))
                .json(&json!({"read_replication": {"mode": "auto"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"]["read_replication"], json!({"mode": "auto"}));
    let (status, _) = harness
        .send(
            harness
                .client
                .put(harness.url(&format!("/{uuid}")))
                .json(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, body) = harness
        .send(harness.client.delete(harness.url(&format!("/{uuid}"))))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"success": true, "errors": [], "messages": [], "result": null})
    );
    let (status, _) = harness.get(&harness.url(&format!("/{uuid}"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn import_uploads_then_ingests() {
    let harness = start();
    let sql = "CREATE TABLE imported (id INTEGER PRIMARY KEY, name TEXT);\n\
               INSERT INTO imported VALUES (1, 'one');\nINSERT INTO imported VALUES (2, 'two');";
    // `md5sum` of the text above.
    let etag = "ae0372fb9b88fe055ddeb1420c35bcc5";
    let url = harness.database_url("/import");
    let (status, body) = harness
        .post(&url, &json!({"action": "init", "etag": etag}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let filename = body["result"]["filename"].as_str().unwrap().to_owned();
    let upload_url = body["result"]["upload_url"].as_str().unwrap().to_owned();
    let uploaded = harness
        .client
        .put(&upload_url)
        .body(sql)
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), StatusCode::OK);
    assert_eq!(
        uploaded.headers()["etag"].to_str().unwrap(),
        format!("\"{etag}\"")
    );

    let (status, body) = harness
        .post(
            &url,
            &json!({"action": "ingest", "etag": etag, "filename": filename}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let at_bookmark = body["result"]["at_bookmark"].as_str().unwrap().to_owned();
    let (status, body) = harness
        .post(
            &url,
            &json!({"action": "poll", "current_bookmark": at_bookmark}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["status"], json!("complete"));
    assert_eq!(body["result"]["result"]["num_queries"], json!(3));
    assert!(body["result"]["result"]["final_bookmark"].as_str().unwrap() > at_bookmark.as_str());
    assert_eq!(
        harness.rows("SELECT name FROM imported ORDER BY id"),
        vec![vec![json!("one")], vec![json!("two")]]
    );

    let (_, body) = harness
        .post(&url, &json!({"action": "poll", "current_bookmark": "nope"}))
        .await;
    assert_eq!(body["result"]["success"], json!(false));
    assert_eq!(
        body["result"]["error"],
        json!("Not currently importing anything.")
    );
}

#[tokio::test]
async fn data_persists_across_restarts() {
    let directory = tempfile::tempdir().unwrap();
    let config = SimConfig {
        data_dir: Some(directory.path().to_owned()),
        tokens: vec![TOKEN.to_owned()],
        databases: vec![(
            "declared".to_owned(),
            "22222222-2222-4222-8222-222222222222".to_owned(),
        )],
    };
    let (uuid, bookmark) = {
        let harness = start_with(config.clone());
        harness
            .ok("CREATE TABLE kept (v); INSERT INTO kept VALUES ('yes');")
            .await;
        let (_, body) = harness
            .get(&harness.database_url("/time_travel/bookmark"))
            .await;
        (
            harness.database.clone(),
            body["result"]["bookmark"].as_str().unwrap().to_owned(),
        )
    };
    let harness = start_with(config);
    assert_eq!(harness.database, uuid);
    assert_eq!(harness.rows("SELECT v FROM kept"), vec![vec![json!("yes")]]);
    let (_, body) = harness
        .get(&harness.database_url("/time_travel/bookmark"))
        .await;
    assert_eq!(body["result"]["bookmark"], json!(bookmark));
    let (status, body) = harness
        .get(&harness.url("/22222222-2222-4222-8222-222222222222"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"]["name"], json!("declared"));
}
