//! Lease takeover: a live lease is taken over only when its holder is provably dead (same host,
//! same boot, same pid namespace, pid gone or reused), never on a hostname alone.

use crate::common::{LOCAL_ONLY, Output, Project, rows};

/// The facts a lease records, as `d1ctl` run from this test process sees them (the binary is a
/// child: same host, boot and pid namespace).
struct Facts {
    host: String,
    boot_id: String,
    pid_namespace: String,
}

fn facts() -> Facts {
    Facts {
        host: gethostname::gethostname().to_string_lossy().into_owned(),
        boot_id: fs_err::read_to_string("/proc/sys/kernel/random/boot_id")
            .unwrap()
            .trim()
            .to_owned(),
        pid_namespace: fs_err::read_link("/proc/self/ns/pid")
            .unwrap()
            .display()
            .to_string(),
    }
}

/// The start time (clock ticks after boot) of this test process.
fn own_start_ticks() -> u64 {
    let stat = fs_err::read_to_string("/proc/self/stat").unwrap();
    let after_name = stat.rsplit_once(')').unwrap().1;
    after_name
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap()
}

/// The pid of a process that ran and was reaped: nothing runs at it any more.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// A local env with one migration applied, rows in its table, a second migration pending, and a
/// live (unexpired) lease row of `holder` whose `host` column is `host_column`, in the lock
/// table's original shape.
fn locked_project(host_column: &str, pid: u32) -> Project {
    let project = Project::new();
    project.migration(
        "0001_users.sql",
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n",
    );
    project.run_ok(&["apply", "local"], 0);
    project.migration(
        "0002_nickname.sql",
        "ALTER TABLE users ADD COLUMN nickname TEXT NOT NULL DEFAULT '';\n",
    );
    let db = project.db("local.sqlite");
    db.execute_batch(
        "INSERT INTO users (id, email) VALUES (1, 'a@example.com'), (2, 'b@example.com');\
         CREATE TABLE IF NOT EXISTS _d1ctl_lock (id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL, command TEXT NOT NULL, acquired_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);",
    )
    .unwrap();
    db.execute(
        "INSERT INTO _d1ctl_lock VALUES (1, 'other-holder', ?1, ?2, 'promote --to local', unixepoch(), unixepoch() + 600)",
        rusqlite::params![host_column, pid],
    )
    .unwrap();
    project
}

fn host_column(facts: &Facts, boot_id: &str, pid_namespace: &str, started: u64) -> String {
    format!(
        "{} boot_id={boot_id} pid_namespace={pid_namespace} started={started}",
        facts.host
    )
}

/// Output with this machine's facts replaced by placeholders.
fn filtered(output: &Output, project: &Project, facts: &Facts, pid: u32) -> String {
    let text = output
        .snapshot(project)
        .replace(&facts.boot_id, "[BOOT_ID]")
        .replace(&facts.pid_namespace, "[PID_NS]")
        .replace(&format!("pid {pid}"), "pid [PID]")
        .replace(&facts.host, "[HOST]");
    // A second may pass between writing the row and reading it.
    seconds_filtered(&text)
}

/// Replaces the number in each `N s` (a duration in seconds) with `[S]`.
fn seconds_filtered(text: &str) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch.is_ascii_digit() && (digits.is_empty() && out.ends_with(' ') || !digits.is_empty()) {
            digits.push(ch);
            continue;
        }
        if !digits.is_empty() {
            let is_seconds = ch == ' ' && chars.peek() == Some(&'s');
            out.push_str(if is_seconds { "[S]" } else { &digits });
            digits.clear();
        }
        out.push(ch);
    }
    out.push_str(&digits);
    out
}

/// The lease is still the other holder's, nothing was applied and the rows are untouched.
fn assert_untouched(project: &Project) {
    let db = project.db("local.sqlite");
    assert_eq!(
        rows(&db, "SELECT holder FROM _d1ctl_lock"),
        ["other-holder"]
    );
    assert_eq!(
        rows(&db, "SELECT name FROM d1_migrations"),
        ["0001_users.sql"]
    );
    assert_eq!(
        rows(&db, "SELECT email FROM users ORDER BY id"),
        ["a@example.com", "b@example.com"]
    );
}

/// The promotion took the lease over, applied the pending migration, kept the rows and released.
fn assert_taken_over(project: &Project, output: &Output) {
    assert!(
        output.stderr.contains("took over the lock of other-holder"),
        "{}",
        output.stderr
    );
    let db = project.db("local.sqlite");
    assert_eq!(rows(&db, "SELECT count(*) FROM _d1ctl_lock"), ["0"]);
    assert_eq!(
        rows(&db, "SELECT name FROM d1_migrations ORDER BY id"),
        ["0001_users.sql", "0002_nickname.sql"]
    );
    assert_eq!(
        rows(&db, "SELECT email, nickname FROM users ORDER BY id"),
        ["a@example.com|", "b@example.com|"]
    );
}

#[test]
fn the_lease_of_a_dead_local_pid_is_taken_over() {
    let facts = facts();
    let pid = dead_pid();
    let project = locked_project(
        &host_column(&facts, &facts.boot_id, &facts.pid_namespace, 1),
        pid,
    );
    let status = project.run_ok(&["lock", "status", "local"], 0);
    insta::assert_snapshot!(
        "lock_status_dead_holder",
        filtered(&status, &project, &facts, pid)
    );
    let output = project.run_ok(&["promote", "--to", "local"], 0);
    assert!(
        output.stderr.contains(&format!(
            "pass lock          held by other-holder (pid {pid}), a process of this machine that no longer runs (pid {pid} no longer exists): it will be taken over"
        )),
        "{}",
        output.stderr
    );
    assert_taken_over(&project, &output);
}

#[test]
fn the_lease_of_a_pid_reused_by_a_later_process_is_taken_over() {
    let facts = facts();
    // This test process runs at the pid, but it started after the recorded holder did.
    let pid = std::process::id();
    let project = locked_project(
        &host_column(
            &facts,
            &facts.boot_id,
            &facts.pid_namespace,
            own_start_ticks() - 1,
        ),
        pid,
    );
    let output = project.run_ok(&["promote", "--to", "local"], 0);
    assert!(
        output
            .stderr
            .contains("now belongs to a process started after it"),
        "{}",
        output.stderr
    );
    assert_taken_over(&project, &output);
}

#[test]
fn takeover_is_refused_across_another_boot_id() {
    let facts = facts();
    let pid = dead_pid();
    let project = locked_project(
        &host_column(
            &facts,
            "00000000-0000-4000-8000-000000000000",
            &facts.pid_namespace,
            1,
        ),
        pid,
    );
    let output = project.run_ok(&["promote", "--to", "local"], 1);
    insta::assert_snapshot!("lease_other_boot", filtered(&output, &project, &facts, pid));
    assert_untouched(&project);
}

#[test]
fn takeover_is_refused_across_another_pid_namespace() {
    let facts = facts();
    let pid = dead_pid();
    let project = locked_project(&host_column(&facts, &facts.boot_id, "pid:[1]", 1), pid);
    let output = project.run_ok(&["promote", "--to", "local"], 1);
    assert!(
        output.stderr.contains(
            "FAIL lock          held by other-holder on [HOST] (pid [PID], `promote --to local`)"
                .replace("[HOST]", &facts.host)
                .replace("[PID]", &pid.to_string())
                .as_str()
        ) && output.stderr.contains(
            "not taken over: it runs in another pid namespace (pid:[1]), e.g. another container on this host"
        ),
        "{}",
        output.stderr
    );
    assert_untouched(&project);
}

#[test]
fn an_old_format_lease_is_freed_only_by_expiry_or_release() {
    let facts = facts();
    let pid = dead_pid();
    // An older d1ctl wrote only the hostname: its dead pid proves nothing.
    let project = locked_project(&facts.host, pid);
    let output = project.run_ok(&["promote", "--to", "local"], 1);
    assert!(
        output
            .stderr
            .contains("not taken over: the lease records no boot id (an older d1ctl wrote it)"),
        "{}",
        output.stderr
    );
    assert_untouched(&project);
    project.run_ok(&["lock", "release", "local", "--id", "other-holder"], 0);
    let output = project.run_ok(&["promote", "--to", "local"], 0);
    assert!(
        output.stderr.contains("applied 0002_nickname.sql"),
        "{}",
        output.stderr
    );
    let db = project.db("local.sqlite");
    assert_eq!(
        rows(&db, "SELECT email, nickname FROM users ORDER BY id"),
        ["a@example.com|", "b@example.com|"]
    );
}

#[test]
fn a_new_lease_records_the_holders_facts_in_the_old_table() {
    let facts = facts();
    let pid = dead_pid();
    // Our own lease, written mid-promotion, is read back from the table's original shape.
    let project = locked_project(&facts.host, pid);
    project.run_ok(&["lock", "release", "local", "--id", "other-holder"], 0);
    let db = project.db("local.sqlite");
    // A trigger keeps a copy of the promotion's lease row as it is taken (`_cf_` tables and the
    // lock table's triggers are outside the compared schema). D1's rules refuse a write to a
    // `_cf_` table, so this env opts out of them for the trick.
    project.config(&format!("{LOCAL_ONLY}d1_rules = false\n"));
    db.execute_batch(
        "CREATE TABLE _cf_taken (host TEXT); CREATE TRIGGER keep_lease AFTER INSERT ON _d1ctl_lock BEGIN INSERT INTO _cf_taken VALUES (NEW.host); END;",
    )
    .unwrap();
    project.run_ok(&["promote", "--to", "local"], 0);
    let taken = rows(&db, "SELECT host FROM _cf_taken");
    assert_eq!(taken.len(), 1, "{taken:?}");
    let expected_prefix = format!(
        "{} boot_id={} pid_namespace={} started=",
        facts.host, facts.boot_id, facts.pid_namespace
    );
    assert!(taken[0].starts_with(&expected_prefix), "{taken:?}");
    assert!(
        taken[0][expected_prefix.len()..].parse::<u64>().is_ok(),
        "{taken:?}"
    );
}
