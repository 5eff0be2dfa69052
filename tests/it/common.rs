//! The test project builder: a temp folder with `environments.toml` and migrations, and a way to
//! run `d1ctl` in it and read its databases.

use std::path::{Path, PathBuf};
use std::process::Command;

use rusqlite::Connection;

/// What one run of the binary produced.
pub(crate) struct Output {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Output {
    /// Runs `command` to completion and collects what it printed.
    pub(crate) fn of(command: &mut Command) -> Self {
        let output = command.output().expect("run d1ctl");
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panics, showing the output, unless the exit code is `code`.
    pub(crate) fn expect_code(self, code: i32, args: &[&str]) -> Self {
        assert_eq!(
            self.code, code,
            "d1ctl {args:?} exited {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// Exit code, stdout and stderr in one text, for snapshots; temp paths and timings filtered.
    pub(crate) fn snapshot(&self, project: &Project) -> String {
        let root = project.root().display().to_string();
        let text = format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        let text = text.replace(&root, "[ROOT]");
        let millis = regex_replace(&text, " ms)", "[MS]");
        regex_replace_timestamps(&millis)
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Replaces the number right before each `suffix` (e.g. `12 ms)`) with `placeholder`.
fn regex_replace(text: &str, suffix: &str, placeholder: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = rest.find(suffix) {
        let head = &rest[..position];
        let digits = head.len() - head.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        out.push_str(&head[..head.len() - digits]);
        out.push_str(placeholder);
        out.push_str(suffix);
        rest = &rest[position + suffix.len()..];
    }
    out.push_str(rest);
    out
}

/// Replaces ISO-8601 timestamps (`2026-11-21T21:33:40.023Z`) with `[TIME]`.
fn regex_replace_timestamps(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut index = 0;
    while index < text.len() {
        let candidate = &bytes[index..];
        let looks_like = candidate.len() >= 24
            && candidate[..4].iter().all(u8::is_ascii_digit)
            && candidate[4] == b'-'
            && candidate[10] == b'T'
            && candidate[23] == b'Z';
        if looks_like {
            out.push_str("[TIME]");
            index += 24;
        } else {
            let ch = text[index..].chars().next().unwrap();
            out.push(ch);
            index += ch.len_utf8();
        }
    }
    out
}

pub(crate) struct Project {
    dir: tempfile::TempDir,
}

pub(crate) const LOCAL_ONLY: &str = "[project]\nladder = [\"local\"]\n\n[env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n";

impl Project {
    /// An empty project folder with no files.
    pub(crate) fn empty() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A project with a local env `local` at `local.sqlite` and a `migrations/` folder.
    pub(crate) fn new() -> Self {
        let project = Self::empty();
        project.config(LOCAL_ONLY);
        fs_err::create_dir_all(project.path("migrations")).unwrap();
        project
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub(crate) fn config(&self, text: &str) -> &Self {
        self.write("environments.toml", text)
    }

    pub(crate) fn write(&self, relative: &str, contents: impl AsRef<[u8]>) -> &Self {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent).unwrap();
        }
        fs_err::write(path, contents).unwrap();
        self
    }

    pub(crate) fn migration(&self, name: &str, sql: &str) -> &Self {
        self.write(&format!("migrations/{name}"), sql)
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_d1ctl"));
        command
            .args(args)
            .current_dir(self.root())
            .env("NO_COLOR", "1")
            .env("USER", "tester")
            .env_remove("CLOUDFLARE_API_TOKEN")
            .env_remove("CLOUDFLARE_D1_TOKEN")
            .env_remove("CLOUDFLARE_API_BASE_URL");
        command
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        Output::of(&mut self.command(args))
    }

    /// Runs and asserts the exit code, showing the output when it differs.
    pub(crate) fn run_ok(&self, args: &[&str], code: i32) -> Output {
        self.run(args).expect_code(code, args)
    }

    pub(crate) fn db(&self, relative: &str) -> Connection {
        Connection::open(self.path(relative)).expect("open database")
    }

    /// Every file below the project root, for "nothing was written" checks.
    pub(crate) fn files(&self) -> Vec<String> {
        let mut files = Vec::new();
        let mut stack = vec![self.root().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs_err::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                if entry.file_type().unwrap().is_dir() {
                    stack.push(entry.path());
                } else {
                    files.push(
                        entry
                            .path()
                            .strip_prefix(self.root())
                            .unwrap()
                            .display()
                            .to_string(),
                    );
                }
            }
        }
        files.sort();
        files
    }
}

/// Rows of a query on a simulator database as text, `|`-joined, bypassing the API.
pub(crate) fn sim_rows(sim: &d1ctl::sim::Simulator, database: &str, sql: &str) -> Vec<String> {
    sim.query_rows(database, sql)
        .unwrap()
        .into_iter()
        .map(|row| {
            row.iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

/// Rows of a query as text, `|`-joined, for compact assertions.
pub(crate) fn rows(connection: &Connection, sql: &str) -> Vec<String> {
    let mut statement = connection.prepare(sql).unwrap();
    let columns = statement.column_count();
    statement
        .query_map([], |row| {
            Ok((0..columns)
                .map(|i| match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                    rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                    rusqlite::types::ValueRef::Real(v) => v.to_string(),
                    rusqlite::types::ValueRef::Text(v) => String::from_utf8_lossy(v).into_owned(),
                    rusqlite::types::ValueRef::Blob(v) => format!("blob:{}", v.len()),
                })
                .collect::<Vec<_>>()
                .join("|"))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The schema as the corpus's `expected_schema.sql` lists it: `type|name|tbl_name|sql`, whitespace
/// runs collapsed, ledgers left out.
pub(crate) fn schema_lines(connection: &Connection) -> Vec<String> {
    rows(
        connection,
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' \
         AND name NOT IN ('d1_migrations', '__drizzle_migrations') AND name NOT LIKE '\\_d1ctl\\_%' ESCAPE '\\' ORDER BY type, name",
    )
    .into_iter()
    .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
    .collect()
}

/// The project's own fixture corpus, `tests/fixtures/corpus`: folders laid out like
/// `../shared/corpus`'s entries, always present, so the corpus tests run on every clone.
pub(crate) fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus")
}

/// The entries of a corpus folder (sub-folders with a `SOURCE.txt`), sorted.
pub(crate) fn corpus_entries(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(root)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().join("SOURCE.txt").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `../shared/corpus`, beside the repository.
pub(crate) fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("D1CTL_CORPUS_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"),
        PathBuf::from,
    );
    if dir.is_dir() {
        return Some(dir);
    }
    // A fresh clone has no ../shared: the corpus is an extra run where present. CI sets
    // D1CTL_REQUIRE_CORPUS=1, which turns the skip into a failure.
    assert!(
        std::env::var_os("D1CTL_REQUIRE_CORPUS").is_none_or(|v| v != "1"),
        "D1CTL_REQUIRE_CORPUS=1 but the corpus is missing at {}",
        dir.display()
    );
    // Straight to the process's stderr, so the harness does not swallow it.
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!(
            "SKIPPED: the real-world corpus is not at {} (set D1CTL_CORPUS_DIR to run it; D1CTL_REQUIRE_CORPUS=1 makes this a failure)\n",
            dir.display()
        ),
    );
    None
}

/// Copies a folder recursively.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    fs_err::create_dir_all(to).unwrap();
    for entry in fs_err::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs_err::copy(entry.path(), target).unwrap();
        }
    }
}
