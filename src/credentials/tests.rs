//! Resolution tests: precedence, names, the toml rule, errors and redaction.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;

const ACCOUNT: &str = "acc-from-toml";
const DATABASE: &str = "db-from-toml";

/// A temp folder holding `environments.toml`'s neighbours, an environment map and a keyring.
struct Fixture {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    vars: HashMap<String, String>,
    store: MemoryStore,
    token_env: Option<&'static str>,
    account_id: Option<&'static str>,
    database_id: Option<&'static str>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("environments.toml");
        Self {
            dir,
            config_path,
            vars: HashMap::new(),
            store: MemoryStore::new(),
            token_env: None,
            account_id: Some(ACCOUNT),
            database_id: Some(DATABASE),
        }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir().join(name);
        fs_err::write(&path, content).expect("write dotenv file");
        path
    }

    fn var(&mut self, name: &str, value: &str) {
        self.vars.insert(name.to_owned(), value.to_owned());
    }

    fn keyring(&self, env: &str, token: &str) {
        self.store
            .set(env, &Secret::new(token.to_owned()))
            .expect("memory store");
    }

    fn request<'a>(&'a self, env: &'a str) -> Request<'a> {
        Request {
            env,
            config_dir: self.dir(),
            token_env: self.token_env,
            account_id: self.account_id,
            database_id: self.database_id,
            config_path: &self.config_path,
        }
    }

    fn resolve(&self, env: &str) -> Result<Credentials, CredentialError> {
        resolve(&self.request(env), &self.vars, Some(&self.store))
    }

    fn token(&self, env: &str) -> (String, Source) {
        let credentials = self.resolve(env).expect("resolves");
        (
            credentials.token.value.expose().to_owned(),
            credentials.token.source,
        )
    }
}

fn env_source(variable: &str) -> Source {
    Source::ProcessEnv {
        variable: variable.to_owned(),
    }
}

fn file_source(path: &Path, variable: &str) -> Source {
    Source::File {
        path: path.to_owned(),
        variable: variable.to_owned(),
    }
}

fn keyring_source(env: &str) -> Source {
    Source::Keyring {
        service: "d1ctl".to_owned(),
        entry: env.to_owned(),
    }
}

/// All five token sources filled; remove them one by one from the top.
fn full_ladder() -> (Fixture, [PathBuf; 3]) {
    let mut fixture = Fixture::new();
    fixture.var("CLOUDFLARE_API_TOKEN", "from-process");
    let specific = fixture.file(
        ".dev.vars.staging",
        "CLOUDFLARE_API_TOKEN=from-dev-vars-env\n",
    );
    let dev_vars = fixture.file(".dev.vars", "CLOUDFLARE_API_TOKEN=from-dev-vars\n");
    let dot_env = fixture.file(".env", "CLOUDFLARE_API_TOKEN=from-dot-env\n");
    fixture.keyring("staging", "from-keyring");
    (fixture, [specific, dev_vars, dot_env])
}

#[test]
fn process_environment_beats_every_file_and_the_keyring() {
    let (fixture, _) = full_ladder();
    assert_eq!(
        fixture.token("staging"),
        (
            "from-process".to_owned(),
            env_source("CLOUDFLARE_API_TOKEN")
        )
    );
}

#[test]
fn env_specific_dev_vars_beats_dev_vars() {
    let (mut fixture, [specific, ..]) = full_ladder();
    fixture.vars.clear();
    assert_eq!(
        fixture.token("staging"),
        (
            "from-dev-vars-env".to_owned(),
            file_source(&specific, "CLOUDFLARE_API_TOKEN")
        )
    );
}

#[test]
fn dev_vars_beats_dot_env() {
    let (mut fixture, [specific, dev_vars, _]) = full_ladder();
    fixture.vars.clear();
    fs_err::remove_file(specific).expect("remove");
    assert_eq!(
        fixture.token("staging"),
        (
            "from-dev-vars".to_owned(),
            file_source(&dev_vars, "CLOUDFLARE_API_TOKEN")
        )
    );
}

#[test]
fn dot_env_beats_keyring() {
    let (mut fixture, [specific, dev_vars, dot_env]) = full_ladder();
    fixture.vars.clear();
    fs_err::remove_file(specific).expect("remove");
    fs_err::remove_file(dev_vars).expect("remove");
    assert_eq!(
        fixture.token("staging"),
        (
            "from-dot-env".to_owned(),
            file_source(&dot_env, "CLOUDFLARE_API_TOKEN")
        )
    );
}

#[test]
fn keyring_is_the_last_resort() {
    let (mut fixture, files) = full_ladder();
    fixture.vars.clear();
    for file in files {
        fs_err::remove_file(file).expect("remove");
    }
    assert_eq!(
        fixture.token("staging"),
        ("from-keyring".to_owned(), keyring_source("staging"))
    );
}

#[test]
fn keyring_entry_of_another_environment_is_not_used() {
    let fixture = Fixture::new();
    fixture.keyring("production", "prod-token");
    let error = fixture.resolve("staging").expect_err("missing");
    assert!(matches!(error, CredentialError::Missing { ref what, .. } if what == "API token"));
}

#[test]
fn token_names_are_tried_in_order_within_a_source() {
    let mut fixture = Fixture::new();
    fixture.token_env = Some("MY_STAGING_TOKEN");
    fixture.var("CLOUDFLARE_API_TOKEN", "wrangler");
    assert_eq!(fixture.token("staging").0, "wrangler");
    fixture.var("CLOUDFLARE_D1_TOKEN", "generic");
    assert_eq!(fixture.token("staging").0, "generic");
    fixture.var("MY_STAGING_TOKEN", "custom");
    assert_eq!(
        fixture.token("staging"),
        ("custom".to_owned(), env_source("MY_STAGING_TOKEN"))
    );
    fixture.var("CLOUDFLARE_D1_TOKEN_STAGING", "specific");
    assert_eq!(
        fixture.token("staging"),
        (
            "specific".to_owned(),
            env_source("CLOUDFLARE_D1_TOKEN_STAGING")
        )
    );
}

#[test]
fn per_env_name_is_upper_cased_with_dashes_as_underscores() {
    let mut fixture = Fixture::new();
    fixture.var("CLOUDFLARE_D1_TOKEN_PR_42", "preview");
    fixture.var("CLOUDFLARE_D1_TOKEN", "generic");
    assert_eq!(
        fixture.token("pr-42"),
        (
            "preview".to_owned(),
            env_source("CLOUDFLARE_D1_TOKEN_PR_42")
        )
    );
    assert_eq!(env_suffix("eu-west.2"), "EU_WEST_2");
}

#[test]
fn token_names_apply_inside_files_too() {
    let mut fixture = Fixture::new();
    fixture.token_env = Some("MY_TOKEN");
    let path = fixture.file(
        ".dev.vars",
        "CLOUDFLARE_API_TOKEN=wrangler\nCLOUDFLARE_D1_TOKEN=generic\nMY_TOKEN=custom\n",
    );
    assert_eq!(
        fixture.token("staging"),
        ("custom".to_owned(), file_source(&path, "MY_TOKEN"))
    );
}

#[test]
fn a_generic_name_in_a_stronger_source_beats_a_specific_name_in_a_weaker_one() {
    let mut fixture = Fixture::new();
    fixture.var("CLOUDFLARE_API_TOKEN", "process-generic");
    fixture.file(
        ".dev.vars.staging",
        "CLOUDFLARE_D1_TOKEN_STAGING=file-specific\n",
    );
    assert_eq!(fixture.token("staging").0, "process-generic");
}

#[test]
fn empty_values_count_as_unset() {
    let mut fixture = Fixture::new();
    fixture.var("CLOUDFLARE_D1_TOKEN_STAGING", "  ");
    fixture.file(".dev.vars", "CLOUDFLARE_D1_TOKEN=\"from-file\"\n");
    assert_eq!(fixture.token("staging").0, "from-file");
}

#[test]
fn toml_ids_beat_generic_variables() {
    let mut fixture = Fixture::new();
    fixture.var("CLOUDFLARE_ACCOUNT_ID", "stray-account");
    fixture.var("CLOUDFLARE_DATABASE_ID", "stray-database");
    fixture.var("CLOUDFLARE_API_TOKEN", "token");
    let credentials = fixture.resolve("staging").expect("resolves");
    let config = Source::Config {
        path: fixture.config_path.clone(),
    };
    assert_eq!(credentials.account_id.value, ACCOUNT);
    assert_eq!(credentials.account_id.source, config);
    assert_eq!(credentials.database_id.value, DATABASE);
    assert_eq!(credentials.database_id.source, config);
}

#[test]
fn per_env_id_variables_beat_toml_from_any_source() {
    let mut fixture = Fixture::new();
    fixture.var("CLOUDFLARE_API_TOKEN", "token");
    fixture.var("CLOUDFLARE_ACCOUNT_ID_STAGING", "override-account");
    let path = fixture.file(".env", "CLOUDFLARE_DATABASE_ID_STAGING=override-database\n");
    let credentials = fixture.resolve("staging").expect("resolves");
    assert_eq!(credentials.account_id.value, "override-account");
    assert_eq!(
        credentials.account_id.source,
        env_source("CLOUDFLARE_ACCOUNT_ID_STAGING")
    );
    assert_eq!(credentials.database_id.value, "override-database");
    assert_eq!(
        credentials.database_id.source,
        file_source(&path, "CLOUDFLARE_DATABASE_ID_STAGING")
    );
}

#[test]
fn generic_id_variables_fill_in_when_toml_omits_the_key() {
    let mut fixture = Fixture::new();
    fixture.account_id = None;
    fixture.database_id = None;
    fixture.var("CLOUDFLARE_API_TOKEN", "token");
    fixture.var("CLOUDFLARE_ACCOUNT_ID", "generic-account");
    let path = fixture.file(".dev.vars", "CLOUDFLARE_DATABASE_ID=generic-database\n");
    let credentials = fixture.resolve("staging").expect("resolves");
    assert_eq!(credentials.account_id.value, "generic-account");
    assert_eq!(
        credentials.account_id.source,
        env_source("CLOUDFLARE_ACCOUNT_ID")
    );
    assert_eq!(
        credentials.database_id.source,
        file_source(&path, "CLOUDFLARE_DATABASE_ID")
    );
}

#[test]
fn flags_beat_every_other_source() {
    let mut fixture = Fixture::new();
    fixture.var("CLOUDFLARE_API_TOKEN", "token");
    fixture.var("CLOUDFLARE_ACCOUNT_ID_STAGING", "override-account");
    let flags = Flags {
        account_id: Some("flag-account"),
        database_id: None,
    };
    let credentials = resolve_with_flags(
        &fixture.request("staging"),
        &flags,
        &fixture.vars,
        Some(&fixture.store),
    )
    .expect("resolves");
    assert_eq!(credentials.account_id.value, "flag-account");
    assert_eq!(credentials.account_id.source, Source::Flag);
    assert_eq!(credentials.database_id.value, DATABASE);
}

#[test]
fn missing_token_lists_every_place_looked() {
    let mut fixture = Fixture::new();
    fixture.token_env = Some("MY_TOKEN");
    fixture.file(".dev.vars", "OTHER=1\n");
    let error = fixture.resolve("staging").expect_err("missing");
    let CredentialError::Missing { ref looked, .. } = error else {
        panic!("expected Missing, got {error:?}");
    };
    assert_eq!(looked.len(), 5, "{looked:#?}");
    let dir = fixture.dir().display().to_string();
    let message = error.to_string().replace(&dir, "[DIR]");
    assert_eq!(
        message,
        "no API token for environment `staging`; looked in:\n  \
         - environment variables `CLOUDFLARE_D1_TOKEN_STAGING`, `MY_TOKEN`, `CLOUDFLARE_D1_TOKEN`, `CLOUDFLARE_API_TOKEN`\n  \
         - `CLOUDFLARE_D1_TOKEN_STAGING`, `MY_TOKEN`, `CLOUDFLARE_D1_TOKEN`, `CLOUDFLARE_API_TOKEN` in `[DIR]/.dev.vars.staging` (no such file)\n  \
         - `CLOUDFLARE_D1_TOKEN_STAGING`, `MY_TOKEN`, `CLOUDFLARE_D1_TOKEN`, `CLOUDFLARE_API_TOKEN` in `[DIR]/.dev.vars`\n  \
         - `CLOUDFLARE_D1_TOKEN_STAGING`, `MY_TOKEN`, `CLOUDFLARE_D1_TOKEN`, `CLOUDFLARE_API_TOKEN` in `[DIR]/.env` (no such file)\n  \
         - OS keyring (service `d1ctl`, entry `staging`)"
    );
    let hint = error.hint().expect("hint");
    assert!(hint.contains("d1ctl auth login staging"), "{hint}");
}

#[test]
fn missing_ids_list_every_place_looked() {
    let mut fixture = Fixture::new();
    fixture.account_id = None;
    fixture.var("CLOUDFLARE_API_TOKEN", "token");
    let error = fixture.resolve("staging").expect_err("missing");
    let dir = fixture.dir().display().to_string();
    let message = error.to_string().replace(&dir, "[DIR]");
    assert_eq!(
        message,
        "no account id for environment `staging`; looked in:\n  \
         - environment variable `CLOUDFLARE_ACCOUNT_ID_STAGING`\n  \
         - `CLOUDFLARE_ACCOUNT_ID_STAGING` in `[DIR]/.dev.vars.staging` (no such file)\n  \
         - `CLOUDFLARE_ACCOUNT_ID_STAGING` in `[DIR]/.dev.vars` (no such file)\n  \
         - `CLOUDFLARE_ACCOUNT_ID_STAGING` in `[DIR]/.env` (no such file)\n  \
         - `account_id` in the `[env.staging]` table of `[DIR]/environments.toml`\n  \
         - environment variable `CLOUDFLARE_ACCOUNT_ID`\n  \
         - `CLOUDFLARE_ACCOUNT_ID` in `[DIR]/.dev.vars.staging` (no such file)\n  \
         - `CLOUDFLARE_ACCOUNT_ID` in `[DIR]/.dev.vars` (no such file)\n  \
         - `CLOUDFLARE_ACCOUNT_ID` in `[DIR]/.env` (no such file)"
    );
    assert!(error.hint().expect("hint").contains("account_id"));
}

#[test]
fn unavailable_keyring_is_a_note_and_a_hint_not_a_crash() {
    let fixture = Fixture::new();
    let store = MemoryStore::unavailable("no D-Bus session bus");
    let error =
        resolve(&fixture.request("staging"), &fixture.vars, Some(&store)).expect_err("missing");
    assert!(
        error.to_string().contains(
            "OS keyring (service `d1ctl`, entry `staging`): unavailable (no D-Bus session bus)"
        ),
        "{error}"
    );
    let hint = error.hint().expect("hint");
    assert!(hint.contains("D-Bus"), "{hint}");

    // With a token elsewhere, the unavailable keyring is never even asked.
    let mut fixture = Fixture::new();
    fixture.var("CLOUDFLARE_API_TOKEN", "token");
    resolve(&fixture.request("staging"), &fixture.vars, Some(&store)).expect("resolves");
}

#[test]
fn no_store_means_the_keyring_is_not_listed() {
    let fixture = Fixture::new();
    let error = resolve(&fixture.request("staging"), &fixture.vars, None).expect_err("missing");
    assert!(!error.to_string().contains("keyring"), "{error}");
}

#[test]
fn dotenv_files_never_touch_the_process_environment() {
    let unique = format!("D1CTL_TEST_UNIQUE_{}", std::process::id());
    let fixture = Fixture::new();
    fixture.file(
        ".dev.vars",
        &format!("{unique}=leaked\nCLOUDFLARE_API_TOKEN=file-token\n"),
    );
    fixture.file(".env", &format!("{unique}_ENV=leaked\n"));
    fixture.file(".dev.vars.staging", &format!("{unique}_STAGING=leaked\n"));
    let credentials = resolve(&fixture.request("staging"), &ProcessEnvironment, None);
    let _ = explain(&fixture.request("staging"), &ProcessEnvironment, None);
    assert!(std::env::var_os(&unique).is_none());
    assert!(std::env::var_os(format!("{unique}_ENV")).is_none());
    assert!(std::env::var_os(format!("{unique}_STAGING")).is_none());
    // The process environment of the test runner may hold a real token; either way the value
    // from the file must not have been exported.
    if let Ok(credentials) = credentials {
        assert!(matches!(
            credentials.token.source,
            Source::ProcessEnv { .. } | Source::File { .. }
        ));
    }
    assert_ne!(
        std::env::var("CLOUDFLARE_API_TOKEN").ok().as_deref(),
        Some("file-token")
    );
}

#[test]
fn debug_output_never_contains_the_secret() {
    let mut fixture = Fixture::new();
    fixture.var("CLOUDFLARE_API_TOKEN", "super-secret-value");
    let credentials = fixture.resolve("staging").expect("resolves");
    assert_eq!(format!("{:?}", credentials.token.value), "Secret(****)");
    for rendered in [
        format!("{:?}", credentials.token),
        format!("{credentials:?}"),
        format!("{credentials:#?}"),
        format!("{:?}", Secret::new("super-secret-value".to_owned())),
    ] {
        assert!(!rendered.contains("super-secret-value"), "{rendered}");
    }
    let explanation = explain(
        &fixture.request("staging"),
        &fixture.vars,
        Some(&fixture.store),
    );
    let json = serde_json::to_string(&explanation).expect("json");
    assert!(!json.contains("super-secret-value"), "{json}");
    assert!(!format!("{explanation:?}").contains("super-secret-value"));
}

#[test]
fn malformed_dotenv_line_is_bad_file_naming_path_and_line() {
    let fixture = Fixture::new();
    let path = fixture.file(
        ".dev.vars",
        "# comment\nCLOUDFLARE_ACCOUNT_ID=abc\nCLOUDFLARE_API_TOKEN=leak me'please\n",
    );
    let error = fixture.resolve("staging").expect_err("bad file");
    let CredentialError::BadFile {
        path: ref reported,
        line,
        ..
    } = error
    else {
        panic!("expected BadFile, got {error:?}");
    };
    assert_eq!(reported, &path);
    assert_eq!(line, Some(3));
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("line 3"), "{message}");
    assert!(!message.contains("leak"), "{message}");
    assert!(error.hint().is_some());
}

#[test]
fn unclosed_quote_is_bad_file() {
    let fixture = Fixture::new();
    fixture.file(".env", "A=1\nCLOUDFLARE_API_TOKEN=\"never closed\nB=2\n");
    let error = fixture.resolve("staging").expect_err("bad file");
    assert!(
        matches!(error, CredentialError::BadFile { line: Some(2), .. }),
        "{error:?}"
    );
    assert!(!error.to_string().contains("never closed"));
}

#[test]
fn explain_marks_winner_shadowed_and_unset_without_values() {
    let (fixture, [specific, ..]) = full_ladder();
    let explanation = explain(
        &fixture.request("staging"),
        &fixture.vars,
        Some(&fixture.store),
    );
    assert_eq!(
        explanation.token.winner,
        Some(env_source("CLOUDFLARE_API_TOKEN"))
    );
    let state_of = |source: &Source| {
        explanation
            .token
            .candidates
            .iter()
            .find(|candidate| &candidate.source == source)
            .map(|candidate| candidate.state)
    };
    assert_eq!(
        state_of(&env_source("CLOUDFLARE_API_TOKEN")),
        Some(CandidateState::Wins)
    );
    assert_eq!(
        state_of(&env_source("CLOUDFLARE_D1_TOKEN")),
        Some(CandidateState::Unset)
    );
    assert_eq!(
        state_of(&file_source(&specific, "CLOUDFLARE_API_TOKEN")),
        Some(CandidateState::Shadowed)
    );
    assert_eq!(
        state_of(&keyring_source("staging")),
        Some(CandidateState::Shadowed)
    );
    assert_eq!(
        explanation.account_id.winner,
        Some(Source::Config {
            path: fixture.config_path.clone()
        })
    );
    assert!(explanation.is_complete());
    assert!(explanation.files.iter().all(|file| file.exists));
    assert!(explanation.keyring_note.is_none());
    let json = serde_json::to_value(&explanation).expect("json");
    assert_eq!(json["token"]["winner"]["kind"], "process_env");
    assert_eq!(json["token"]["candidates"][0]["state"], "unset");
}

#[test]
fn explain_reports_unavailable_keyring_and_broken_files() {
    let fixture = Fixture::new();
    fixture.file(".env", "BROKEN='\n");
    let store = MemoryStore::unavailable("no D-Bus session bus");
    let explanation = explain(&fixture.request("staging"), &fixture.vars, Some(&store));
    assert!(explanation.token.winner.is_none());
    assert!(!explanation.is_complete());
    assert_eq!(
        explanation.keyring_note.as_deref(),
        Some("the OS keyring is unavailable: no D-Bus session bus")
    );
    assert!(explanation.keyring_hint.is_some());
    assert_eq!(explanation.problems.len(), 1, "{:?}", explanation.problems);
    assert!(explanation.files[2].error.is_some());
    assert!(
        explanation
            .token
            .candidates
            .iter()
            .any(|candidate| candidate.state == CandidateState::Unavailable)
    );
    assert!(
        explanation
            .token
            .candidates
            .iter()
            .any(|candidate| candidate.state == CandidateState::Unreadable)
    );
}

#[test]
fn source_display() {
    let cases = [
        (Source::Flag, "command-line flag".to_owned()),
        (
            env_source("CLOUDFLARE_D1_TOKEN_STAGING"),
            "environment variable `CLOUDFLARE_D1_TOKEN_STAGING`".to_owned(),
        ),
        (
            file_source(Path::new(".dev.vars"), "CLOUDFLARE_API_TOKEN"),
            "`.dev.vars` (`CLOUDFLARE_API_TOKEN`)".to_owned(),
        ),
        (
            keyring_source("staging"),
            "OS keyring (service `d1ctl`, entry `staging`)".to_owned(),
        ),
        (
            Source::Config {
                path: PathBuf::from("environments.toml"),
            },
            "`environments.toml`".to_owned(),
        ),
    ];
    for (source, expected) in cases {
        assert_eq!(source.to_string(), expected);
    }
}

#[test]
fn a_token_with_a_control_character_is_refused_naming_its_source_never_its_value() {
    let mut fixture = Fixture::new();
    fixture.var("CLOUDFLARE_API_TOKEN", "secret-part\u{1}rest");
    let error = fixture.resolve("staging").expect_err("refused");
    let message = error.to_string();
    assert!(
        matches!(error, CredentialError::BadToken { .. }),
        "{message}"
    );
    assert!(
        message.contains("environment variable `CLOUDFLARE_API_TOKEN`"),
        "{message}"
    );
    assert!(message.contains("U+0001"), "{message}");
    assert!(!message.contains("secret-part"), "{message}");
    assert!(!error.hint().unwrap_or_default().contains("secret-part"));
}

#[test]
fn a_token_with_a_newline_in_a_dotenv_file_names_the_line() {
    let fixture = Fixture::new();
    let path = fixture.file(
        ".dev.vars",
        "# tokens\nCLOUDFLARE_API_TOKEN=\"first\nsecond\"\n",
    );
    let error = fixture.resolve("staging").expect_err("refused");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains(", line 2"), "{message}");
    assert!(message.contains("a newline"), "{message}");
    assert!(
        !message.contains("first") && !message.contains("second"),
        "{message}"
    );
}

#[test]
fn a_keyring_token_with_a_newline_is_refused_with_a_login_hint() {
    let fixture = Fixture::new();
    fixture.keyring("staging", "abc\ndef");
    let error = fixture.resolve("staging").expect_err("refused");
    assert!(error.to_string().contains("OS keyring"), "{error}");
    assert!(
        error
            .hint()
            .unwrap_or_default()
            .contains("d1ctl auth login staging")
    );
}
