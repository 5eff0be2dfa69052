//! `status`, `lock status`, `lock release` and `checklist` over a whole fleet env: every member
//! read once, summarised by group, every member listed in JSON. Every member has rows.

use crate::engine::FOREIGN_LEASE;
use crate::fleet::FleetFixture;

const BEHIND: [&str; 2] = ["tenant-13", "tenant-14"];
const LOCKED: &str = "tenant-3";
const MEMBERS: usize = 14;

/// 14 tenants with two users each: 12 at the folder's last migration (tenant-3 of them locked
/// by another machine's live lease), 2 that joined later at the first migration only.
fn mixed_fleet() -> FleetFixture {
    let fleet = FleetFixture::new(12);
    fleet.members_at_first_with_users(12);
    fleet.run_ok(&["promote", "--to", "tenants", "--cascade"], 0);
    for member in BEHIND {
        fleet.sim.create_database(member);
        fleet.run_in_first(
            &[
                "promote",
                "--to",
                "tenants",
                "--cascade",
                "--member",
                member,
            ],
            0,
        );
        fleet
            .sim
            .execute(
                member,
                &format!(
                    "INSERT INTO users VALUES (1, 'a@{member}.example'), (2, 'b@{member}.example');"
                ),
            )
            .unwrap();
    }
    fleet.sim.execute(LOCKED, FOREIGN_LEASE).unwrap();
    fleet
}

/// The members' users are all still there.
fn rows_intact(fleet: &FleetFixture) {
    for n in 1..=MEMBERS {
        assert_eq!(
            fleet.rows(&format!("tenant-{n}"), "SELECT count(*) FROM users"),
            ["2"],
            "tenant-{n}'s rows"
        );
    }
}

/// Seconds of a lease (held, left) move while the test runs.
fn snapshot_seconds(name: &str, text: &str) {
    insta::with_settings!({filters => vec![(r"\b\d+ s\b", "[N] s")]}, {
        insta::assert_snapshot!(name, text);
    });
}

#[test]
fn status_groups_a_fleet_by_ledger_state_reading_each_member_once() {
    let fleet = mixed_fleet();
    fleet.sim.reset_stats();
    let out = fleet.run_ok(&["status", "tenants"], 0);
    assert_eq!(fleet.raw_requests(), MEMBERS as u64, "one read per member");
    snapshot_seconds("fleet_status", &out.snapshot(&fleet.project));

    let out = fleet.run_ok(&["status", "tenants", "--format", "json"], 0);
    let json = out.json();
    let entry = &json["environments"][0];
    assert_eq!(entry["fleet"]["members"], MEMBERS);
    assert_eq!(entry["fleet"]["read"], true);
    let groups = entry["fleet"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert_eq!(groups[0]["label"], "at 0004_index.sql (4 applied)");
    assert_eq!(groups[0]["members"].as_array().unwrap().len(), 12);
    assert_eq!(groups[1]["members"], serde_json::json!(BEHIND));
    let databases = entry["fleet"]["databases"].as_array().unwrap();
    assert_eq!(databases.len(), MEMBERS, "every member listed");
    for database in databases {
        let name = database["name"].as_str().unwrap();
        let applied = database["applied"].as_array().unwrap().len();
        if BEHIND.contains(&name) {
            assert_eq!(applied, 1, "{database}");
            assert_eq!(database["group"], "at 0001_users.sql (1 applied)");
        } else {
            assert_eq!(applied, 4, "{database}");
        }
        if name == LOCKED {
            assert_eq!(database["lock"]["holder"]["id"], "other-holder");
            assert_eq!(database["lock"]["holder"]["host"], "ci-runner-7");
        } else {
            assert!(database["lock"].is_null(), "{database}");
        }
    }

    // The whole-ladder matrix lists the fleet (no member read) and says how to read them.
    fleet.sim.reset_stats();
    let matrix = fleet.run_ok(&["status"], 0);
    assert_eq!(fleet.raw_requests(), 0, "{}", matrix.stderr);
    snapshot_seconds("fleet_status_matrix", &matrix.snapshot(&fleet.project));
    let json = fleet.run_ok(&["status", "--format", "json"], 0).json();
    assert_eq!(json["environments"][1]["fleet"]["members"], MEMBERS);
    assert_eq!(json["environments"][1]["fleet"]["read"], false);

    // `--member` narrows the fleet to one database, as before.
    let one = fleet.run_ok(&["status", "tenants", "--member", "tenant-13"], 0);
    assert!(
        one.stdout.contains("pending 0002_posts.sql"),
        "{}",
        one.stdout
    );
    rows_intact(&fleet);
}

#[test]
fn lock_status_and_release_over_a_fleet_and_its_checklist() {
    let fleet = mixed_fleet();
    // A migration local has and no member has yet: most members agree on what they get.
    fleet.project.migration(
        "0005_tags.sql",
        "CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT);\n",
    );
    fleet.run_ok(&["apply", "local"], 0);

    fleet.sim.reset_stats();
    let out = fleet.run_ok(&["lock", "status", "tenants"], 0);
    assert_eq!(fleet.raw_requests(), MEMBERS as u64);
    snapshot_seconds("fleet_lock_status", &out.snapshot(&fleet.project));
    let json = fleet
        .run_ok(&["lock", "status", "tenants", "--format", "json"], 0)
        .json();
    assert_eq!(
        (json["members"].clone(), json["locked"].clone()),
        (14.into(), 1.into())
    );
    assert_eq!(json["holders"][0]["members"], serde_json::json!([LOCKED]));
    let databases = json["databases"].as_array().unwrap();
    assert_eq!(databases.len(), MEMBERS);
    assert_eq!(
        databases.iter().filter(|d| d["lock"].is_null()).count(),
        MEMBERS - 1
    );

    fleet.sim.reset_stats();
    let checklist = fleet.run_ok(&["checklist", "--to", "tenants", "--format", "markdown"], 1);
    assert_eq!(fleet.raw_requests(), MEMBERS as u64, "{}", checklist.stderr);
    snapshot_seconds("fleet_checklist", &checklist.snapshot(&fleet.project));
    let json = fleet
        .run_ok(&["checklist", "--to", "tenants", "--format", "json"], 1)
        .json();
    let section = &json["fleet"];
    assert_eq!(section["members"], MEMBERS);
    assert_eq!(section["representative"], "tenant-1");
    assert_eq!(
        section["groups"][0]["pending"],
        serde_json::json!(["0005_tags.sql"])
    );
    assert_eq!(
        section["groups"][0]["members"].as_array().unwrap().len(),
        11
    );
    assert_eq!(
        section["stragglers"],
        serde_json::json!([LOCKED, "tenant-13", "tenant-14"])
    );
    assert_eq!(section["rollout"]["express"], 11);
    assert_eq!(section["rollout"]["full_path"], 2);
    assert_eq!(section["rollout"]["refused"], 1);
    // 11 + 1 express, 2 × (6 + 4) full path, 2 × 1 refused: 34 at 4 requests a second.
    assert_eq!(section["rollout"]["requests"], 34);
    assert_eq!(section["rollout"]["seconds"], 9);
    assert_eq!(
        section["canary_command"],
        "d1ctl promote --to tenants --canary 5"
    );
    assert_eq!(section["rollback_command"], "d1ctl rollback tenants --last");
    assert!(
        json["blocking"][0].as_str().unwrap().contains("tenant-3"),
        "{}",
        json["blocking"]
    );

    // Released on the one member that has it: a read of each, one batch for it.
    fleet.sim.reset_stats();
    let released = fleet.run_ok(&["lock", "release", "tenants", "--id", "other-holder"], 0);
    assert!(
        released.stderr.contains(
            "released the lock other-holder on 1 member of `tenants` (14 members in all)"
        ),
        "{}",
        released.stderr
    );
    assert_eq!(fleet.raw_requests(), MEMBERS as u64 + 1);
    assert_eq!(
        fleet.rows(LOCKED, "SELECT count(*) FROM _d1ctl_lock"),
        ["0"]
    );
    let again = fleet.run_ok(&["lock", "release", "tenants", "--id", "other-holder"], 2);
    assert!(
        again
            .stderr
            .contains("no member of `tenants` holds a lock with id other-holder"),
        "{}",
        again.stderr
    );
    rows_intact(&fleet);
}
