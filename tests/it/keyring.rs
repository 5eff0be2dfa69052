//! A real OS keyring (Secret Service) round trip through `d1ctl::credentials::KeyringStore`.
//!
//! CI runs this inside a private D-Bus session with an unlocked gnome-keyring and sets
//! `D1CTL_REQUIRE_KEYRING=1`, which turns "no keyring reachable" into a failure. Elsewhere the
//! test skips with a message on stderr.

use d1ctl::credentials::{StoreError, keyring_round_trip_check};

#[test]
fn keyring_round_trip() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let entry = format!("it-round-trip-{}-{nanos}", std::process::id());
    match keyring_round_trip_check(&entry) {
        Ok(()) => {}
        Err(StoreError::Unavailable { message }) if !keyring_required() => {
            skipped("keyring_round_trip", &message);
        }
        Err(error) => panic!("keyring round trip failed: {error}"),
    }
}

/// Says a test skipped, straight to the process's stderr so the harness does not swallow it.
fn skipped(test: &str, reason: &str) {
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: no OS keyring ({reason}); set D1CTL_REQUIRE_KEYRING=1 to make this a failure"
    );
}

/// Whether `D1CTL_REQUIRE_KEYRING` is set (to anything but empty or `0`): CI sets it so that an
/// unreachable keyring fails the test instead of skipping it.
fn keyring_required() -> bool {
    std::env::var_os("D1CTL_REQUIRE_KEYRING").is_some_and(|value| !value.is_empty() && value != "0")
}

/// `auth login` (token piped on stdin) → `status` with the token from the keyring → `auth
/// logout` → the token is gone, all through the real binary and a real Secret Service.
#[test]
fn login_status_logout_through_the_cli() {
    use std::io::Write as _;
    use std::process::Stdio;

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let env = format!("kr-{}-{nanos}", std::process::id());
    match keyring_round_trip_check(&format!("{env}-probe")) {
        Ok(()) => {}
        Err(StoreError::Unavailable { message }) if !keyring_required() => {
            skipped("login_status_logout_through_the_cli", &message);
            return;
        }
        Err(error) => panic!("keyring unusable: {error}"),
    }

    let token = format!("keyring-token-{nanos}");
    let sim = d1ctl::sim::Simulator::start(d1ctl::sim::SimConfig {
        data_dir: None,
        tokens: vec![token.clone()],
        databases: vec![(
            "app".to_owned(),
            "55555555-5555-4555-8555-555555555555".to_owned(),
        )],
    })
    .unwrap();
    let project = crate::common::Project::new();
    project.config(&format!(
        "[env.{env}]\nbackend = \"d1\"\naccount_id = \"abcdefabcdefabcdefabcdefabcdef12\"\ndatabase_id = \"55555555-5555-4555-8555-555555555555\"\ndatabase_name = \"app\"\n"
    ));
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut command = project.command(args);
        command
            .env("CLOUDFLARE_API_BASE_URL", sim.base_url())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut pipe = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            pipe.write_all(text.as_bytes()).unwrap();
        }
        drop(pipe);
        let output = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!text.contains(&token), "the token was printed:\n{text}");
        (output.status.code().unwrap_or(-1), text)
    };

    let (code, text) = run(&["auth", "login", &env], Some(&format!("{token}\n")));
    assert_eq!(code, 0, "{text}");
    let (code, text) = run(&["auth", "status", &env], None);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("keyring"), "{text}");
    let (code, text) = run(&["status", &env, "-v"], None);
    assert_eq!(code, 0, "{text}");
    let (code, text) = run(&["auth", "logout", &env], None);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("removed the token"), "{text}");
    let (code, text) = run(&["status", &env], None);
    assert_eq!(code, 2, "{text}");
}
