//! Lint findings in the two shapes CI systems read: GitHub Actions workflow commands (annotations
//! on a pull request's diff) and SARIF 2.1.0 (code scanning).
//!
//! Both take each finding's file as the caller gives it: a path relative to the repository root
//! (the working directory), which is what both consumers resolve against.

use serde_json::{Value, json};

use super::{Finding, RULES, Severity};

/// One `::error file=…,line=…,title=CODE::message` line per finding (`::warning` for warnings,
/// `::notice` for waived findings, so a waiver stays visible without failing anything).
///
/// No `col=`: a finding knows the line of the statement to blame, not a column, and GitHub
/// places an annotation without one on the whole line.
pub fn github_annotations(findings: &[Finding], path_of: &dyn Fn(&Finding) -> String) -> String {
    let mut out = String::new();
    for finding in findings {
        let (command, title) = match (&finding.waived, finding.severity) {
            (Some(_), _) => ("notice", format!("{} (waived)", finding.code)),
            (None, Severity::Error) => ("error", finding.code.to_owned()),
            (None, Severity::Warning) => ("warning", finding.code.to_owned()),
        };
        let mut properties = vec![format!("file={}", escape_property(&path_of(finding)))];
        if let Some(line) = finding.line {
            properties.push(format!("line={line}"));
        }
        properties.push(format!("title={}", escape_property(&title)));
        out.push_str(&format!(
            "::{command} {}::{}\n",
            properties.join(","),
            escape_data(&message(finding))
        ));
    }
    out
}

/// The SARIF 2.1.0 log of one run of `d1ctl lint`: every rule d1ctl has (so code scanning can
/// show a rule's description even for results it has not seen before) and one result per
/// finding; a waived finding is a result with an in-source suppression carrying its reason.
pub fn sarif(findings: &[Finding], path_of: &dyn Fn(&Finding) -> String) -> Value {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|(code, severity, meaning)| {
            json!({
                "id": code,
                "shortDescription": { "text": meaning },
                "defaultConfiguration": { "level": level(*severity) },
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|finding| {
            let mut physical = json!({
                "artifactLocation": { "uri": uri_of(&path_of(finding)) },
            });
            if let Some(line) = finding.line {
                physical["region"] = json!({ "startLine": line });
            }
            let mut result = json!({
                "ruleId": finding.code,
                "level": level(finding.severity),
                "message": { "text": message(finding) },
                "locations": [{ "physicalLocation": physical }],
            });
            if let Some(index) = RULES.iter().position(|(code, _, _)| *code == finding.code) {
                result["ruleIndex"] = json!(index);
            }
            if let Some(reason) = &finding.waived {
                result["suppressions"] = json!([{ "kind": "inSource", "justification": reason }]);
            }
            result
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "d1ctl",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            "results": results,
        }],
    })
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// The finding's message and, on the next line, its fix (or the waiver's reason).
fn message(finding: &Finding) -> String {
    match &finding.waived {
        Some(reason) => format!("{}\nwaived: {reason}", finding.message),
        None => format!("{}\nfix: {}", finding.message, finding.fix),
    }
}

/// A workflow command's message: GitHub reads `%`, CR and LF as its own syntax.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value: also `:` (ends the properties) and `,` (separates them).
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// A relative URI reference for a path: `/` separators (also from a Windows path), and every
/// byte outside the unreserved set and `/` percent-encoded, so a space or `#` in a file name
/// cannot change what the URI means. An absolute path becomes a `file:` URI.
fn uri_of(path: &str) -> String {
    let path = path.replace('\\', "/");
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    if path.starts_with('/') {
        format!("file://{out}")
    } else if path.as_bytes().get(1) == Some(&b':') {
        // `C:/…`: the drive letter's colon was encoded above; a file URI keeps it.
        format!("file:///{}:{}", &path[..1], &out[4..])
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(code: &'static str, severity: Severity, line: Option<usize>) -> Finding {
        Finding {
            code,
            severity,
            migration: "0002_drop.sql".to_owned(),
            line,
            message: "100% of `users`, dropped:\nrows gone".to_owned(),
            fix: "keep it, or waive: a, b".to_owned(),
            waived: None,
            column: None,
            table: None,
        }
    }

    #[test]
    fn github_escapes_data_and_properties() {
        let findings = [finding("DS102", Severity::Error, Some(3))];
        let text = github_annotations(&findings, &|_| "dir,a/b:c%.sql".to_owned());
        assert_eq!(
            text,
            "::error file=dir%2Ca/b%3Ac%25.sql,line=3,title=DS102::100%25 of `users`, \
             dropped:%0Arows gone%0Afix: keep it, or waive: a, b\n"
        );
    }

    #[test]
    fn github_levels_and_lines() {
        let mut waived = finding("DS102", Severity::Error, None);
        waived.waived = Some("legacy\r\ntable".to_owned());
        let findings = [finding("DS104", Severity::Warning, Some(1)), waived];
        let text = github_annotations(&findings, &|f| format!("migrations/{}", f.migration));
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("::warning file=migrations/0002_drop.sql,line=1,title=DS104::")
        );
        assert!(
            lines[1].starts_with("::notice file=migrations/0002_drop.sql,title=DS102 (waived)::")
        );
        assert!(lines[1].ends_with("%0Awaived: legacy%0D%0Atable"));
    }

    #[test]
    fn sarif_results_point_at_rules_and_lines() {
        let mut waived = finding("D1002", Severity::Warning, Some(7));
        waived.waived = Some("on purpose".to_owned());
        let findings = [finding("DS102", Severity::Error, Some(3)), waived];
        let log = sarif(&findings, &|_| "migrations/0002 drop#1.sql".to_owned());
        let run = &log["runs"][0];
        let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
        assert_eq!(rules.len(), RULES.len());
        let first = &run["results"][0];
        let index = usize::try_from(first["ruleIndex"].as_u64().expect("index")).expect("usize");
        assert_eq!(rules[index]["id"], "DS102");
        assert_eq!(first["level"], "error");
        let location = &first["locations"][0]["physicalLocation"];
        assert_eq!(
            location["artifactLocation"]["uri"],
            "migrations/0002%20drop%231.sql"
        );
        assert_eq!(location["region"]["startLine"], 3);
        let second = &run["results"][1];
        assert_eq!(second["suppressions"][0]["kind"], "inSource");
        assert_eq!(second["suppressions"][0]["justification"], "on purpose");
    }

    #[test]
    fn absolute_paths_become_file_uris() {
        assert_eq!(uri_of("/tmp/a b.sql"), "file:///tmp/a%20b.sql");
        assert_eq!(uri_of("C:\\work\\m.sql"), "file:///C:/work/m.sql");
        assert_eq!(uri_of("migrations\\0001.sql"), "migrations/0001.sql");
    }
}
