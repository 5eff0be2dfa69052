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
