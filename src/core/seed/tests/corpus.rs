//! The real-world corpus replayed on a seeded shadow, and the timing harness of
//! BENCHMARKS.md's "Seeding the lint shadow".

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::{LEDGERS, database};
use crate::backend::Statement;
use crate::core::migrations::{self, Layout};
use crate::core::rows;
use crate::core::seed::seed;

/// The corpus folder (`D1CTL_CORPUS_DIR`, else `../shared/corpus` beside the crate), or `None`
/// with a note on stderr when it is absent: a fresh clone has no `../shared`. With
/// `D1CTL_REQUIRE_CORPUS` set (to anything but empty or `0`; CI sets it) an absent corpus fails
/// the test instead.
fn corpus_dir_or_skip(test: &str) -> Option<PathBuf> {
    use std::io::Write as _;
    let dir = std::env::var_os("D1CTL_CORPUS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"),
        PathBuf::from,
    );
    if dir.is_dir() {
        return Some(dir);
    }
    let required = std::env::var_os("D1CTL_REQUIRE_CORPUS")
        .is_some_and(|value| !value.is_empty() && value != "0");
    assert!(
        !required,
        "{test}: no corpus at {} and D1CTL_REQUIRE_CORPUS is set",
        dir.display()
    );
    // Straight to the process's stderr, so the harness does not swallow it.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: no corpus at {} (set D1CTL_CORPUS_DIR, or D1CTL_REQUIRE_CORPUS=1 to make this a failure)",
        dir.display()
    );
    None
}

/// Each corpus entry's migrations, in the order its own tool applies them.
fn corpus_entries(corpus: &Path) -> Vec<(String, Vec<migrations::Migration>)> {
    let mut names: Vec<String> = fs_err::read_dir(corpus)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| corpus.join(name).join("SOURCE.txt").is_file())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let source = fs_err::read_to_string(corpus.join(&name).join("SOURCE.txt")).unwrap();
            let field = |key: &str| {
                source
                    .lines()
                    .find_map(|line| line.strip_prefix(&format!("{key}: ")))
                    .map(|value| value.trim().to_owned())
                    .unwrap()
            };
            let layout = if field("style") == "drizzle" {
                Layout::Drizzle
            } else {
                Layout::Wrangler
            };
            let mut set =
                migrations::load(&corpus.join(&name).join(field("dir")), Some(layout)).unwrap();
            // An entry whose apply is expected to fail is replayed up to the failure.
            let outcome =
                fs_err::read_to_string(corpus.join(&name).join("expected_outcome.txt")).unwrap();
            if let Some(failed) = outcome
                .lines()
                .find_map(|line| line.strip_prefix("failed: "))
            {
                let at = set.position(failed.trim()).unwrap();
                set.migrations.truncate(at);
            }
            (name, set.migrations)
        })
        .collect()
}

fn statements_of(migration: &migrations::Migration) -> Vec<Statement> {
    migration
        .statements
        .iter()
        .filter(|s| !crate::core::sql::is_transaction_control(&s.sql))
        .map(|s| Statement::new(s.sql.clone()))
        .collect()
}

/// What replaying the corpus with seeding before each migration shows.
#[derive(Default)]
struct Replay {
    /// `entry/migration: loss`.
    losses: Vec<String>,
    /// `entry/migration: table: reason`.
    not_seeded: Vec<String>,
    /// `entry/migration: error`, for migrations that fail with rows and apply without.
    fail_with_rows: Vec<String>,
}

fn replay_corpus(corpus: &Path) -> Replay {
    let mut replay = Replay::default();
    for (entry, migrations) in corpus_entries(corpus) {
        let mut seeded = Connection::open_in_memory().unwrap();
        crate::local::configure(&seeded).unwrap();
        // The same migrations without rows: the schema to fall back on when rows break one.
        let mut empty = Connection::open_in_memory().unwrap();
        crate::local::configure(&empty).unwrap();
        for migration in &migrations {
            let at = format!("{entry}/{}", migration.name);
            let report = seed(&seeded, None, LEDGERS, 3);
            for (table, reason) in &report.not_seeded {
                replay.not_seeded.push(format!("{at}: {table}: {reason}"));
            }
            let before = rows::count_all(&seeded, LEDGERS).unwrap();
            let statements = statements_of(migration);
            crate::local::run_batch(&mut empty, &statements, None)
                .unwrap_or_else(|error| panic!("{at} fails on an empty database: {error}"));
            match crate::local::run_batch(&mut seeded, &statements, None) {
                Ok(_) => {
                    let after = rows::count_all(&seeded, LEDGERS).unwrap();
                    for loss in rows::losses(&before, &after) {
                        replay.losses.push(format!("{at}: {loss}"));
                    }
                }
                Err(error) => {
                    let statement = match &error {
                        crate::backend::BackendError::Statement {
                            index: Some(index), ..
                        } => {
                            let sql: Vec<&str> =
                                statements[*index].sql.split_whitespace().take(3).collect();
                            format!("statement {} (`{} …`)", index + 1, sql.join(" "))
                        }
                        _ => "commit".to_owned(),
                    };
                    replay
                        .fail_with_rows
                        .push(format!("{at}: {statement}: {error}"));
                    // Carry on from the schema without rows; the next seed fills it again.
                    rusqlite::backup::Backup::new(&empty, &mut seeded)
                        .unwrap()
                        .run_to_completion(64, std::time::Duration::ZERO, None)
                        .unwrap();
                }
            }
        }
    }
    replay
}

#[test]
fn every_corpus_migration_applies_to_a_seeded_shadow() {
    let Some(corpus) = corpus_dir_or_skip("every_corpus_migration_applies_to_a_seeded_shadow")
    else {
        return;
    };
    let replay = replay_corpus(&corpus);
    // Every table of every schema the corpus passes through gets rows.
    assert_eq!(replay.not_seeded, Vec::<String>::new());
    // 0009 rebuilds `sessions` with foreign keys its old columns `board_id`,
    // `parent_session_id` and `forked_from_session_id` never had, and copies the rows over: rows
    // whose values name no board or session (as synthetic ones do) make it fail. On D1 it fails
    // the same way for any real row that points nowhere.
    assert_eq!(
        replay.fail_with_rows,
        [
            "preset-io__agor/0009_reconcile-missing-columns.sql: statement 3 (`INSERT INTO `sessions_new` …`): FOREIGN KEY constraint failed"
        ]
    );
    // What lint will report as lost rows and values.
    assert_eq!(
        replay.losses,
        [
            // Dropped and created again, empty: the migration means it.
            "cloudflare__wildebeest/0007_change_subscriptions_id.sql: `subscriptions` went from 3 to 0 rows",
            "filbeam__worker/0014_m2_5_upgrades.sql: `retrieval_logs` went from 3 to 0 rows",
            // `DELETE FROM` every table, as the file name says.
            "filbeam__worker/0021_drop_all_data.sql: `data_sets` went from 3 to 0 rows",
            "filbeam__worker/0021_drop_all_data.sql: `pieces` went from 3 to 0 rows",
            "filbeam__worker/0021_drop_all_data.sql: `retrieval_logs` went from 3 to 0 rows",
            "filbeam__worker/0021_drop_all_data.sql: `service_providers` went from 3 to 0 rows",
            // `UPDATE … SET pending_usage_report_tx_hash = NULL`.
            "filbeam__worker/0023_reset_usage_reports.sql: `data_sets.pending_usage_report_tx_hash` went from 3 to 0 non-null values",
            // `DROP TABLE` and create again, `DELETE FROM service_providers`.
            "filbeam__worker/0024_events_out_of_order.sql: `data_sets` went from 3 to 0 rows",
            "filbeam__worker/0024_events_out_of_order.sql: `pieces` went from 3 to 0 rows",
            "filbeam__worker/0024_events_out_of_order.sql: `service_providers` went from 3 to 0 rows",
            // The `worktrees` rebuild under `PRAGMA foreign_keys=OFF`, which D1 ignores: the
            // DROP cascades into `sessions` and from there into everything below it.
            "preset-io__agor/0004_add_static_urls.sql: `board_comments` went from 3 to 0 rows",
            "preset-io__agor/0004_add_static_urls.sql: `board_objects` went from 3 to 0 rows",
            "preset-io__agor/0004_add_static_urls.sql: `mcp_servers` went from 3 to 0 rows",
            "preset-io__agor/0004_add_static_urls.sql: `messages` went from 3 to 0 rows",
            "preset-io__agor/0004_add_static_urls.sql: `session_mcp_servers` went from 3 to 0 rows",
            "preset-io__agor/0004_add_static_urls.sql: `sessions` went from 3 to 0 rows",
            "preset-io__agor/0004_add_static_urls.sql: `tasks` went from 3 to 0 rows",
        ]
    );
}

/// The project's own fixtures (`tests/fixtures/corpus`), replayed the same way on every clone.
#[test]
fn every_fixture_migration_applies_to_a_seeded_shadow() {
    let replay =
        replay_corpus(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus"));
    assert_eq!(replay.not_seeded, Vec::<String>::new());
    // The backfill that leaves a NOT NULL column NULL: it passes on an empty database only.
    assert_eq!(
        replay.fail_with_rows,
        [
            "drizzle_rebuild/0004_silent_meadow.sql: statement 4 (`INSERT INTO `api_keys` …`): NOT NULL constraint failed: api_keys.secret_hash"
        ]
    );
    // The drizzle rebuild under `PRAGMA foreign_keys=OFF`, which D1 ignores: dropping the old
    // `accounts` cascades into `sessions`.
    assert_eq!(
        replay.losses,
        ["drizzle_rebuild/0002_rebuild_accounts.sql: `sessions` went from 3 to 0 rows"]
    );
}

/// A schema of `tables` tables, each the child of the one before (ON DELETE CASCADE), with a
/// UNIQUE column, a CHECK, a default, a nullable column and an index.
fn chain_schema(tables: usize) -> String {
    let mut sql = String::new();
    for index in 0..tables {
        let parent = if index == 0 {
            String::new()
        } else {
            format!(
                ", parent_id INTEGER NOT NULL REFERENCES t{}(id) ON DELETE CASCADE",
                index - 1
            )
        };
        sql.push_str(&format!(
            "CREATE TABLE t{index} (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, \
             status TEXT NOT NULL CHECK (status IN ('draft', 'live')), amount REAL, \
             created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP{parent});
             CREATE INDEX t{index}_status ON t{index} (status);\n"
        ));
    }
    sql
}

/// The median of `runs` timings of `work`, in milliseconds.
fn median_ms(runs: usize, mut work: impl FnMut() -> std::time::Duration) -> f64 {
    let mut timings: Vec<f64> = (0..runs).map(|_| work().as_secs_f64() * 1000.0).collect();
    timings.sort_by(f64::total_cmp);
    timings[runs / 2]
}

/// Timings for BENCHMARKS.md ("Seeding the lint shadow"), never asserted:
/// `cargo test --release --lib seed::tests::seeding_time -- --ignored --nocapture`.
#[test]
#[ignore = "a timing harness, not a test: see BENCHMARKS.md"]
fn seeding_time() {
    use std::time::Instant;
    const RUNS: usize = 21;
    let Some(corpus) = corpus_dir_or_skip("seeding_time") else {
        return;
    };
    let (_, migrations) = corpus_entries(&corpus)
        .into_iter()
        .find(|(name, _)| name == "filbeam__worker")
        .unwrap();
    // Seeding before each of the 30 migrations, as lint does, applying each after its seed.
    let mut per_migration = vec![Vec::new(); migrations.len()];
    let mut tables_seeded = 0;
    let total = median_ms(RUNS, || {
        tables_seeded = 0;
        let mut connection = database("");
        let mut spent = std::time::Duration::ZERO;
        for (index, migration) in migrations.iter().enumerate() {
            let started = Instant::now();
            let report = seed(&connection, None, LEDGERS, 3);
            let took = started.elapsed();
            assert!(report.not_seeded.is_empty());
            tables_seeded += report.seeded.len();
            per_migration[index].push(took.as_secs_f64() * 1000.0);
            spent += took;
            crate::local::run_batch(&mut connection, &statements_of(migration), None).unwrap();
        }
        spent
    });
    let slowest = per_migration
        .iter_mut()
        .map(|timings| {
            timings.sort_by(f64::total_cmp);
            timings[timings.len() / 2]
        })
        .fold(0.0, f64::max);
    report(&format!(
        "filbeam__worker, seed before each of {} migrations ({tables_seeded} tables seeded): {total:.3} ms in all (median of {RUNS}), slowest migration {slowest:.3} ms",
        migrations.len()
    ));
    // Its final schema, every table empty.
    let mut final_schema = database("");
    for migration in &migrations {
        crate::local::run_batch(&mut final_schema, &statements_of(migration), None).unwrap();
    }
    let schema: Vec<String> = final_schema
        .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let schema = schema.join(";\n");
    let cold = median_ms(RUNS, || {
        let connection = database(&schema);
        let started = Instant::now();
        seed(&connection, None, LEDGERS, 3);
        started.elapsed()
    });
    report(&format!(
        "filbeam__worker, final schema from empty: {cold:.3} ms"
    ));
    for tables in [50, 200] {
        let sql = chain_schema(tables);
        let cold = median_ms(RUNS, || {
            let connection = database(&sql);
            let started = Instant::now();
            let report = seed(&connection, None, &[], 3);
            assert_eq!(report.seeded.len(), tables);
            started.elapsed()
        });
        let connection = database(&sql);
        seed(&connection, None, &[], 3);
        let warm = median_ms(RUNS, || {
            let started = Instant::now();
            seed(&connection, None, &[], 3);
            started.elapsed()
        });
        report(&format!(
            "{tables} chained tables × 3 rows: {cold:.3} ms from empty, {warm:.3} ms when every table has rows"
        ));
    }
}

/// A measurement, straight to the process's stderr (the harness would swallow `eprintln!`).
fn report(text: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{text}\n").as_bytes());
}
