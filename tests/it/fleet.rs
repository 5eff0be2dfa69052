//! Fleet envs on the simulator: one env of many tenant databases, promoted at about one request
//! per member. Every member written to has rows, checked after.

use std::process::{Command, Stdio};

use d1ctl::sim::{SimConfig, Simulator};

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
    // Two members that joined after the first promotion: nothing applied yet.
    fleet.sim.create_database("tenant-11");
    fleet.sim.create_database("tenant-12");
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
    for member in ["tenant-11", "tenant-12"] {
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
