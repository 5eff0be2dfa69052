//! Reading what wrangler and drizzle-kit already know about a project: the D1 databases of a
//! `wrangler.toml` / `wrangler.json` / `wrangler.jsonc`, and the `out` folder of a drizzle config.
//!
//! Only the keys d1ctl needs are read; everything else in those files is ignored.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;

/// wrangler's config file names, in the order wrangler prefers them when several exist.
pub const WRANGLER_CONFIG_NAMES: [&str; 3] = ["wrangler.json", "wrangler.jsonc", "wrangler.toml"];

/// drizzle-kit config file names d1ctl looks for.
pub const DRIZZLE_CONFIG_NAMES: [&str; 7] = [
    "drizzle.config.ts",
    "drizzle.config.mts",
    "drizzle.config.cts",
    "drizzle.config.js",
    "drizzle.config.mjs",
    "drizzle.config.cjs",
    "drizzle.config.json",
];

/// drizzle-kit's default migrations folder.
pub const DRIZZLE_DEFAULT_OUT: &str = "drizzle";

/// wrangler's default `migrations_dir`, relative to the config file's folder.
pub const WRANGLER_DEFAULT_MIGRATIONS_DIR: &str = "migrations";

/// A wrangler config, reduced to its D1 databases.
#[derive(Debug, Clone)]
pub struct WranglerConfig {
    pub path: PathBuf,
    /// The top-level section first (`env: None`), then every `[env.X]` in file order. D1
    /// bindings are not inherited by environments, so each section has its own list.
    pub sections: Vec<Section>,
}

#[derive(Debug, Clone)]
pub struct Section {
    /// `None` for the top level, `Some("staging")` for `[env.staging]`.
    pub env: Option<String>,
    /// The section's `account_id`; an environment inherits the top level's.
    pub account_id: Option<String>,
    pub databases: Vec<D1Database>,
}

impl Section {
    /// How the section is written in the config, e.g. `[env.staging]` or `(top level)`.
    pub fn label(&self) -> String {
        match &self.env {
            Some(env) => format!("[env.{env}]"),
            None => "(top level)".to_owned(),
        }
    }
}

/// One `[[d1_databases]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct D1Database {
    pub binding: Option<String>,
    pub database_name: Option<String>,
    pub database_id: Option<String>,
    pub preview_database_id: Option<String>,
    pub migrations_dir: Option<String>,
    pub migrations_table: Option<String>,
    pub migrations_pattern: Option<String>,
}

impl D1Database {
    /// The name wrangler hashes into its local state file name:
    /// `preview_database_id ?? database_id ?? binding`.
    pub fn local_name(&self) -> Option<&str> {
        [&self.preview_database_id, &self.database_id, &self.binding]
            .into_iter()
            .find_map(|value| value.as_deref().filter(|v| !v.is_empty()))
    }

    /// The binding, else the database name: how the entry is named in messages.
    pub fn label(&self) -> &str {
        self.binding
            .as_deref()
            .or(self.database_name.as_deref())
            .unwrap_or("(unnamed)")
    }
}

/// A wrangler config that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum WranglerConfigError {
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Bad syntax or a key of the wrong type; `location` is `path:line:column`.
    #[error("{location}: {message}")]
    Syntax { location: String, message: String },
}

#[derive(Deserialize)]
struct RawConfig {
    account_id: Option<String>,
    #[serde(default)]
    d1_databases: Vec<D1Database>,
    #[serde(default)]
    env: IndexMap<String, RawEnvironment>,
}

#[derive(Deserialize)]
struct RawEnvironment {
    account_id: Option<String>,
    #[serde(default)]
    d1_databases: Vec<D1Database>,
}

/// The wrangler configs present in `dir`, in wrangler's order of preference.
pub fn find(dir: &Path) -> Vec<PathBuf> {
    WRANGLER_CONFIG_NAMES
        .iter()
        .map(|name| dir.join(name))
        .filter(|path| path.is_file())
        .collect()
}

/// The drizzle configs present in `dir`.
pub fn find_drizzle(dir: &Path) -> Vec<PathBuf> {
    DRIZZLE_CONFIG_NAMES
        .iter()
        .map(|name| dir.join(name))
        .filter(|path| path.is_file())
        .collect()
}

/// Reads and parses a wrangler config; `.json` and `.jsonc` files are read as JSON with comments.
pub fn load(path: &Path) -> Result<WranglerConfig, WranglerConfigError> {
    let text = fs_err::read_to_string(path).map_err(|source| WranglerConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses a wrangler config's text; the syntax follows the file's extension (TOML unless it ends
/// in `.json` or `.jsonc`).
pub fn parse(path: &Path, text: &str) -> Result<WranglerConfig, WranglerConfigError> {
    let is_json = path
        .extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| matches!(extension, "json" | "jsonc"));
    let raw: RawConfig = if is_json {
        // wrangler reads both extensions with a JSONC parser.
        let stripped = strip_jsonc(text);
        serde_json::from_str(&stripped).map_err(|error| WranglerConfigError::Syntax {
            location: format!("{}:{}:{}", path.display(), error.line(), error.column()),
            message: json_message(&error),
        })?
    } else {
        toml::from_str(text).map_err(|error| {
            let location = match error.span() {
                Some(span) => {
                    let (line, column) = line_column(text, span.start);
                    format!("{}:{line}:{column}", path.display())
                }
                None => path.display().to_string(),
            };
            WranglerConfigError::Syntax {
                location,
                message: error.message().trim().to_owned(),
            }
        })?
    };
    let mut sections = vec![Section {
        env: None,
        account_id: raw.account_id.clone(),
        databases: raw.d1_databases,
    }];
    for (name, env) in raw.env {
        sections.push(Section {
            env: Some(name),
            account_id: env.account_id.or_else(|| raw.account_id.clone()),
            databases: env.d1_databases,
        });
    }
    Ok(WranglerConfig {
        path: path.to_path_buf(),
        sections,
    })
}

/// serde_json's message without its trailing ` at line L column C` (the location says it).
fn json_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(position) => text[..position].to_owned(),
        None => text,
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// One byte inside a JSON string: where scanning goes on and whether the string goes on.
fn step_in_string(byte: u8, index: usize) -> (usize, bool) {
    match byte {
        b'\\' => (index + 2, true),
        b'"' => (index + 1, false),
        _ => (index + 1, true),
    }
}

/// JSON with comments (`//`, `/* */`) and trailing commas turned into plain JSON. Comments and
/// trailing commas become spaces, line breaks are kept, so every line and column of the result
/// is the one of the input. Text inside strings is never touched.
pub fn strip_jsonc(text: &str) -> String {
    let input = text.as_bytes();
    let mut out = input.to_vec();
    let length = input.len();

    // Comments.
    let mut index = 0;
    let mut in_string = false;
    while index < length {
        let byte = input[index];
        if in_string {
            (index, in_string) = step_in_string(byte, index);
            continue;
        }
        match (byte, input.get(index + 1)) {
            (b'"', _) => {
                in_string = true;
                index += 1;
            }
            (b'/', Some(b'/')) => {
                while index < length && input[index] != b'\n' {
                    out[index] = b' ';
                    index += 1;
                }
            }
            (b'/', Some(b'*')) => {
                out[index] = b' ';
                out[index + 1] = b' ';
                index += 2;
                while index < length
                    && !(input[index] == b'*' && input.get(index + 1) == Some(&b'/'))
                {
                    if input[index] != b'\n' {
                        out[index] = b' ';
                    }
                    index += 1;
                }
                if index < length {
                    out[index] = b' ';
                    out[index + 1] = b' ';
                    index += 2;
                }
            }
            _ => index += 1,
        }
    }

    // Trailing commas: a `,` whose next non-blank byte closes an object or array.
    let mut index = 0;
    let mut in_string = false;
    while index < length {
        let byte = out[index];
        if in_string {
            (index, in_string) = step_in_string(byte, index);
            continue;
        }
        if byte == b'"' {
            in_string = true;
        } else if byte == b',' {
            let next = out[index + 1..]
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .copied();
            if matches!(next, Some(b'}' | b']')) {
                out[index] = b' ';
            }
        }
        index += 1;
    }

    // Every byte replaced belonged to a comment or was an ASCII comma, so the text is still UTF-8.
    String::from_utf8(out)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

/// What a drizzle config says about its `out` folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrizzleOut {
    /// `out: "./drizzle"`: the folder as written.
    Literal(String),
    /// An `out` key whose value is not a plain string (a variable, a template with `${}`).
    NotLiteral,
    /// No `out` key: drizzle-kit uses `drizzle`.
    Absent,
}

/// Finds `out: "..."` (or `'...'`, a template without `${}`, or `"out": "..."` in JSON) in a
/// drizzle config with a small scan that skips comments and the contents of other strings.
pub fn drizzle_out(text: &str) -> DrizzleOut {
    let scanner = Scanner {
        bytes: text.as_bytes(),
        text,
    };
    let mut found = DrizzleOut::Absent;
    let mut index = 0;
    while let Some((token, next)) = scanner.token(index) {
        index = next;
        let is_out_key = match token {
            Token::Identifier(name) | Token::Str(Some(name)) => name == "out",
            Token::Str(None) | Token::Other(_) => false,
        };
        if !is_out_key {
            continue;
        }
        let Some((Token::Other(b':'), after_colon)) = scanner.token(index) else {
            continue;
        };
        match scanner.token(after_colon) {
            Some((Token::Str(Some(value)), after_value)) => {
                // A string followed by `+` or `.` is an expression, not the folder.
                let continues = matches!(
                    scanner.token(after_value),
                    Some((Token::Other(b'+' | b'.'), _))
                );
                if continues {
                    found = DrizzleOut::NotLiteral;
                } else {
                    return DrizzleOut::Literal(value);
                }
            }
            _ => found = DrizzleOut::NotLiteral,
        }
        index = after_colon;
    }
    found
}

#[derive(Debug)]
enum Token {
    Identifier(String),
    /// A string literal; `None` for a template literal with `${}` in it.
    Str(Option<String>),
    Other(u8),
}

struct Scanner<'a> {
    bytes: &'a [u8],
    text: &'a str,
}

impl Scanner<'_> {
    /// The token starting at or after `index` (blanks and comments skipped) and the index after it.
    fn token(&self, mut index: usize) -> Option<(Token, usize)> {
        let bytes = self.bytes;
        loop {
            let byte = *bytes.get(index)?;
            match (byte, bytes.get(index + 1)) {
                (b'/', Some(b'/')) => {
                    while index < bytes.len() && bytes[index] != b'\n' {
                        index += 1;
                    }
                }
                (b'/', Some(b'*')) => {
                    index += 2;
                    while index < bytes.len()
                        && !(bytes[index] == b'*' && bytes.get(index + 1) == Some(&b'/'))
                    {
                        index += 1;
                    }
                    index += 2;
                }
                _ if byte.is_ascii_whitespace() => index += 1,
                _ => break,
            }
        }
        let byte = bytes[index];
        if matches!(byte, b'"' | b'\'' | b'`') {
            return Some(self.string(index, byte));
        }
        let is_identifier =
            |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
        if is_identifier(byte) {
            let start = index;
            while index < bytes.len() && is_identifier(bytes[index]) {
                index += 1;
            }
            return Some((Token::Identifier(self.text[start..index].to_owned()), index));
        }
        Some((Token::Other(byte), index + 1))
    }

    /// The string literal opened by `quote` at `start`.
    fn string(&self, start: usize, quote: u8) -> (Token, usize) {
        let bytes = self.bytes;
        let mut index = start + 1;
        let mut value = String::new();
        let mut literal = true;
        let mut run_start = index;
        while index < bytes.len() {
            let byte = bytes[index];
            if byte == quote {
                value.push_str(&self.text[run_start..index]);
                return (Token::Str(literal.then_some(value)), index + 1);
            }
            if byte == b'\\' {
                value.push_str(&self.text[run_start..index]);
                // The escaped character as itself: paths need no more than `\\` and quotes.
                let escaped_start = index + 1;
                let escaped_end = self.text[escaped_start.min(bytes.len())..]
                    .chars()
                    .next()
                    .map_or(escaped_start, |c| escaped_start + c.len_utf8());
                value.push_str(
                    &self.text[escaped_start.min(bytes.len())..escaped_end.min(bytes.len())],
                );
                index = escaped_end;
                run_start = index;
                continue;
            }
            if quote == b'`' && byte == b'$' && bytes.get(index + 1) == Some(&b'{') {
                literal = false;
            }
            index += 1;
        }
        // An unterminated string runs to the end of the text.
        (Token::Str(None), bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_comments_and_trailing_commas_but_not_strings() {
        let text = "{\n  // a comment, with a comma,\n  \"url\": \"https://x.dev/a//b\", /* block\n  comment */\n  \"s\": \"a /* not */ b, ]\",\n  \"q\": \"say \\\"hi\\\" // no\",\n  \"list\": [1, 2,],\n  \"o\": {\"k\": \"é\",  },\n}\n";
        let stripped = strip_jsonc(text);
        assert_eq!(stripped.len(), text.len());
        assert_eq!(stripped.lines().count(), text.lines().count());
        let value: serde_json::Value = serde_json::from_str(&stripped).unwrap();
        assert_eq!(value["url"], "https://x.dev/a//b");
        assert_eq!(value["s"], "a /* not */ b, ]");
        assert_eq!(value["q"], "say \"hi\" // no");
        assert_eq!(value["list"], serde_json::json!([1, 2]));
        assert_eq!(value["o"]["k"], "é");
    }

    #[test]
    fn keeps_lines_for_json_errors() {
        let error = parse(
            Path::new("wrangler.jsonc"),
            "{\n  // c\n  \"d1_databases\": [\n    {\"binding\": \"DB\" \"x\"}\n  ]\n}\n",
        )
        .unwrap_err();
        assert!(
            error.to_string().starts_with("wrangler.jsonc:4:"),
            "{error}"
        );
    }

    #[test]
    fn reads_sections_in_file_order_and_inherits_the_account() {
        let config = parse(
            Path::new("wrangler.toml"),
            "name = \"w\"\naccount_id = \"acc\"\n\n[[d1_databases]]\nbinding = \"DB\"\ndatabase_id = \"1\"\n\n[env.production]\n[[env.production.d1_databases]]\nbinding = \"DB\"\ndatabase_name = \"p\"\n\n[env.staging]\naccount_id = \"other\"\n",
        )
        .unwrap();
        let names: Vec<_> = config.sections.iter().map(|s| s.env.clone()).collect();
        assert_eq!(
            names,
            [
                None,
                Some("production".to_owned()),
                Some("staging".to_owned())
            ]
        );
        assert_eq!(config.sections[1].account_id.as_deref(), Some("acc"));
        assert_eq!(config.sections[2].account_id.as_deref(), Some("other"));
        assert!(config.sections[2].databases.is_empty());
        assert_eq!(config.sections[0].databases[0].local_name(), Some("1"));
    }

    #[test]
    fn reports_toml_errors_with_line() {
        let error = parse(
            Path::new("wrangler.toml"),
            "name = \"w\"\n[[d1_databases]]\nbinding = 3\n",
        )
        .unwrap_err();
        assert!(error.to_string().starts_with("wrangler.toml:3:"), "{error}");
    }

    #[test]
    fn finds_drizzle_out() {
        for (text, expected) in [
            (
                "export default defineConfig({ schema: './src/schema.ts', out: './drizzle', dialect: 'sqlite' });",
                DrizzleOut::Literal("./drizzle".to_owned()),
            ),
            (
                "// out: \"commented\"\n/* out: 'also' */\nconst x = { description: \"out: 'in a string'\" };\nexport default { outDir: 'no', out: \"migrations/sql\" }",
                DrizzleOut::Literal("migrations/sql".to_owned()),
            ),
            (
                "{\n  \"schema\": \"./schema.ts\",\n  \"out\": \"./db\"\n}",
                DrizzleOut::Literal("./db".to_owned()),
            ),
            (
                "export default { out: `drizzle` }",
                DrizzleOut::Literal("drizzle".to_owned()),
            ),
            (
                "export default { out: `${base}/drizzle` }",
                DrizzleOut::NotLiteral,
            ),
            ("export default { out: folder }", DrizzleOut::NotLiteral),
            (
                "export default { out: base + '/x' }",
                DrizzleOut::NotLiteral,
            ),
            (
                "export default { out: 'a' + suffix }",
                DrizzleOut::NotLiteral,
            ),
            ("export default { schema: 'x' }", DrizzleOut::Absent),
            (
                "const out = 'x'; export default { out }",
                DrizzleOut::Absent,
            ),
        ] {
            assert_eq!(drizzle_out(text), expected, "{text}");
        }
    }
}
