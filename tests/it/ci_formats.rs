//! What CI reads from d1ctl: `lint --format github` (workflow commands, checked against GitHub's
//! syntax and escaping) and `lint --format sarif` (checked against the SARIF 2.1.0 JSON Schema),
//! and the name of the keyring `auth status` reports.

use std::path::PathBuf;
use std::process::Command;

use crate::common::Project;

const INIT: &str = "\
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT);
CREATE INDEX posts_title ON posts (title);
";

/// An error (DS102), a warning (D1002) and a waived error (DS103), with a `%` and a `,` in the
/// waiver's reason and a comma and a `%` in the file's path (no `:`: Windows forbids it in
/// file names; the unit tests cover it), so escaping is exercised.
const RISKY: &str = "\
-- d1ctl:allow DS103 100% unused, says the team
ALTER TABLE users DROP COLUMN name;
DROP INDEX posts_title;
PRAGMA foreign_keys = OFF;
DROP TABLE posts;
";

fn risky_project() -> Project {
    let project = Project::new();
    project.migration("0001_init.sql", INIT);
    project.migration("0002_drop,posts%now.sql", RISKY);
    project
}

#[test]
fn lint_format_github_is_one_workflow_command_per_finding() {
    let project = risky_project();
    let output = project.run_ok(&["lint", "--format", "github"], 1);
    insta::assert_snapshot!("lint_format_github", output.snapshot(&project));

    // The same findings as `--format json`, in the same order, each line a valid command
    // whose decoded fields say what the JSON says.
    let json = project.run_ok(&["lint", "--format", "json"], 1).json();
    let findings = json["findings"].as_array().expect("findings");
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert_eq!(lines.len(), findings.len(), "{}", output.stdout);
    for (line, finding) in lines.iter().zip(findings) {
        let command = parse_workflow_command(line);
        let waived = finding.get("waived").and_then(|w| w.as_str());
        let expected_level = match (waived, finding["severity"].as_str()) {
            (Some(_), _) => "notice",
            (None, Some(severity)) => severity,
            (None, None) => panic!("no severity: {finding}"),
        };
        assert_eq!(command.name, expected_level, "{line}");
        assert_eq!(
            command.property("file"),
            Some("migrations/0002_drop,posts%now.sql"),
            "{line}"
        );
        assert_eq!(
            command.property("line").map(str::to_owned),
            finding["line"].as_u64().map(|n| n.to_string()),
            "{line}"
        );
        let code = finding["code"].as_str().expect("code");
        let title = command.property("title").expect("title");
        assert!(
            title == code || title == format!("{code} (waived)"),
            "{line}"
        );
        let second = match waived {
            Some(reason) => format!("waived: {reason}"),
            None => format!("fix: {}", finding["fix"].as_str().expect("fix")),
        };
        let message = finding["message"].as_str().expect("message");
        assert_eq!(command.message, format!("{message}\n{second}"), "{line}");
    }
}

#[test]
fn lint_format_github_prints_nothing_on_stdout_when_clean() {
    let project = Project::new();
    project.migration("0001_init.sql", INIT);
    let output = project.run_ok(&["lint", "--format", "github"], 0);
    assert_eq!(output.stdout, "");
    assert!(
        output.stderr.contains("1 migration linted: 0 errors"),
        "{}",
        output.stderr
    );
}

#[test]
fn lint_format_sarif_is_valid_sarif_2_1_0() {
    let project = risky_project();
    let output = project.run_ok(&["lint", "--format", "sarif"], 1);
    let log = output.json();
    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "d1ctl");
    let results = run["results"].as_array().expect("results");
    let json = project.run_ok(&["lint", "--format", "json"], 1).json();
    assert_eq!(
        results.len(),
        json["findings"].as_array().expect("findings").len()
    );
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    for result in results {
        let index = usize::try_from(result["ruleIndex"].as_u64().expect("ruleIndex")).unwrap();
        assert_eq!(rules[index]["id"], result["ruleId"]);
        assert_eq!(
            result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "migrations/0002_drop%2Cposts%25now.sql"
        );
    }
    let waived: Vec<_> = results
        .iter()
        .filter(|r| r.get("suppressions").is_some())
        .collect();
    assert_eq!(waived.len(), 1, "{results:?}");
    assert_eq!(waived[0]["ruleId"], "DS103");

    let Some(validator) = SchemaValidator::find() else {
        return;
    };
    validator.assert_valid(&output.stdout);
    // A validator that accepts anything proves nothing: a log with a wrong version must fail.
    let mut broken = log.clone();
    broken["version"] = "2.0.0".into();
    validator.assert_invalid(&broken.to_string());
}

#[test]
fn auth_status_names_the_keyring_of_this_build() {
    let expected = if cfg!(target_os = "macos") {
        "macOS Keychain"
    } else if cfg!(target_os = "windows") {
        "Windows Credential Manager"
    } else {
        "Secret Service"
    };
    let project = Project::empty();
    project.config(
        "[env.staging]\nbackend = \"d1\"\naccount_id = \"abcdefabcdefabcdefabcdefabcdef12\"\ndatabase_id = \"55555555-5555-4555-8555-555555555555\"\ndatabase_name = \"app\"\n",
    );
    // No token anywhere: the status says so (exit 1), and still names the store.
    let text = project.run_ok(&["auth", "status"], 1);
    assert!(
        text.stdout
            .starts_with(&format!("keyring: {expected} (service `d1ctl`)\n")),
        "{}",
        text.stdout
    );
    let json = project
        .run_ok(&["auth", "status", "--format", "json"], 1)
        .json();
    assert_eq!(json["keyring"], expected);
}

/// One parsed `::name key=value,…::message` line, its fields decoded.
struct WorkflowCommand {
    name: String,
    properties: Vec<(String, String)>,
    message: String,
}

impl WorkflowCommand {
    fn property(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a line by GitHub's rules for workflow commands, panicking on anything they do not
/// allow: an unknown command or property, a raw `:` or `,` inside a property, or a `%` that does
/// not start one of the escapes.
fn parse_workflow_command(line: &str) -> WorkflowCommand {
    let rest = line
        .strip_prefix("::")
        .unwrap_or_else(|| panic!("not a command: {line}"));
    let (head, message) = rest
        .split_once("::")
        .unwrap_or_else(|| panic!("no `::` before the message: {line}"));
    let (name, properties) = head.split_once(' ').unwrap_or((head, ""));
    assert!(
        ["error", "warning", "notice"].contains(&name),
        "unknown command `{name}`: {line}"
    );
    let properties = properties
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|property| {
            let (key, value) = property
                .split_once('=')
                .unwrap_or_else(|| panic!("property without `=`: {line}"));
            assert!(
                ["file", "line", "endLine", "col", "endColumn", "title"].contains(&key),
                "unknown property `{key}`: {line}"
            );
            assert!(!value.contains(':'), "raw `:` in a property: {line}");
            (key.to_owned(), decode(value, true, line))
        })
        .collect();
    WorkflowCommand {
        name: name.to_owned(),
        properties,
        message: decode(message, false, line),
    }
}

fn decode(text: &str, property: bool, line: &str) -> String {
    assert!(
        !text.contains('\r') && !text.contains('\n'),
        "raw CR or LF: {line}"
    );
    let mut out = String::new();
    let mut rest = text;
    while let Some(position) = rest.find('%') {
        out.push_str(&rest[..position]);
        let escape = rest.get(position..position + 3).unwrap_or("");
        let decoded = match escape {
            "%25" => '%',
            "%0D" => '\r',
            "%0A" => '\n',
            "%3A" if property => ':',
            "%2C" if property => ',',
            _ => panic!("`%` that starts no escape ({escape}): {line}"),
        };
        out.push(decoded);
        rest = &rest[position + 3..];
    }
    out.push_str(rest);
    out
}

/// Python's `jsonschema` and the SARIF 2.1.0 schema, when both are there: `D1CTL_SARIF_SCHEMA`
/// names the schema file and `D1CTL_PYTHON` the interpreter (`python3` by default). Without
/// them the schema check prints `SKIPPED` and passes, unless `D1CTL_REQUIRE_SARIF_SCHEMA=1`
/// (set by CI, which installs both) makes that a failure.
struct SchemaValidator {
    python: String,
    schema: PathBuf,
}

const VALIDATE: &str = "\
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1], encoding='utf-8'))
document = json.load(sys.stdin)
validator = jsonschema.validators.validator_for(schema)(schema)
errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
for error in errors:
    print('/'.join(map(str, error.path)) + ': ' + error.message)
sys.exit(1 if errors else 0)
";

impl SchemaValidator {
    fn find() -> Option<Self> {
        let required = std::env::var_os("D1CTL_REQUIRE_SARIF_SCHEMA")
            .is_some_and(|value| !value.is_empty() && value != "0");
        let python = std::env::var("D1CTL_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let schema = std::env::var_os("D1CTL_SARIF_SCHEMA").map(PathBuf::from);
        let has_jsonschema = Command::new(&python)
            .args(["-c", "import jsonschema"])
            .output()
            .is_ok_and(|output| output.status.success());
        let missing = match &schema {
            None => Some("D1CTL_SARIF_SCHEMA is not set".to_owned()),
            Some(path) if !path.is_file() => Some(format!("{} is not a file", path.display())),
            Some(_) if !has_jsonschema => Some(format!("`{python}` has no jsonschema module")),
            Some(_) => None,
        };
        if let Some(reason) = missing {
            assert!(!required, "the SARIF schema check cannot run: {reason}");
            // Straight to the process's stderr: the test harness swallows `eprintln!`.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!(
                    "SKIPPED the SARIF JSON Schema check: {reason}; set \
                     D1CTL_REQUIRE_SARIF_SCHEMA=1 to make this a failure\n"
                )
                .as_bytes(),
            );
            return None;
        }
        Some(Self {
            python,
            schema: schema?,
        })
    }

    fn run(&self, document: &str) -> (bool, String) {
        use std::io::Write as _;
        let mut child = Command::new(&self.python)
            .args(["-c", VALIDATE])
            .arg(&self.schema)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the validator");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(document.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }

    fn assert_valid(&self, document: &str) {
        let (valid, text) = self.run(document);
        assert!(valid, "not valid SARIF 2.1.0:\n{text}\n{document}");
    }

    fn assert_invalid(&self, document: &str) {
        let (valid, text) = self.run(document);
        assert!(!valid, "the schema accepted a broken log: {text}");
        assert!(text.contains("version"), "{text}");
    }
}
