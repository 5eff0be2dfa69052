//! The write engine after an answer that never came, came garbled or was lost, and promotions
//! that skip their hooks or only plan, on `engine.rs`'s fixture.

use std::process::Stdio;
use std::time::{Duration, Instant};

use d1ctl::sim::Faults;

use crate::engine::{Fixture, SQL_BEFORE_FIRST_UNIT, USERS_ROWS, ledger_counts};

#[test]
fn a_commit_whose_client_was_killed_before_the_answer_is_not_applied_twice() {
    let fixture = Fixture::new();
    fixture.run_ok(&["promote", "--to", "local"], 0);
    fixture.staging_with_users();
    // 0002's unit commits and is never answered.
    fixture.staging.set_faults(Faults {
        skip_sql_requests: SQL_BEFORE_FIRST_UNIT,
        hold_after_commit: 1,
        ..Faults::default()
    });
    let mut child = fixture
        .command(&["promote", "--to", "staging"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while fixture.staging.stats().held == 0 {
        assert!(Instant::now() < deadline, "{:?}", fixture.staging.stats());
        assert!(
            child.try_wait().unwrap().is_none(),
            "promote ended before its unit was held"
        );
        std::thread::yield_now();
    }
    let killed = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        ledger_counts(&|sql| fixture.staging(sql)),
        ["0001_users.sql x1", "0002_posts.sql x1"],
        "the held unit committed"
    );
    fixture.staging.set_faults(Faults::default());
    fixture.staging.reset_stats();

    let rerun = fixture.run_ok(&["promote", "--to", "staging"], 0);
    // The details, the read, the lock batch that finds the dead lease and the one that takes
    // it over, the re-read, the bookmark, one unit (0003's only), release-and-verify.
    let stats = fixture.staging.stats();
    assert_eq!(
        (stats.total, stats.by_endpoint.get("raw").copied()),
        (8, Some(6)),
        "{stats:?}"
    );
    assert!(
        rerun.stderr.contains("took over the lock of ")
            && rerun.stderr.contains(&format!(
                "(pid {killed} on this host, which no longer runs)"
            )),
        "the dead process's lease is taken over: {}",
        rerun.stderr
    );
    assert!(
        !rerun.stderr.contains("applied 0002_posts.sql"),
        "{}",
        rerun.stderr
    );
    assert_eq!(
        ledger_counts(&|sql| fixture.staging(sql)),
        [
            "0001_users.sql x1",
            "0002_posts.sql x1",
            "0003_index.sql x1"
        ],
        "{}",
        rerun.stderr
    );
    assert_eq!(
        fixture.staging("SELECT count(*) FROM _d1ctl_migrations"),
        ["3"]
    );
    assert_eq!(
        fixture.staging("SELECT * FROM users ORDER BY id"),
        USERS_ROWS
    );
    assert_eq!(fixture.staging("SELECT count(*) FROM _d1ctl_lock"), ["0"]);
}

#[test]
fn a_garbled_answer_to_a_committed_unit_is_read_back_from_the_ledger() {
    let fixture = Fixture::new();
    fixture.staging_with_users();
    fixture.staging.set_faults(Faults {
        skip_sql_requests: SQL_BEFORE_FIRST_UNIT,
        garble_after_commit: 1,
        ..Faults::default()
    });
    let output = fixture.run_ok(&["apply", "staging", "--format", "json"], 0);
    assert_eq!(fixture.staging.faults().garble_after_commit, 0);
    let json = output.json();
    assert_eq!(
        json["recovered"],
        serde_json::json!(["0002_posts.sql"]),
        "{json:#}\n{}",
        output.stderr
    );
    fixture.assert_staging_has_each_migration_once_and_its_rows();
    assert_eq!(fixture.staging("SELECT count(*) FROM _d1ctl_lock"), ["0"]);
}

#[test]
fn promote_without_hooks_skips_a_failing_before_hook() {
    let fixture = Fixture::new();
    fixture.run_ok(&["promote", "--to", "local"], 0);
    fixture.staging_with_users();
    fixture.configure("before = [\"echo ran >> hooks.log; exit 3\"]\n", "");
    let output = fixture.run_ok(&["promote", "--to", "staging", "--no-hooks"], 0);
    assert!(
        !fixture.project.path("hooks.log").exists(),
        "the hook ran: {}",
        output.stderr
    );
    fixture.assert_staging_has_each_migration_once_and_its_rows();
    // Without the flag the same hook stops the next promotion.
    fixture
        .project
        .migration("0004_more.sql", "CREATE TABLE more (x);\n");
    fixture.run_ok(&["promote", "--to", "local"], 0);
    fixture.run_ok(&["promote", "--to", "staging"], 1);
    assert_eq!(
        fs_err::read_to_string(fixture.project.path("hooks.log")).unwrap(),
        "ran\n"
    );
    assert_eq!(fixture.staging("SELECT count(*) FROM d1_migrations"), ["3"]);
}

#[test]
fn promote_dry_run_only_reads() {
    let fixture = Fixture::new();
    fixture.run_ok(&["promote", "--to", "local"], 0);
    fixture.staging_with_users();
    let schema = fixture.staging("SELECT name, sql FROM sqlite_master ORDER BY name");
    let bookmark_before = fixture.staging.stats();
    fixture.staging.reset_stats();
    let output = fixture.run_ok(&["promote", "--to", "staging", "--dry-run"], 0);
    assert!(
        output.stderr.contains("0002_posts.sql"),
        "the plan is shown: {}",
        output.stderr
    );
    // The database's details and one read of its ledgers and schema: no lock, no bookmark.
    let stats = fixture.staging.stats();
    assert_eq!(
        stats
            .by_endpoint
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>(),
        ["get_database=1", "raw=1"],
        "{stats:?} (before: {bookmark_before:?})"
    );
    assert_eq!(
        fixture.staging("SELECT name, sql FROM sqlite_master ORDER BY name"),
        schema
    );
    assert_eq!(
        ledger_counts(&|sql| fixture.staging(sql)),
        ["0001_users.sql x1"]
    );
    assert_eq!(
        fixture.staging("SELECT * FROM users ORDER BY id"),
        USERS_ROWS
    );
}

#[test]
fn a_lost_answer_to_the_release_and_verify_batch_still_prints_the_rollback() {
    let fixture = Fixture::new();
    fixture.run_ok(&["promote", "--to", "local"], 0);
    fixture.staging_with_users();
    // The read, lock, re-read, then one unit per pending migration (0002, 0003): the next
    // SQL request is the release-and-verify batch.
    fixture.staging.set_faults(Faults {
        skip_sql_requests: SQL_BEFORE_FIRST_UNIT + 2,
        drop_after_commit: 1,
        ..Faults::default()
    });
    let output = fixture.run_ok(&["promote", "--to", "staging"], 1);
    assert_eq!(
        fixture.staging.faults().drop_after_commit,
        0,
        "{}",
        output.stderr
    );
    for name in ["0002_posts.sql", "0003_index.sql"] {
        assert!(
            output.stderr.contains(&format!("applied {name}")),
            "{name}: {}",
            output.stderr
        );
    }
    assert!(
        output
            .stderr
            .contains("the answer to the release-and-verify request was lost"),
        "{}",
        output.stderr
    );
    let last = output.stderr.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with("rollback: d1ctl rollback staging --bookmark "),
        "{}",
        output.stderr
    );
    fixture.assert_staging_has_each_migration_once_and_its_rows();
    // The lost batch released the lock before its answer was lost.
    assert_eq!(fixture.staging("SELECT count(*) FROM _d1ctl_lock"), ["0"]);
}
