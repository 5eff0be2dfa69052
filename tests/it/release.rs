//! `lint`, `checklist`, the lint gate of `promote`, and the CLI conventions (completions,
//! version, JSON shapes as documented in the README).

use serde_json::{Value, json};

use crate::common::Project;

const LADDER: &str = "[project]\nladder = [\"local\", \"staging\", \"production\"]\n\n\
    [env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n\n\
    [env.staging]\nbackend = \"sqlite\"\npath = \"staging.sqlite\"\nbefore = [\"true\"]\n\n\
    [env.production]\nbackend = \"sqlite\"\npath = \"production.sqlite\"\nprotected = true\n";

const PARENT_CHILD: &str = "CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT);\nCREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id) ON DELETE CASCADE);\n";
const REBUILD: &str = "PRAGMA foreign_keys=OFF;--> statement-breakpoint\nCREATE TABLE `__new_parent` (`id` integer PRIMARY KEY, `name` text NOT NULL DEFAULT '');--> statement-breakpoint\nINSERT INTO `__new_parent`(`id`, `name`) SELECT `id`, coalesce(`name`, '') FROM `parent`;--> statement-breakpoint\nDROP TABLE `parent`;--> statement-breakpoint\nALTER TABLE `__new_parent` RENAME TO `parent`;--> statement-breakpoint\nPRAGMA foreign_keys=ON;";

fn ladder() -> Project {
    let project = Project::new();
    project.config(LADDER);
    project
        .migration("0001_parent.sql", PARENT_CHILD)
        .migration(
            "0002_index.sql",
            "CREATE INDEX child_parent ON child(parent_id);\n",
        );
    project
}

fn snapshot(project: &Project, args: &[&str], code: i32) -> String {
    project.run_ok(args, code).snapshot(project)
}

#[test]
fn lint_reports_codes_lines_and_fixes_and_exits_1_on_errors() {
    let project = ladder();
    project.migration("0003_rebuild.sql", REBUILD);
    let output = project.run_ok(&["lint"], 1);
    insta::assert_snapshot!("lint_rebuild", output.snapshot(&project));
    let json = project.run_ok(&["lint", "--format", "json"], 1).json();
    assert_eq!(json["errors"], 2);
    let codes: Vec<&str> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    // The rows seeded into the shadow confirm what the statement-order judgement says.
    assert_eq!(codes, ["D1002", "D1002", "D1001", "DS105"]);
    // Only the named file.
    let one = project.run_ok(&["lint", "migrations/0002_index.sql"], 0);
    assert!(
        one.stdout
            .contains("1 migration linted: 0 errors, 0 warnings, 0 waived"),
        "{}",
        one.stdout
    );
}

#[test]
fn a_waiver_is_shown_with_its_reason_and_unblocks() {
    let project = ladder();
    project.migration(
        "0003_rebuild.sql",
        &format!("-- d1ctl:allow D1001 child rows are re-imported by the backfill job\n-- d1ctl:allow DS105(child) the backfill job re-imports them\n{REBUILD}"),
    );
    let output = project.run_ok(&["lint", "migrations/0003_rebuild.sql"], 0);
    assert!(output.stdout.contains("waived[D1001]"), "{}", output.stdout);
    assert!(
        output
            .stdout
            .contains("  waived: child rows are re-imported by the backfill job"),
        "{}",
        output.stdout
    );
}

#[test]
fn lint_to_an_env_uses_its_row_counts() {
    let project = ladder();
    project.run_ok(&["apply", "local"], 0);
    project.migration("0003_add.sql", "ALTER TABLE parent ADD COLUMN code TEXT;\nCREATE TABLE parent_new (id INTEGER PRIMARY KEY, name TEXT, code TEXT NOT NULL);\nINSERT INTO parent_new SELECT id, name, coalesce(code, '') FROM parent;\n-- d1ctl:allow D1001 no child rows yet\n-- d1ctl:allow DS105(child) no child rows yet\nDROP TABLE parent;\nALTER TABLE parent_new RENAME TO parent;\n");
    let empty = project
        .run_ok(&["lint", "--to", "local", "--format", "json"], 0)
        .json();
    assert!(
        empty["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["code"] != "MF103"),
        "{empty:#}"
    );
    project
        .db("local.sqlite")
        .execute_batch("INSERT INTO parent VALUES (1, 'a');")
        .unwrap();
    let full = project
        .run_ok(&["lint", "--to", "local", "--format", "json"], 1)
        .json();
    let mf103 = full["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "MF103")
        .expect("MF103");
    assert_eq!(mf103["severity"], "error");
    assert!(
        mf103["message"]
            .as_str()
            .unwrap()
            .contains("has 1 rows on the target")
    );
}

#[test]
fn promote_runs_the_same_lint_as_a_gate() {
    let project = ladder();
    project.migration("0003_rebuild.sql", REBUILD);
    let output = project.run_ok(&["promote", "--to", "local"], 1);
    assert!(
        output
            .stderr
            .contains("FAIL lint          D1001 0003_rebuild.sql: rebuilding `parent`"),
        "{}",
        output.stderr
    );
    assert!(!project.path("local.sqlite").exists());
}

#[test]
fn checklist_of_a_clean_promotion() {
    let project = ladder();
    project.run_ok(&["promote", "--to", "local"], 0);
    insta::assert_snapshot!(
        "checklist_clean",
        snapshot(&project, &["checklist", "--to", "staging"], 0)
    );
    let json = project
        .run_ok(&["checklist", "--to", "staging", "--format", "json"], 0)
        .json();
    insta::assert_json_snapshot!("checklist_clean_json", json);
}

#[test]
fn checklist_of_a_blocked_promotion() {
    let project = ladder();
    project.migration("0003_rebuild.sql", REBUILD);
    project.run_ok(&["apply", "local"], 0);
    project
        .db("local.sqlite")
        .execute_batch("ALTER TABLE child ADD COLUMN sneaky TEXT;")
        .unwrap();
    insta::assert_snapshot!(
        "checklist_blocked",
        snapshot(&project, &["checklist", "--to", "staging"], 1)
    );
    let json = project
        .run_ok(&["checklist", "--to", "staging", "--format", "json"], 1)
        .json();
    assert_eq!(json["blocked"], true);
    insta::assert_json_snapshot!("checklist_blocked_json", json);
}

#[test]
fn checklist_of_a_protected_target_has_sign_off_boxes() {
    let project = ladder();
    project.run_ok(&["promote", "--to", "staging", "--cascade"], 0);
    insta::assert_snapshot!(
        "checklist_protected",
        snapshot(
            &project,
            &["checklist", "--to", "production", "--format", "markdown"],
            0
        )
    );
    let json = project
        .run_ok(&["checklist", "--to", "production", "--format", "json"], 0)
        .json();
    assert_eq!(json["sign_off"].as_array().unwrap().len(), 4);
    insta::assert_json_snapshot!("checklist_protected_json", json);
}

#[test]
fn completions_generate_for_bash_zsh_and_fish() {
    let project = ladder();
    for shell in ["bash", "zsh", "fish"] {
        let output = project.run_ok(&["completions", shell], 0);
        assert!(
            output.stdout.contains("d1ctl") && output.stdout.contains("promote"),
            "{shell}"
        );
    }
}

#[test]
fn version_names_the_git_revision() {
    let output = ladder().run_ok(&["--version"], 0);
    assert!(
        output
            .stdout
            .starts_with(concat!("d1ctl ", env!("CARGO_PKG_VERSION"))),
        "{}",
        output.stdout
    );
}

#[test]
fn every_command_has_an_example_in_its_help() {
    for command in [
        "status",
        "apply",
        "new",
        "plan",
        "promote",
        "rollback",
        "lock",
        "baseline",
        "drift",
        "export",
        "pull",
        "rehearse",
        "lint",
        "checklist",
        "completions",
        "init",
        "auth",
        "sim",
    ] {
        let output = ladder().run_ok(&[command, "--help"], 0);
        assert!(
            output.stdout.contains("Examples:\n  d1ctl "),
            "`d1ctl {command} --help` has no example:\n{}",
            output.stdout
        );
    }
}

/// Checks `value` against `shape`: objects must have every key of the shape (more are fine),
/// arrays check each item against the shape's first element, strings name a JSON type.
fn conforms(value: &Value, shape: &Value, path: &str) {
    match shape {
        Value::String(kind) => {
            let ok = match kind.as_str() {
                "string" => value.is_string(),
                "number" => value.is_number(),
                "bool" => value.is_boolean(),
                "string|null" => value.is_string() || value.is_null(),
                "any" => true,
                other => panic!("unknown shape type {other}"),
            };
            assert!(ok, "{path}: expected {kind}, found {value}");
        }
        Value::Object(fields) => {
            for (key, field) in fields {
                let child = value
                    .get(key)
                    .unwrap_or_else(|| panic!("{path}: missing key `{key}` in {value}"));
                conforms(child, field, &format!("{path}.{key}"));
            }
        }
        Value::Array(items) => {
            let array = value
                .as_array()
                .unwrap_or_else(|| panic!("{path}: expected an array, found {value}"));
            for (i, item) in array.iter().enumerate() {
                conforms(item, &items[0], &format!("{path}[{i}]"));
            }
        }
        _ => panic!("bad shape"),
    }
}

/// The JSON shapes the README documents, checked against real output.
#[test]
fn json_outputs_have_their_documented_shapes() {
    let project = ladder();
    project.migration(
        "0003_rebuild.sql",
        &format!("-- d1ctl:allow D1001 reviewed\n-- d1ctl:allow DS105(child) reviewed\n{REBUILD}"),
    );
    project.run_ok(&["promote", "--to", "local"], 0);

    let status = project.run_ok(&["status", "--format", "json"], 0).json();
    conforms(
        &status,
        &json!({"environments": [{"name": "string", "backend": "string", "migrations": [{"name": "string", "state": "string"}]}]}),
        "status",
    );

    let plan = project
        .run(&["plan", "--to", "staging", "--format", "json"])
        .json();
    let rung = json!({"environment": "string", "backend": "string", "database": "string", "protected": "bool", "outcome": "string",
        "rollback_point_kind": "string",
        "plan": {"source": "string", "target": "string", "pending": [{"name": "string", "statements": "number", "bytes": "number"}],
                 "not_yet_at_source": ["string"], "gates": [{"name": "string", "passed": "bool", "detail": "string"}]}});
    conforms(
        &plan,
        &json!({"dry_run": "bool", "rungs": [rung.clone()]}),
        "plan",
    );
    let promote = project
        .run(&["promote", "--to", "staging", "--format", "json"])
        .json();
    conforms(
        &promote,
        &json!({"dry_run": "bool", "rungs": [rung]}),
        "promote",
    );
    assert_eq!(promote["rungs"][0]["outcome"], "promoted");
    conforms(
        &promote["rungs"][0],
        &json!({"rollback_point": {"kind": "string", "point": "string"}, "rollback_command": "string", "verified": "bool", "applied": [{"name": "string", "statements": "number", "duration_ms": "number"}]}),
        "promote.rungs",
    );

    let drift = project
        .run(&["drift", "local", "staging", "--format", "json"])
        .json();
    let side =
        json!({"name": "string", "kind": "string", "applied": ["string"], "objects": "string"});
    conforms(
        &drift,
        &json!({"a": side.clone(), "b": side, "drift": "bool", "ledgers": {"only_in_a": ["string"], "only_in_b": ["string"]},
        "changes": [{"object": "string", "name": "string", "change": "string", "summary": "string"}]}),
        "drift",
    );

    let lint = project.run(&["lint", "--format", "json"]).json();
    conforms(
        &lint,
        &json!({"migrations": ["string"], "errors": "number", "warnings": "number", "waived": "number",
        "findings": [{"code": "string", "severity": "string", "migration": "string", "message": "string", "fix": "string"}]}),
        "lint",
    );

    let checklist = project
        .run(&["checklist", "--to", "production", "--format", "json"])
        .json();
    conforms(
        &checklist,
        &json!({"target": {"environment": "string", "backend": "string", "database": "string", "protected": "bool"},
        "source": "string", "ledgers": [{"migration": "string", "source": "string", "target": "string"}],
        "pending": [{"name": "string", "statements": "number", "bytes": "number", "findings": ["any"]}],
        "gates": [{"name": "string", "passed": "bool", "detail": "string"}], "target_drift": {"name": "string", "passed": "bool", "detail": "string"},
        "rehearsal": {"status": "string", "detail": "string", "command": "string"},
        "rollback": {"kind": "string", "taken": "string", "command": "string"}, "hooks": {"before": ["string"], "after": ["string"]},
        "sign_off": ["string"], "blocking": ["string"], "blocked": "bool"}),
        "checklist",
    );
}
