//! Every real-world folder of `../shared/corpus` applies to a fresh database and yields exactly
//! its `expected_schema.sql`, in the layout its `SOURCE.txt` names.

use std::path::Path;

use crate::common::{Project, copy_dir, corpus_dir, rows, schema_lines};

struct Entry {
    dir: String,
    style: String,
    cross_check_wrangler: bool,
    applied_order: Vec<String>,
    expected_schema: Vec<String>,
}

fn entry(root: &Path, name: &str) -> Entry {
    let root = root.join(name);
    let read = |file: &str| fs_err::read_to_string(root.join(file)).unwrap();
    let source = read("SOURCE.txt");
    let field = |key: &str| {
        source
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{key}: ")))
            .map(|value| value.trim().to_owned())
    };
    let outcome = read("expected_outcome.txt");
    assert!(
        outcome.contains("status: ok"),
        "{name}: expected ok outcome"
    );
    let applied_order = outcome
        .lines()
        .skip_while(|line| !line.starts_with("applied_order:"))
        .skip(1)
        .map(|line| line.trim().to_owned())
        .filter(|line| !line.is_empty())
        .collect();
    Entry {
        dir: field("dir").expect("dir in SOURCE.txt"),
        style: field("style").expect("style in SOURCE.txt"),
        cross_check_wrangler: field("cross_check").as_deref() == Some("wrangler"),
        applied_order,
        expected_schema: read("expected_schema.sql")
            .lines()
            .map(str::to_owned)
            .collect(),
    }
}

fn apply_corpus(root: &Path, name: &str, layout: &str) -> (Project, Entry) {
    let entry = entry(root, name);
    let project = Project::empty();
    copy_dir(&root.join(name).join(&entry.dir), &project.path(&entry.dir));
    project.config(&format!(
        "[project]\nmigrations_dir = \"{}\"\nlayout = \"{layout}\"\n\n[env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n",
        entry.dir
    ));
    project.run_ok(&["apply", "local", "-q"], 0);
    (project, entry)
}

fn check(name: &str) {
    let Some(root) = corpus_dir() else {
        return;
    };
    let layout = entry(&root, name).style;
    let (project, entry) = apply_corpus(&root, name, &layout);
    let db = project.db("local.sqlite");
    assert_eq!(
        schema_lines(&db),
        entry.expected_schema,
        "{name}: schema differs"
    );
    assert_eq!(
        rows(&db, "SELECT name FROM d1_migrations ORDER BY id"),
        entry.applied_order,
        "{name}: applied order differs"
    );
    // A second run has nothing to do.
    let again = project.run_ok(&["apply", "local"], 0);
    assert!(
        again.stderr.contains("nothing to apply"),
        "{name}: {}",
        again.stderr
    );

    if entry.cross_check_wrangler {
        // The same folder read the way wrangler reads it (breakpoints are comments there).
        let (project, _) = apply_corpus(&root, name, "wrangler");
        let db = project.db("local.sqlite");
        assert_eq!(
            schema_lines(&db),
            entry.expected_schema,
            "{name} as wrangler: schema differs"
        );
    }
}

#[test]
fn wildebeest() {
    check("cloudflare__wildebeest");
}

#[test]
fn filbeam_worker() {
    check("filbeam__worker");
}

#[test]
fn moemail() {
    check("beilunyang__moemail");
}

#[test]
fn agor() {
    check("preset-io__agor");
}

#[test]
fn every_corpus_entry_has_a_test() {
    let Some(root) = corpus_dir() else {
        return;
    };
    let mut names: Vec<String> = fs_err::read_dir(root)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir() && Path::new(&e.path()).join("SOURCE.txt").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "beilunyang__moemail",
            "cloudflare__wildebeest",
            "filbeam__worker",
            "preset-io__agor"
        ],
        "a new corpus entry needs its own test above"
    );
}

/// Every corpus folder linted with rows seeded before each migration: the losses and the
/// failures that only rows reveal are findings, each listed here with why it is real.
#[test]
fn lint_with_rows_reports_collateral_losses_in_the_corpus() {
    let Some(root) = corpus_dir() else {
        return;
    };
    let expected: [(&str, &[&str]); 4] = [
        ("beilunyang__moemail", &[]),
        // `DROP table subscriptions;` then `CREATE TABLE subscriptions (…)`: its rows are gone,
        // and no DELETE says so (the table exists afterwards, so DS102 does not fire).
        (
            "cloudflare__wildebeest",
            &["DS105 0007_change_subscriptions_id.sql subscriptions"],
        ),
        // The same drop-and-create, of `retrieval_logs` (0014) and of `pieces` and `data_sets`
        // (0024). 0021's `DELETE FROM …` and 0024's `DELETE FROM service_providers` name their
        // tables, and 0023's `UPDATE … = NULL` names its column: none of those is reported.
        (
            "filbeam__worker",
            &[
                "DS105 0014_m2_5_upgrades.sql retrieval_logs",
                "DS105 0024_events_out_of_order.sql data_sets",
                "DS105 0024_events_out_of_order.sql pieces",
            ],
        ),
        // 0004 rebuilds `worktrees` under `PRAGMA foreign_keys=OFF`, which D1 ignores: the DROP
        // cascades through every table below it. 0009's copy into `sessions_new` adds foreign
        // keys the old columns never had, so it fails once `sessions` holds rows.
        (
            "preset-io__agor",
            &[
                "DS105 0004_add_static_urls.sql board_comments",
                "DS105 0004_add_static_urls.sql board_objects",
                "DS105 0004_add_static_urls.sql mcp_servers",
                "DS105 0004_add_static_urls.sql messages",
                "DS105 0004_add_static_urls.sql session_mcp_servers",
                "DS105 0004_add_static_urls.sql sessions",
                "DS105 0004_add_static_urls.sql tasks",
                "MF106 0009_reconcile-missing-columns.sql -",
            ],
        ),
    ];
    for (name, expected) in expected {
        let entry = entry(&root, name);
        let project = Project::empty();
        copy_dir(&root.join(name).join(&entry.dir), &project.path(&entry.dir));
        project.config(&format!(
            "[project]\nmigrations_dir = \"{}\"\nlayout = \"{}\"\n\n[env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n",
            entry.dir, entry.style
        ));
        let output = project.run(&["lint", "--format", "json"]);
        let json = output.json();
        let found: Vec<String> = json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| {
                matches!(
                    f["code"].as_str(),
                    Some("DS105" | "DS106" | "MF106" | "LT002")
                )
            })
            .map(|f| {
                format!(
                    "{} {} {}",
                    f["code"].as_str().unwrap(),
                    f["migration"].as_str().unwrap(),
                    f["table"].as_str().unwrap_or("-")
                )
            })
            .collect();
        assert_eq!(found, expected, "{name}");
    }
}
