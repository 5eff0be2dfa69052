//! The simulator with fleets of per-tenant databases: bulk creation, listing thousands over
//! pages, per-database request counts, Cloudflare's rate limit with its lockout, and time travel
//! to a timestamp read inside a write. Over real HTTP on 127.0.0.1.

use std::collections::BTreeSet;

use d1ctl::sim::{Faults, RateLimit, SimConfig, Simulator};
use reqwest::StatusCode;
use serde_json::{Value, json};

const TOKEN: &str = "fleet-token";
const OTHER_TOKEN: &str = "fleet-other-token";
const ACCOUNT: &str = "023e105f4ecef8ad9ca31a8372d0c353";

fn start(data_dir: Option<std::path::PathBuf>) -> Simulator {
    Simulator::start(SimConfig {
        data_dir,
        tokens: vec![TOKEN.to_owned(), OTHER_TOKEN.to_owned()],
        databases: Vec::new(),
    })
    .unwrap()
}

fn databases_url(sim: &Simulator, tail: &str) -> String {
    format!("{}/accounts/{ACCOUNT}/d1/database{tail}", sim.base_url())
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.bearer_auth(TOKEN).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn create_over_http(
    client: &reqwest::Client,
    sim: &Simulator,
    prefix: &str,
    count: usize,
) -> Vec<(String, String)> {
    let response = client
        .post(format!("{}/__sim/databases", sim.root_url()))
        .json(&json!({"prefix": prefix, "count": count}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["name"].as_str().unwrap().to_owned(),
                item["uuid"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// One client per test: building one loads the system's certificates, which costs more than
/// the simulator's answer.
async fn query(
    client: &reqwest::Client,
    sim: &Simulator,
    uuid: &str,
    body: &Value,
) -> (StatusCode, Value) {
    send(
        client
            .post(databases_url(sim, &format!("/{uuid}/query")))
            .json(body),
    )
    .await
}

#[tokio::test]
async fn five_thousand_databases_list_over_pages() {
    let sim = start(None);
    let client = reqwest::Client::new();
    let created = sim.create_databases("tenant-", 5000);
    assert_eq!(created.len(), 5000);
    assert_eq!(created[0].0, "tenant-1");
    assert_eq!(created[4999].0, "tenant-5000");
    // Existing names are found, not created again; the route creates the two missing ones.
    let over_http = create_over_http(&client, &sim, "tenant-", 5002).await;
    assert_eq!(over_http[..5000], created[..]);
    assert_eq!(over_http[5001].0, "tenant-5002");

    let mut seen = Vec::new();
    let mut counts = Vec::new();
    for page in 1..=7 {
        let (status, body) =
            send(client.get(databases_url(&sim, &format!("?page={page}&per_page=1000")))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["result_info"]["total_count"], json!(5002));
        assert_eq!(body["result_info"]["page"], json!(page));
        assert_eq!(body["result_info"]["per_page"], json!(1000));
        let items = body["result"].as_array().unwrap();
        assert_eq!(body["result_info"]["count"], json!(items.len()));
        counts.push(items.len());
        for item in items {
            // Only `d1_database-response`'s fields: listing opens no database.
            let keys: BTreeSet<&str> = item
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                keys,
                BTreeSet::from(["created_at", "name", "uuid", "version"])
            );
            seen.push((
                item["name"].as_str().unwrap().to_owned(),
                item["uuid"].as_str().unwrap().to_owned(),
            ));
        }
    }
    assert_eq!(counts, [1000, 1000, 1000, 1000, 1000, 2, 0]);
    assert_eq!(
        seen, over_http,
        "pages cover every database once, in creation order"
    );

    // `name` is a substring search (see src/sim/http/databases.rs).
    let (_, body) = send(client.get(databases_url(&sim, "?name=tenant-50&per_page=10000"))).await;
    let names: Vec<&str> = body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].as_str().unwrap())
        .collect();
    let mut expected = vec!["tenant-50".to_owned()];
    expected.extend((500..=509).map(|number| format!("tenant-{number}")));
    expected.extend((5000..=5002).map(|number| format!("tenant-{number}")));
    assert_eq!(names, expected);
    assert_eq!(body["result_info"]["total_count"], json!(14));

    for per_page in [9, 10_001] {
        let (status, body) =
            send(client.get(databases_url(&sim, &format!("?per_page={per_page}")))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["errors"][0]["code"], json!(7400));
    }
    let stats = sim.stats();
    assert_eq!(stats.by_endpoint["list_databases"], 10);
    assert!(stats.by_database.is_empty());
}

#[tokio::test]
async fn file_fleets_beyond_the_open_limit_keep_their_data_across_restarts() {
    let folder = tempfile::tempdir().unwrap();
    let count = 300; // more than the 256 databases kept open at once
    let client = reqwest::Client::new();
    let created = {
        let sim = start(Some(folder.path().to_owned()));
        let created = create_over_http(&client, &sim, "shard-", count).await;
        for (name, uuid) in &created {
            let (status, body) = query(
                &client,
                &sim,
                uuid,
                &json!({"batch": [
                    {"sql": "CREATE TABLE owner (name TEXT)"},
                    {"sql": "INSERT INTO owner VALUES (?)", "params": [name]},
                ]}),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        // Every database answers with its own rows, the early (closed) ones reopened.
        for (name, uuid) in &created {
            let (_, body) = query(
                &client,
                &sim,
                uuid,
                &json!({"sql": "SELECT name FROM owner"}),
            )
            .await;
            assert_eq!(body["result"][0]["results"], json!([{"name": name}]));
        }
        let stats = sim.stats();
        assert_eq!(stats.by_database.len(), count);
        assert!(stats.by_database.values().all(|requests| *requests == 2));
        created
    };
    let sim = start(Some(folder.path().to_owned()));
    let (_, body) = send(client.get(databases_url(&sim, "?per_page=1000"))).await;
    let listed: Vec<&str> = body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["uuid"].as_str().unwrap())
        .collect();
    let uuids: Vec<&str> = created.iter().map(|(_, uuid)| uuid.as_str()).collect();
    assert_eq!(listed, uuids);
    let (name, uuid) = &created[0];
    assert_eq!(
        sim.query_rows(uuid, "SELECT name FROM owner").unwrap(),
        vec![vec![json!(name)]]
    );
}

#[tokio::test]
async fn requests_are_counted_per_database_name() {
    let sim = start(None);
    let client = reqwest::Client::new();
    let fleet = create_over_http(&client, &sim, "member-", 20).await;
    for (_, uuid) in &fleet {
        let (status, _) = query(&client, &sim, uuid, &json!({"sql": "SELECT 1"})).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (first_name, first_uuid) = &fleet[0];
    // GET takes a name as well as a uuid; the other routes only a uuid (§4).
    assert_eq!(
        send(client.get(databases_url(&sim, &format!("/{first_name}"))))
            .await
            .0,
        StatusCode::OK
    );
    let bookmark_url = databases_url(&sim, &format!("/{first_uuid}/time_travel/bookmark"));
    assert_eq!(send(client.get(bookmark_url)).await.0, StatusCode::OK);
    let (status, _) = query(&client, &sim, first_name, &json!({"sql": "SELECT 1"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    send(client.get(databases_url(&sim, ""))).await;

    let counted = sim.stats();
    let mut expected: std::collections::BTreeMap<String, u64> =
        fleet.iter().map(|(name, _)| (name.clone(), 1)).collect();
    expected.insert(first_name.clone(), 3);
    assert_eq!(counted.by_database, expected);
    assert_eq!(counted.by_endpoint["query"], 21);
    assert_eq!(counted.total, 24);
}

#[tokio::test]
async fn exceeding_the_rate_limit_locks_the_credential_out() {
    let sim = start(None);
    let client = reqwest::Client::new();
    let uuid = sim.create_database("limited");
    sim.execute(&uuid, "CREATE TABLE t (n)").unwrap();
    let set = client
        .post(format!("{}/__sim/faults", sim.root_url()))
        .json(&json!({"rate_limit": {"requests": 3, "window_ms": 60_000, "lockout_ms": 90_500}}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::OK);
    assert_eq!(
        sim.faults().rate_limit,
        Some(RateLimit {
            requests: 3,
            window_ms: 60_000,
            lockout_ms: 90_500,
        })
    );

    let insert = json!({"sql": "INSERT INTO t VALUES (1)"});
    let url = databases_url(&sim, &format!("/{uuid}/query"));
    for remaining in ["2", "1", "0"] {
        let response = client
            .post(&url)
            .bearer_auth(TOKEN)
            .json(&insert)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-ratelimit-limit"], "3");
        assert_eq!(response.headers()["x-ratelimit-remaining"], remaining);
        assert_eq!(response.headers()["x-ratelimit-reset"], "60");
    }
    // The fourth begins the lockout, the fifth falls in it: neither executes.
    for _ in 0..2 {
        let response = client
            .post(&url)
            .bearer_auth(TOKEN)
            .json(&insert)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((90..=91).contains(&retry_after), "{retry_after}");
        assert_eq!(response.headers()["x-ratelimit-remaining"], "0");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["errors"],
            json!([{"code": 971, "message": "Please wait and consider throttling your request speed"}])
        );
        assert_eq!(body["success"], json!(false));
    }
    assert_eq!(
        sim.query_rows(&uuid, "SELECT count(*) FROM t").unwrap(),
        vec![vec![json!(3)]]
    );

    // The limit is per credential: another token, or a key, has its own window.
    let response = client
        .post(&url)
        .bearer_auth(OTHER_TOKEN)
        .json(&insert)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-ratelimit-remaining"], "2");
    let response = client
        .post(&url)
        .header("X-Auth-Email", "ops@example.com")
        .header("X-Auth-Key", TOKEN)
        .json(&insert)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the key is the locked credential"
    );

    let stats = sim.stats();
    assert_eq!((stats.rate_limited, stats.lockouts), (3, 1));
    assert_eq!(stats.by_database["limited"], 7);

    // Setting the faults again starts every window afresh; without a limit, no headers.
    sim.set_faults(Faults::default());
    let response = client
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&insert)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("x-ratelimit-limit").is_none());
}

#[tokio::test]
async fn restoring_to_a_timestamp_read_inside_a_write_undoes_that_write() {
    let sim = start(None);
    let client = reqwest::Client::new();
    let uuid = sim.create_database("rollback");
    let (status, _) = query(
        &client,
        &sim,
        &uuid,
        &json!({"sql": "CREATE TABLE t (n INTEGER)"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let now = "SELECT strftime('%Y-%m-%dT%H:%M:%fZ','now') AS at";
    let mut times = Vec::new();
    for number in 1..=12 {
        let (status, body) = query(
            &client,
            &sim,
            &uuid,
            &json!({"batch": [
                {"sql": "INSERT INTO t VALUES (?)", "params": [number]},
                {"sql": now},
            ]}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        times.push(
            body["result"][1]["results"][0]["at"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let (_, body) = query(&client, &sim, &uuid, &json!({"sql": now})).await;
    let after_all = body["result"][0]["results"][0]["at"]
        .as_str()
        .unwrap()
        .to_owned();

    let restore = |time: &str| {
        send(client.post(databases_url(
            &sim,
            &format!("/{uuid}/time_travel/restore?timestamp={time}"),
        )))
    };
    for (index, time) in times.iter().enumerate() {
        let (status, body) = restore(time).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            sim.query_rows(&uuid, "SELECT count(*), coalesce(max(n), 0) FROM t")
                .unwrap(),
            vec![vec![json!(index), json!(index)]],
            "restoring to {time}, read inside write {}",
            index + 1
        );
    }
    let (status, _) = restore(&after_all).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        sim.query_rows(&uuid, "SELECT count(*) FROM t").unwrap(),
        vec![vec![json!(12)]]
    );
}

#[tokio::test]
async fn the_sim_command_creates_fleets_at_start() {
    use std::io::BufRead as _;

    /// Stops the simulator even when an assertion fails first.
    struct Running(std::process::Child);
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    let folder = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_d1ctl"))
        .args(["sim", "--port", "0", "--data", "sim-data", "--token", TOKEN])
        .args(["--create", "tenant-:3", "--create", "shard-:2"])
        .current_dir(folder.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let child = Running(child);
    // The first line names the bound address; requests wait in the listener's backlog until
    // the fleets exist and the simulator serves.
    let base_url = stderr
        .lines()
        .map(Result::unwrap)
        .find_map(|line| {
            let start = line.find("http://")?;
            let url = &line[start..];
            Some(url[..url.find(' ').unwrap_or(url.len())].to_owned())
        })
        .unwrap();
    let listed =
        send(reqwest::Client::new().get(format!("{base_url}/accounts/{ACCOUNT}/d1/database")))
            .await;
    drop(child);
    let names: Vec<&str> = listed.1["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["tenant-1", "tenant-2", "tenant-3", "shard-1", "shard-2"]
    );

    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_d1ctl"))
        .args([
            "sim", "--port", "0", "--token", TOKEN, "--create", "tenant-",
        ])
        .current_dir(folder.path())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("`--create tenant-` is not PREFIX:COUNT"),
        "{stderr}"
    );
}
