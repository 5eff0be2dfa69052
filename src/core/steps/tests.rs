use std::path::Path;

use super::*;
use crate::core::registry::Registry;

fn project(steps: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, Registry, MigrationSet) {
    let dir = tempfile::tempdir().unwrap();
    let write = |relative: &str, text: &str| {
        let path = dir.path().join(relative);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, text).unwrap();
    };
    write(
        "migrations/0001_users.sql",
        "CREATE TABLE users (id INTEGER PRIMARY KEY, plan TEXT);",
    );
    write(
        "migrations/0002_plans.sql",
        "ALTER TABLE users ADD COLUMN tier TEXT;",
    );
    for (relative, text) in files {
        write(relative, text);
    }
    let text = format!("[env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n{steps}");
    let path = dir.path().join("environments.toml");
    let registry = Registry::parse(&path, &text, &|_| None).unwrap();
    let set = crate::core::migrations::load(&dir.path().join("migrations"), None).unwrap();
    (dir, registry, set)
}

#[test]
fn loads_each_kind_with_its_checksum_and_estimate() {
    let (_dir, registry, set) = project(
        "[[step]]\nname = \"tiers\"\nafter = \"0002_plans\"\nsql = \"steps/tiers.sql\"\n[[step]]\nname = \"fill\"\nafter = \"0002_plans.sql\"\nsql = \"steps/fill.sql\"\nchunked = true\n[[step]]\nname = \"script\"\nafter = \"0001_users.sql\"\ncommand = \"echo hi\"\n",
        &[
            (
                "steps/tiers.sql",
                "UPDATE users SET tier = 'a' WHERE plan = 'pro';\r\nDELETE FROM users WHERE plan IS NULL;\r\n",
            ),
            (
                "steps/fill.sql",
                "UPDATE users SET tier = 'b' WHERE id IN (SELECT id FROM users WHERE tier IS NULL LIMIT 50);",
            ),
        ],
    );
    let steps = load(&registry, &set).unwrap();
    assert_eq!(steps[0].after, "0002_plans.sql");
    assert_eq!(steps[0].kind(), "sql");
    assert_eq!(
        steps[0].estimate.as_deref(),
        Some(
            "SELECT (SELECT COUNT(*) FROM users where plan = 'pro') + (SELECT COUNT(*) FROM users where plan is null)"
        )
    );
    // Line endings do not change what ran.
    assert_eq!(
        steps[0].checksum,
        sha256_hex(
            b"UPDATE users SET tier = 'a' WHERE plan = 'pro';\nDELETE FROM users WHERE plan IS NULL;\n"
        )
    );
    let Body::Chunked { chunk, .. } = &steps[1].body else {
        panic!("not chunked: {:?}", steps[1].body);
    };
    assert_eq!(chunk.limit, 50);
    assert_eq!(steps[2].checksum, sha256_hex(b"echo hi"));
    assert_eq!(steps[2].estimate, None);
}

#[test]
fn every_mistake_names_the_step_and_where_it_is_declared() {
    let cases = [
        (
            "after = \"0009_nope.sql\"\nsql = \"s.sql\"",
            "not a migration of the folder",
        ),
        (
            "after = \"0001_users.sql\"\nsql = \"missing.sql\"",
            "could not read `missing.sql`: no such file",
        ),
        (
            "after = \"0001_users.sql\"\nsql = \"begin.sql\"",
            "controls a transaction",
        ),
        (
            "after = \"0001_users.sql\"\nsql = \"two.sql\"\nchunked = true",
            "holds 2 statements",
        ),
        (
            "after = \"0001_users.sql\"\nsql = \"s.sql\"\nchunked = true",
            "has no `LIMIT`",
        ),
        (
            "after = \"0001_users.sql\"\nsql = \"empty.sql\"",
            "holds no SQL statement",
        ),
    ];
    for (keys, expected) in cases {
        let (_dir, registry, set) = project(
            &format!("\n[[step]]\nname = \"x\"\n{keys}\n"),
            &[
                ("s.sql", "UPDATE users SET tier = 'a';"),
                ("begin.sql", "BEGIN;\nUPDATE users SET tier = 'a';\nCOMMIT;"),
                (
                    "two.sql",
                    "UPDATE users SET tier = 'a'; UPDATE users SET plan = 'b';",
                ),
                ("empty.sql", "-- nothing\n"),
            ],
        );
        let error = load(&registry, &set).unwrap_err();
        assert!(error.message.starts_with("step `x`: "), "{}", error.message);
        assert!(
            error.message.contains(expected),
            "{keys}: {}",
            error.message
        );
        assert!(
            Path::new(&error.location).ends_with("environments.toml:5:1"),
            "{}",
            error.location
        );
        assert!(!error.hint.is_empty());
    }
}

fn record(name: &str, kind: &str, checksum: &str, finished: bool) -> StepRecord {
    StepRecord {
        name: name.to_owned(),
        kind: kind.to_owned(),
        checksum: checksum.to_owned(),
        started_at: "2026-12-01T00:00:00.000Z".to_owned(),
        finished_at: finished.then(|| "2026-12-01T00:00:01.000Z".to_owned()),
        rows: Some(3),
        batches: 1,
        run_by: "me@here".to_owned(),
        runs: 1,
        ended: None,
    }
}

fn status(state: StepState, record: Option<StepRecord>, edited: bool) -> StepStatus {
    StepStatus {
        name: "fill".to_owned(),
        after: "0002_plans.sql".to_owned(),
        kind: "command",
        state,
        edited,
        record,
    }
}

#[test]
fn a_step_runs_only_where_its_migration_is_and_after_its_source_finished_it() {
    let done_below = record("fill", "command", "c1", true);
    let half_below = record("fill", "command", "c1", false);
    let pending = status(StepState::Pending, None, false);
    assert_eq!(
        decide(&pending, "dev", None, "c1", Rerun::No),
        Decision::Run
    );
    assert_eq!(
        decide(
            &pending,
            "prod",
            Some(("staging", Some(&done_below))),
            "c1",
            Rerun::No
        ),
        Decision::Run
    );
    for below in [None, Some(&half_below)] {
        assert_eq!(
            decide(&pending, "prod", Some(("staging", below)), "c1", Rerun::No),
            Decision::Wait {
                why: "`staging` has not finished it".to_owned()
            }
        );
    }
    assert!(matches!(
        decide(
            &pending,
            "prod",
            Some(("staging", Some(&done_below))),
            "c2",
            Rerun::No
        ),
        Decision::Blocked { .. }
    ));
    assert_eq!(
        decide(
            &status(StepState::Waiting, None, false),
            "dev",
            None,
            "c1",
            Rerun::No
        ),
        Decision::Wait {
            why: "`dev` does not have `0002_plans.sql` yet".to_owned()
        }
    );
}

#[test]
fn interrupted_edited_and_finished_steps_need_the_users_word() {
    let interrupted = status(
        StepState::Interrupted,
        Some(record("fill", "command", "c1", false)),
        false,
    );
    let Decision::Blocked { hint, .. } = decide(&interrupted, "dev", None, "c1", Rerun::No) else {
        panic!("an interrupted step ran on its own");
    };
    assert!(hint.contains("--rerun-interrupted"), "{hint}");
    assert_eq!(
        decide(&interrupted, "dev", None, "c1", Rerun::Interrupted),
        Decision::Run
    );

    let done = status(
        StepState::Done,
        Some(record("fill", "command", "c1", true)),
        false,
    );
    assert_eq!(
        decide(&done, "dev", None, "c1", Rerun::Interrupted),
        Decision::Done
    );
    assert_eq!(
        decide(&done, "dev", None, "c1", Rerun::Finished),
        Decision::Run
    );

    let edited = status(
        StepState::Done,
        Some(record("fill", "command", "c1", true)),
        true,
    );
    assert!(matches!(
        decide(&edited, "dev", None, "c2", Rerun::No),
        Decision::Blocked { .. }
    ));
    assert!(matches!(
        decide(&edited, "dev", None, "c2", Rerun::Interrupted),
        Decision::Blocked { .. }
    ));
}

#[test]
fn a_partial_chunked_step_continues_and_an_unfinished_sql_step_is_interrupted() {
    let (_dir, registry, set) = project(
        "[[step]]\nname = \"fill\"\nafter = \"0001_users.sql\"\nsql = \"fill.sql\"\nchunked = true\n[[step]]\nname = \"once\"\nafter = \"0001_users.sql\"\nsql = \"once.sql\"\n",
        &[
            (
                "fill.sql",
                "UPDATE users SET tier = 'b' WHERE id IN (SELECT id FROM users WHERE tier IS NULL LIMIT 50);",
            ),
            ("once.sql", "UPDATE users SET tier = 'c';"),
        ],
    );
    let steps = load(&registry, &set).unwrap();
    let migrations = crate::core::ledger::compare(
        &set,
        &crate::core::ledger::LedgerState::default(),
        set.layout,
    );
    let records = [
        record("fill", "chunked", &steps[0].checksum, false),
        record("once", "sql", &steps[1].checksum, false),
    ];
    let states: Vec<StepState> = statuses(&steps, &migrations, &records, &[])
        .iter()
        .map(|s| s.state)
        .collect();
    assert_eq!(states, [StepState::Partial, StepState::Interrupted]);
    // Without a record, the migration decides.
    let states: Vec<StepState> = statuses(&steps, &migrations, &[], &["0001_users.sql".to_owned()])
        .iter()
        .map(|s| s.state)
        .collect();
    assert_eq!(states, [StepState::Pending, StepState::Pending]);
    let states: Vec<StepState> = statuses(&steps, &migrations, &[], &[])
        .iter()
        .map(|s| s.state)
        .collect();
    assert_eq!(states, [StepState::Waiting, StepState::Waiting]);
}
