//! A fleet env: one `[env.X]` that names a set of D1 databases (one per tenant) instead of one.
//!
//! ```toml
//! [env.tenants]
//! backend = "d1"
//! fleet.name_prefix = "tenant-"            # every database of the account named tenant-…
//! # fleet.databases = ["acme", "globex=2f1c…"]   # names, or name=uuid
//! # fleet.file = "tenants.txt"                   # one name or name=uuid per line
//! ```

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::Mistake;

/// The `fleet` table of an env, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleet {
    name_prefix: Option<Spanned<String>>,
    databases: Option<Spanned<Vec<Spanned<String>>>>,
    file: Option<Spanned<String>>,
}

/// Which databases a fleet env names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetSpec {
    /// Every database of the account whose name starts with this.
    Prefix(String),
    /// These databases, in this order.
    Databases(Vec<MemberName>),
    /// The databases listed in this file (resolved against the folder of environments.toml).
    File(PathBuf),
}

/// A member as environments.toml (or the fleet file) names it: a name, with or without its uuid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberName {
    pub name: String,
    pub uuid: Option<String>,
}

impl MemberName {
    /// What addresses the database: its uuid, or (not yet looked up) its name.
    pub fn id(&self) -> String {
        self.uuid.clone().unwrap_or_else(|| self.name.clone())
    }
}

impl FleetSpec {
    /// How the fleet is named, for messages: `databases named tenant-…`.
    pub fn describe(&self) -> String {
        match self {
            FleetSpec::Prefix(prefix) => format!("databases named `{prefix}…`"),
            FleetSpec::Databases(names) => format!("{} listed databases", names.len()),
            FleetSpec::File(path) => format!("databases listed in `{}`", path.display()),
        }
    }
}

/// Reads a `fleet` table: exactly one of its three keys.
pub(super) fn parse(
    env: &str,
    raw: &Spanned<RawFleet>,
    root: &std::path::Path,
) -> Result<FleetSpec, Mistake> {
    let fleet = raw.get_ref();
    let given = [
        fleet.name_prefix.is_some(),
        fleet.databases.is_some(),
        fleet.file.is_some(),
    ]
    .iter()
    .filter(|given| **given)
    .count();
    if given != 1 {
        return Err(Mistake {
            span: Some(raw.span()),
            message: format!(
                "env `{env}`: `fleet` needs exactly one of `name_prefix`, `databases` and `file` ({given} given)"
            ),
            hint: "e.g. `fleet.name_prefix = \"tenant-\"` for every database named tenant-…"
                .to_owned(),
        });
    }
    if let Some(prefix) = &fleet.name_prefix {
        let text = prefix.get_ref();
        if text.is_empty() || !text.bytes().all(is_name_byte) {
            return Err(Mistake {
                span: Some(prefix.span()),
                message: format!(
                    "env `{env}`: `fleet.name_prefix` `{text}` cannot begin a D1 database name"
                ),
                hint: "D1 names use letters, digits, `_` and `-`; give the start the fleet's names share, e.g. `tenant-`".to_owned(),
            });
        }
        return Ok(FleetSpec::Prefix(text.clone()));
    }
    if let Some(databases) = &fleet.databases {
        let mut names = Vec::new();
        for entry in databases.get_ref() {
            let member = member_name(entry.get_ref()).map_err(|why| Mistake {
                span: Some(entry.span()),
                message: format!(
                    "env `{env}`: `fleet.databases` entry `{}` {why}",
                    entry.get_ref()
                ),
                hint: "write a database name, or `name=uuid`".to_owned(),
            })?;
            if names.iter().any(|m: &MemberName| m.name == member.name) {
                return Err(Mistake {
                    span: Some(entry.span()),
                    message: format!(
                        "env `{env}`: `fleet.databases` names `{}` twice",
                        member.name
                    ),
                    hint: "list each database once".to_owned(),
                });
            }
            names.push(member);
        }
        if names.is_empty() {
            return Err(Mistake {
                span: Some(databases.span()),
                message: format!("env `{env}`: `fleet.databases` is empty"),
                hint: "list the fleet's databases, or use `fleet.name_prefix`".to_owned(),
            });
        }
        return Ok(FleetSpec::Databases(names));
    }
    let file = fleet.file.as_ref().map(Spanned::get_ref).cloned();
    Ok(FleetSpec::File(root.join(file.unwrap_or_default())))
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

/// `name` or `name=uuid`, checked against D1's name pattern `^[a-zA-Z0-9][a-zA-Z0-9_-]*$`.
pub fn member_name(text: &str) -> Result<MemberName, String> {
    let (name, uuid) = match text.split_once('=') {
        Some((name, uuid)) => (name.trim(), Some(uuid.trim())),
        None => (text.trim(), None),
    };
    let valid = name
        .bytes()
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric())
        && name.bytes().all(is_name_byte);
    if !valid {
        return Err("is not a D1 database name".to_owned());
    }
    if let Some(uuid) = uuid
        && (uuid.is_empty() || !uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
    {
        return Err(format!(
            "has `{uuid}` after `=`, which is not a database uuid"
        ));
    }
    Ok(MemberName {
        name: name.to_owned(),
        uuid: uuid.map(str::to_ascii_lowercase),
    })
}

/// A fleet file: one member per line (`name` or `name=uuid`); blank lines and `#` comments are
/// skipped. A mistake names its line.
pub fn parse_file(text: &str) -> Result<Vec<MemberName>, (usize, String)> {
    let mut names: Vec<MemberName> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let member = member_name(line).map_err(|why| (index + 1, format!("`{line}` {why}")))?;
        if names.iter().any(|m| m.name == member.name) {
            return Err((index + 1, format!("`{}` is listed twice", member.name)));
        }
        names.push(member);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_take_an_optional_uuid() {
        assert_eq!(
            member_name("acme=2F1C-AB").unwrap(),
            MemberName {
                name: "acme".to_owned(),
                uuid: Some("2f1c-ab".to_owned())
            }
        );
        assert!(member_name("-acme").is_err());
        assert!(member_name("acme=").is_err());
        assert!(member_name("ac me").is_err());
    }

    #[test]
    fn fleet_files_skip_comments_and_name_bad_lines() {
        let names = parse_file("# tenants\nacme\n\nglobex=ab12 # moved\n").unwrap();
        assert_eq!(names.len(), 2);
        assert_eq!(names[1].uuid.as_deref(), Some("ab12"));
        assert_eq!(parse_file("acme\nacme\n").unwrap_err().0, 2);
        assert_eq!(parse_file("ok\nnot ok\n").unwrap_err().0, 2);
    }
}
