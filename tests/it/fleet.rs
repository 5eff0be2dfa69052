//! Fleet envs on the simulator: one env of many tenant databases, promoted at about one request
//! per member. Every member written to has rows, checked after.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use d1ctl::sim::{Faults, RateLimit, SimConfig, Simulator};

use crate::common::{Output, Project, sim_rows};

const TOKEN: &str = "fleet-token";
const ACCOUNT: &str = "abcdefabcdefabcdefabcdefabcdef34";

const MIGRATIONS: [(&str, &str); 4] = [
    (
        "0001_users.sql",
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n",
    ),
    (
        "0002_posts.sql",
        "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id));\n",
    ),
    ("0003_name.sql", "ALTER TABLE users ADD COLUMN name TEXT;\n"),
    (
        "0004_index.sql",
        "CREATE INDEX posts_user ON posts(user_id);\n",
    ),
];

/// local (sqlite) → tenants (a fleet of the simulator's `tenant-…` databases); `first/` is the
/// same project with only the first migration.
pub(crate) struct FleetFixture {
    pub(crate) sim: Simulator,
    pub(crate) project: Project,
}

impl FleetFixture {
    pub(crate) fn new(members: usize) -> Self {
        let sim = Simulator::start(SimConfig {
            data_dir: None,
            tokens: vec![TOKEN.to_owned()],
            databases: Vec::new(),
        })
        .unwrap();
        for n in 1..=members {
            sim.create_database(&format!("tenant-{n}"));
        }
        // Not a member: the prefix must not take it.
        sim.create_database("billing");
        let fixture = Self {
            sim,
            project: Project::new(),
        };
        let config = fixture.config("fleet.name_prefix = \"tenant-\"\n");
        fixture.project.config(&config);
        fixture.project.write("first/environments.toml", &config);
        for (name, sql) in MIGRATIONS {
            fixture.project.migration(name, sql);
        }
        fixture.project.write(
            &format!("first/migrations/{}", MIGRATIONS[0].0),
            MIGRATIONS[0].1,
        );
        fixture
    }

    pub(crate) fn config(&self, fleet: &str) -> String {
        format!(
            "[project]\nladder = [\"local\", \"tenants\"]\n\n\
             [env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n\n\
             [env.tenants]\nbackend = \"d1\"\naccount_id = \"{ACCOUNT}\"\napi_base_url = \"{}\"\n{fleet}",
            self.sim.base_url()
        )
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = self.project.command(args);
        command
            .env("CLOUDFLARE_API_TOKEN", TOKEN)
            .stdin(Stdio::null());
        command
    }

    pub(crate) fn run_ok(&self, args: &[&str], code: i32) -> Output {
        Output::of(&mut self.command(args)).expect_code(code, args)
    }

    pub(crate) fn run_in_first(&self, args: &[&str], code: i32) -> Output {
        let mut command = self.command(args);
        command.current_dir(self.project.path("first"));
        Output::of(&mut command).expect_code(code, args)
    }

    pub(crate) fn rows(&self, member: &str, sql: &str) -> Vec<String> {
        sim_rows(&self.sim, member, sql)
    }

    /// Every member at the first migration, with two users each.
    pub(crate) fn members_at_first_with_users(&self, members: usize) {
        self.run_in_first(&["promote", "--to", "tenants", "--cascade"], 0);
        for n in 1..=members {
            self.sim
                .execute(
                    &format!("tenant-{n}"),
                    &format!(
                        "INSERT INTO users VALUES (1, 'a@tenant-{n}.example'), (2, 'b@tenant-{n}.example');"
                    ),
                )
                .unwrap();
        }
    }

    pub(crate) fn raw_requests(&self) -> u64 {
        self.sim
            .stats()
            .by_endpoint
            .get("raw")
            .copied()
            .unwrap_or_default()
    }

    /// The migrations a member's d1ctl ledger records, each once.
    pub(crate) fn recorded(&self, member: &str) -> Vec<String> {
        self.rows(member, "SELECT name FROM _d1ctl_migrations ORDER BY name")
    }
}

fn all_names() -> Vec<String> {
    MIGRATIONS
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect()
}

#[test]
fn an_agreeing_fleet_costs_one_request_per_member_and_keeps_its_rows() {
    let fleet = FleetFixture::new(12);
    fleet.members_at_first_with_users(12);
    fleet.sim.reset_stats();
    let out = fleet.run_ok(
        &[
            "promote",
            "--to",
            "tenants",
            "--cascade",
            "--concurrency",
            "1",
            "--format",
            "json",
        ],
        0,
    );
    let json = out.json();
    let rung = &json["rungs"][1];
    assert_eq!(rung["outcome"], "promoted", "{}", out.stderr);
    assert_eq!(rung["members"], 12);
    assert_eq!(rung["rollout"]["tally"]["promoted"], 12);
    // The first member is read (it tells the group state), the others get one batch each.
    assert_eq!(fleet.raw_requests(), 12 + 1, "{}", out.stderr);
    let paths: Vec<&str> = rung["rollout"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths[0], "read_then_express");
    assert!(paths[1..].iter().all(|p| *p == "express"), "{paths:?}");
    for n in 1..=12 {
        let member = format!("tenant-{n}");
        assert_eq!(fleet.recorded(&member), all_names(), "{member}");
        assert_eq!(
            fleet.rows(&member, "SELECT email FROM users ORDER BY id"),
            [
                format!("a@tenant-{n}.example"),
                format!("b@tenant-{n}.example")
            ],
            "{member}'s rows"
        );
        assert_eq!(
            fleet.rows(&member, "SELECT count(*) FROM _d1ctl_lock"),
            ["0"],
            "{member}'s lock is released"
        );
    }
    assert!(
        fleet.rows(
            "billing",
            "SELECT count(*) FROM sqlite_master WHERE name = 'users'"
        ) == ["0"],
        "a database outside the prefix is not a member"
    );

    // Again: every member is finished, and costs one read.
    fleet.sim.reset_stats();
    let again = fleet.run_ok(&["promote", "--to", "tenants", "--format", "json"], 0);
    assert_eq!(
        again.json()["rungs"][0]["outcome"],
        "up_to_date",
        "{}",
        again.stderr
    );
    assert!(fleet.raw_requests() <= 12 + 1, "{}", fleet.raw_requests());
    for n in 1..=12 {
        assert_eq!(fleet.recorded(&format!("tenant-{n}")), all_names());
    }
}

#[test]
fn laggards_take_the_full_path_and_drifted_members_are_refused_by_name() {
    let fleet = FleetFixture::new(10);
    fleet.members_at_first_with_users(10);
    // Five members that joined after the first promotion: nothing applied yet.
    for n in 11..=15 {
        fleet.sim.create_database(&format!("tenant-{n}"));
    }
    // Two members whose schema was changed by hand.
    for member in ["tenant-4", "tenant-7"] {
        fleet
            .sim
            .execute(member, "CREATE TABLE notes (body TEXT);")
            .unwrap();
    }
    let out = fleet.run_ok(
        &[
            "promote",
            "--to",
            "tenants",
            "--cascade",
            "--concurrency",
            "1",
            "--format",
            "json",
        ],
        1,
    );
    let json = out.json();
    let members = json["rungs"][1]["rollout"]["members"]
        .as_array()
        .unwrap()
        .clone();
    let of = |name: &str| {
        members
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {members:?}"))
            .clone()
    };
    for member in ["tenant-4", "tenant-7"] {
        assert_eq!(of(member)["outcome"], "refused", "{member}");
        assert!(
            of(member)["reason"].as_str().unwrap().contains("drifted"),
            "{}",
            of(member)
        );
        assert_eq!(
            fleet.recorded(member),
            [MIGRATIONS[0].0],
            "nothing written to {member}"
        );
        assert!(
            out.stderr.contains(member),
            "{member} named:\n{}",
            out.stderr
        );
    }
    for member in [
        "tenant-11",
        "tenant-12",
        "tenant-13",
        "tenant-14",
        "tenant-15",
    ] {
        assert_eq!(of(member)["outcome"], "promoted", "{member}");
        assert_eq!(of(member)["path"], "full", "{member}");
        assert_eq!(fleet.recorded(member), all_names(), "{member}");
    }
    for n in [1, 2, 3, 5, 6, 8, 9, 10] {
        let member = format!("tenant-{n}");
        assert_eq!(fleet.recorded(&member), all_names(), "{member}");
        assert_eq!(
            fleet.rows(&member, "SELECT count(*) FROM users"),
            ["2"],
            "{member}'s rows"
        );
    }
    let express = members.iter().filter(|m| m["path"] == "express").count();
    assert_eq!(
        express, 7,
        "all agreeing members but the first at one request: {members:?}"
    );
}

#[test]
fn two_hundred_members_are_found_over_list_pages_within_the_rate_limit() {
    let fleet = FleetFixture::new(0);
    fleet.sim.create_databases("tenant-", 200);
    fleet.sim.set_faults(Faults {
        max_per_page: 50,
        rate_limit: Some(RateLimit {
            requests: 300,
            window_ms: 10_000,
            lockout_ms: 300_000,
        }),
        ..Faults::default()
    });
    let out = fleet.run_ok(
        &[
            "promote",
            "--to",
            "tenants",
            "--cascade",
            "--rate",
            "300/10s",
            "--format",
            "json",
        ],
        0,
    );
    let json = out.json();
    assert_eq!(json["rungs"][1]["members"], 200, "{}", out.stderr);
    assert_eq!(json["rungs"][1]["rollout"]["tally"]["promoted"], 200);
    let stats = fleet.sim.stats();
    // Four pages of 50 and the empty one that ends the list.
    assert_eq!(
        stats.by_endpoint.get("list_databases"),
        Some(&5),
        "{stats:?}"
    );
    assert_eq!(
        (stats.rate_limited, stats.lockouts),
        (0, 0),
        "never over the limit"
    );
    // One batch per member; the first is read first, in two requests since it has no
    // ledger yet (the first read finds the tables missing).
    assert_eq!(stats.by_endpoint.get("raw"), Some(&202), "{stats:?}");
    assert_eq!(stats.by_database.get("tenant-1"), Some(&3));
    assert!(
        (2..=200).all(|n| stats.by_database.get(&format!("tenant-{n}")) == Some(&1)),
        "one request each: {stats:?}"
    );
    for n in [1, 57, 200] {
        assert_eq!(fleet.recorded(&format!("tenant-{n}")), all_names());
    }
}

#[test]
fn a_failing_member_stops_new_members_after_max_failures() {
    let fleet = FleetFixture::new(10);
    fleet.members_at_first_with_users(10);
    // The first member's read and batch, then three batches; the fifth member's batch fails
    // before it commits.
    fleet.sim.set_faults(Faults {
        skip_sql_requests: 5,
        fail_before_commit: 1,
        ..Faults::default()
    });
    let out = fleet.run_ok(
        &[
            "promote",
            "--to",
            "tenants",
            "--cascade",
            "--concurrency",
            "1",
            "--max-failures",
            "1",
            "--format",
            "json",
        ],
        1,
    );
    let json = out.json();
    let rung = &json["rungs"][1];
    assert_eq!(rung["outcome"], "failed", "{}", out.stderr);
    assert_eq!(rung["rollout"]["stopped"]["reason"], "failures");
    let outcomes: Vec<&str> = rung["rollout"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "promoted",
            "promoted",
            "promoted",
            "promoted",
            "failed",
            "not_started",
            "not_started",
            "not_started",
            "not_started",
            "not_started"
        ]
    );
    let failed = &rung["rollout"]["members"][4];
    assert!(
        failed["state_after"]
            .as_str()
            .unwrap()
            .contains("as before"),
        "{failed}"
    );
    assert!(out.stderr.contains("tenant-5"), "{}", out.stderr);
    for n in 5..=10 {
        let member = format!("tenant-{n}");
        assert_eq!(
            fleet.recorded(&member),
            [MIGRATIONS[0].0],
            "{member} untouched"
        );
        assert_eq!(fleet.rows(&member, "SELECT count(*) FROM users"), ["2"]);
    }
    // The rerun goes on where it stopped.
    fleet.sim.set_faults(Faults::default());
    fleet.run_ok(&["promote", "--to", "tenants"], 0);
    for n in 1..=10 {
        assert_eq!(fleet.recorded(&format!("tenant-{n}")), all_names());
    }
}

#[test]
fn a_rollout_killed_half_way_resumes_with_nothing_applied_twice() {
    let fleet = FleetFixture::new(10);
    fleet.members_at_first_with_users(10);
    fleet.run_ok(&["promote", "--to", "local"], 0);
    // The first member's read and batch and four more batches pass; the sixth member's batch
    // commits and its answer never comes.
    fleet.sim.set_faults(Faults {
        skip_sql_requests: 6,
        hold_after_commit: 1,
        ..Faults::default()
    });
    let mut child = fleet
        .command(&["promote", "--to", "tenants", "--concurrency", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while fleet.sim.stats().held == 0 {
        assert!(Instant::now() < deadline, "{:?}", fleet.sim.stats());
        assert!(child.try_wait().unwrap().is_none(), "ended before the hold");
        std::thread::yield_now();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        fleet.recorded("tenant-6"),
        all_names(),
        "the held batch committed"
    );
    assert_eq!(fleet.recorded("tenant-7"), [MIGRATIONS[0].0]);
    fleet.sim.set_faults(Faults::default());
    fleet.sim.reset_stats();

    let out = fleet.run_ok(
        &[
            "promote",
            "--to",
            "tenants",
            "--concurrency",
            "1",
            "--format",
            "json",
        ],
        0,
    );
    // Six finished members at one read each; the seventh read then written; three batches.
    assert_eq!(fleet.raw_requests(), 6 + 2 + 3, "{}", out.stderr);
    for n in 1..=10 {
        let member = format!("tenant-{n}");
        assert_eq!(fleet.recorded(&member), all_names(), "{member}: each once");
        assert_eq!(
            fleet.rows(&member, "SELECT count(*) FROM users"),
            ["2"],
            "{member}'s rows"
        );
    }
}

#[test]
fn rollback_restores_the_last_rollout_or_one_member_by_its_own_clock() {
    let fleet = FleetFixture::new(4);
    fleet.members_at_first_with_users(4);
    fleet.run_ok(&["promote", "--to", "tenants", "--cascade"], 0);
    for n in 1..=4 {
        assert_eq!(fleet.recorded(&format!("tenant-{n}")), all_names());
    }
    let out = fleet.run_ok(
        &["rollback", "tenants", "--last", "--yes", "--format", "json"],
        0,
    );
    let json = out.json();
    assert_eq!(json["command"], "promote --to tenants", "{}", out.stderr);
    for (index, member) in json["members"].as_array().unwrap().iter().enumerate() {
        assert_eq!(member["outcome"], "restored", "{member}");
        assert!(
            member["point"].as_str().unwrap().ends_with('Z'),
            "a timestamp: {member}"
        );
        let name = format!("tenant-{}", index + 1);
        assert_eq!(fleet.recorded(&name), [MIGRATIONS[0].0], "{name} is back");
        assert_eq!(
            fleet.rows(&name, "SELECT count(*) FROM users"),
            ["2"],
            "{name}'s rows"
        );
        assert_eq!(
            fleet.rows(
                &name,
                "SELECT count(*) FROM sqlite_master WHERE name = 'posts'"
            ),
            ["0"]
        );
    }

    // Promoted again, then one member back alone.
    fleet.run_ok(&["promote", "--to", "tenants"], 0);
    fleet.run_ok(
        &[
            "rollback", "tenants", "--member", "tenant-2", "--last", "--yes",
        ],
        0,
    );
    assert_eq!(fleet.recorded("tenant-2"), [MIGRATIONS[0].0]);
    assert_eq!(fleet.rows("tenant-2", "SELECT count(*) FROM users"), ["2"]);
    for member in ["tenant-1", "tenant-3", "tenant-4"] {
        assert_eq!(fleet.recorded(member), all_names(), "{member} untouched");
    }
}

#[test]
fn a_fleet_env_is_checked_when_read_and_names_a_member_or_not() {
    let fleet = FleetFixture::new(2);
    let out = fleet.run_ok(&["apply", "tenants"], 2);
    assert!(out.stderr.contains("is a fleet"), "{}", out.stderr);
    assert!(out.stderr.contains("--member"), "{}", out.stderr);
    let out = fleet.run_ok(&["apply", "tenants", "--member", "billing"], 2);
    assert!(
        out.stderr.contains("is not one of env `tenants`"),
        "{}",
        out.stderr
    );
    fleet.project.config(&fleet.config(
        "fleet.name_prefix = \"tenant-\"\ndatabase_id = \"00000000-0000-4000-8000-000000000001\"\n",
    ));
    let out = fleet.run_ok(&["status"], 2);
    assert!(
        out.stderr.contains("`database_id` and `fleet` together"),
        "{}",
        out.stderr
    );
}

#[test]
fn ctrl_c_lets_the_member_in_flight_finish_and_starts_no_other() {
    let fleet = FleetFixture::new(8);
    fleet.members_at_first_with_users(8);
    fleet.run_ok(&["promote", "--to", "local"], 0);
    fleet.sim.set_faults(Faults {
        latency_ms: 150,
        ..Faults::default()
    });
    fleet.sim.reset_stats();
    let child = fleet
        .command(&[
            "promote",
            "--to",
            "tenants",
            "--concurrency",
            "1",
            "--format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    // The first member read and written, the second's batch on its way.
    while fleet.raw_requests() < 3 {
        assert!(Instant::now() < deadline, "{:?}", fleet.sim.stats());
        std::thread::yield_now();
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let out = Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert_eq!(out.code, 1, "{}", out.stderr);
    let json = out.json();
    let rollout = &json["rungs"][0]["rollout"];
    assert_eq!(
        rollout["stopped"]["reason"], "interrupted",
        "{}",
        out.stderr
    );
    let mut promoted = 0;
    for member in rollout["members"].as_array().unwrap() {
        let name = member["name"].as_str().unwrap();
        match member["outcome"].as_str().unwrap() {
            "promoted" => {
                promoted += 1;
                assert_eq!(fleet.recorded(name), all_names(), "{name}");
            }
            "not_started" => assert_eq!(fleet.recorded(name), [MIGRATIONS[0].0], "{name}"),
            other => panic!("{name}: {other}"),
        }
        assert_eq!(fleet.rows(name, "SELECT count(*) FROM users"), ["2"]);
    }
    assert!(
        (2..8).contains(&promoted),
        "{promoted} promoted before the stop"
    );
}

#[test]
fn drift_groups_members_by_schema_against_the_rung_below() {
    let fleet = FleetFixture::new(5);
    fleet.members_at_first_with_users(5);
    fleet.run_ok(&["promote", "--to", "tenants", "--cascade"], 0);
    fleet.sim.reset_stats();
    let same = fleet.run_ok(&["drift", "tenants", "--format", "json"], 0);
    assert_eq!(same.json()["groups"].as_array().unwrap().len(), 1);
    assert_eq!(fleet.raw_requests(), 5, "one read per member");
    fleet
        .sim
        .execute("tenant-3", "CREATE TABLE notes (body TEXT);")
        .unwrap();
    let out = fleet.run_ok(&["drift", "tenants", "local", "--format", "json"], 1);
    let json = out.json();
    assert_eq!(json["against"], "local");
    let groups = json["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{json}");
    assert_eq!(groups[0]["same"], true);
    assert_eq!(groups[0]["members"].as_array().unwrap().len(), 4);
    assert_eq!(groups[1]["members"], serde_json::json!(["tenant-3"]));
    assert!(out.stderr.contains("notes"), "{}", out.stderr);
}

#[test]
fn a_canary_stops_for_a_confirmation_and_yes_goes_on() {
    let fleet = FleetFixture::new(6);
    fleet.members_at_first_with_users(6);
    let out = fleet.run_ok(
        &[
            "promote",
            "--to",
            "tenants",
            "--cascade",
            "--canary",
            "2",
            "--format",
            "json",
        ],
        1,
    );
    let rollout = &out.json()["rungs"][1]["rollout"];
    assert_eq!(
        rollout["stopped"]["reason"], "wave_not_confirmed",
        "{}",
        out.stderr
    );
    assert_eq!(rollout["tally"]["promoted"], 2);
    assert!(
        out.stderr.contains("no terminal to confirm the next wave"),
        "{}",
        out.stderr
    );
    assert_eq!(fleet.recorded("tenant-3"), [MIGRATIONS[0].0]);
    let out = fleet.run_ok(
        &[
            "promote",
            "--to",
            "tenants",
            "--waves",
            "1,50%,100%",
            "--yes",
            "--format",
            "json",
        ],
        0,
    );
    let tally = &out.json()["rungs"][0]["rollout"]["tally"];
    assert_eq!(
        (tally["promoted"].as_u64(), tally["up_to_date"].as_u64()),
        (Some(4), Some(2))
    );
    for n in 1..=6 {
        assert_eq!(fleet.recorded(&format!("tenant-{n}")), all_names());
        assert_eq!(
            fleet.rows(&format!("tenant-{n}"), "SELECT count(*) FROM users"),
            ["2"]
        );
    }
}
