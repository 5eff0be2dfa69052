//! The simulator's databases: metadata (persisted as `registry.json` in the data directory) and
//! the open [`Database`]s.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use crate::sim::clock;
use crate::sim::engine::{Database, DatabaseFiles};

/// What the registry records about a database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DatabaseMeta {
    pub(crate) uuid: String,
    pub(crate) name: String,
    pub(crate) created_at: String,
    pub(crate) version: String,
    pub(crate) read_replication: String,
    #[serde(default)]
    pub(crate) jurisdiction: Option<String>,
    #[serde(default)]
    pub(crate) primary_location_hint: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RegistryFile {
    databases: Vec<DatabaseMeta>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CreateError {
    #[error("A database with the name \"{0}\" already exists.")]
    NameTaken(String),
    #[error("A database with the id \"{0}\" already exists.")]
    IdTaken(String),
    #[error("{0}")]
    Failed(#[from] anyhow::Error),
}

/// Options of a new database.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewDatabase {
    pub(crate) name: String,
    pub(crate) uuid: Option<String>,
    pub(crate) jurisdiction: Option<String>,
    pub(crate) primary_location_hint: Option<String>,
    pub(crate) read_replication: Option<String>,
}

struct Entry {
    meta: DatabaseMeta,
    database: Arc<Database>,
}

/// All databases of the simulator (shared by every account id).
pub(crate) struct Registry {
    root: PathBuf,
    persistent: bool,
    entries: Mutex<Vec<Entry>>,
}

/// True for names matching `^[a-zA-Z0-9][a-zA-Z0-9_-]*$`.
pub(crate) fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric())
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

impl Registry {
    /// Opens the registry under `root`; with `persistent`, databases are files and metadata is
    /// read from and written to `root/registry.json`.
    pub(crate) fn open(root: &Path, persistent: bool) -> anyhow::Result<Self> {
        fs_err::create_dir_all(root.join("snapshots"))?;
        let registry = Self {
            root: root.to_owned(),
            persistent,
            entries: Mutex::new(Vec::new()),
        };
        let file = root.join("registry.json");
        if persistent && file.exists() {
            let stored: RegistryFile = serde_json::from_str(&fs_err::read_to_string(&file)?)?;
            let mut entries = registry.lock();
            for meta in stored.databases {
                let database = Arc::new(Database::open(&meta.uuid, registry.files(&meta.uuid))?);
                entries.push(Entry { meta, database });
            }
        }
        Ok(registry)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn files(&self, uuid: &str) -> DatabaseFiles {
        let databases = self.root.join("databases");
        DatabaseFiles {
            database: self
                .persistent
                .then(|| databases.join(format!("{uuid}.sqlite"))),
            bookmarks: self
                .persistent
                .then(|| databases.join(format!("{uuid}.bookmarks.json"))),
            snapshots: self.root.join("snapshots").join(uuid),
        }
    }

    fn save(&self, entries: &[Entry]) -> anyhow::Result<()> {
        if !self.persistent {
            return Ok(());
        }
        let file = RegistryFile {
            databases: entries.iter().map(|entry| entry.meta.clone()).collect(),
        };
        let path = self.root.join("registry.json");
        let temporary = self.root.join("registry.json.tmp");
        fs_err::write(&temporary, serde_json::to_string_pretty(&file)?)?;
        fs_err::rename(&temporary, &path)?;
        Ok(())
    }

    pub(crate) fn create(&self, new: NewDatabase) -> Result<DatabaseMeta, CreateError> {
        let mut entries = self.lock();
        if entries.iter().any(|entry| entry.meta.name == new.name) {
            return Err(CreateError::NameTaken(new.name));
        }
        let uuid = new
            .uuid
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
            .to_ascii_lowercase();
        if entries.iter().any(|entry| entry.meta.uuid == uuid) {
            return Err(CreateError::IdTaken(uuid));
        }
        if self.persistent {
            fs_err::create_dir_all(self.root.join("databases")).map_err(anyhow::Error::from)?;
        }
        let database = Arc::new(Database::open(&uuid, self.files(&uuid))?);
        let meta = DatabaseMeta {
            uuid,
            name: new.name,
            created_at: clock::format_iso(clock::now_millis()),
            version: "production".to_owned(),
            read_replication: new
                .read_replication
                .unwrap_or_else(|| "disabled".to_owned()),
            jurisdiction: new.jurisdiction,
            primary_location_hint: new.primary_location_hint,
        };
        entries.push(Entry {
            meta: meta.clone(),
            database,
        });
        self.save(&entries)?;
        Ok(meta)
    }

    /// The database with this uuid.
    pub(crate) fn by_uuid(&self, uuid: &str) -> Option<(DatabaseMeta, Arc<Database>)> {
        let entries = self.lock();
        entries
            .iter()
            .find(|entry| entry.meta.uuid.eq_ignore_ascii_case(uuid))
            .map(|entry| (entry.meta.clone(), Arc::clone(&entry.database)))
    }

    /// The database with this uuid or, failing that, this name.
    pub(crate) fn by_uuid_or_name(&self, id: &str) -> Option<(DatabaseMeta, Arc<Database>)> {
        self.by_uuid(id).or_else(|| {
            let entries = self.lock();
            entries
                .iter()
                .find(|entry| entry.meta.name == id)
                .map(|entry| (entry.meta.clone(), Arc::clone(&entry.database)))
        })
    }

    pub(crate) fn list(&self) -> Vec<DatabaseMeta> {
        self.lock().iter().map(|entry| entry.meta.clone()).collect()
    }

    pub(crate) fn delete(&self, uuid: &str) -> anyhow::Result<bool> {
        let mut entries = self.lock();
        let Some(position) = entries.iter().position(|entry| entry.meta.uuid == uuid) else {
            return Ok(false);
        };
        let entry = entries.remove(position);
        self.save(&entries)?;
        drop(entries);
        entry.database.remove_files();
        if let Some(path) = self.files(uuid).database {
            let _ = fs_err::remove_file(path);
        }
        Ok(true)
    }

    pub(crate) fn set_read_replication(&self, uuid: &str, mode: &str) -> anyhow::Result<()> {
        let mut entries = self.lock();
        if let Some(entry) = entries.iter_mut().find(|entry| entry.meta.uuid == uuid) {
            mode.clone_into(&mut entry.meta.read_replication);
        }
        self.save(&entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec_pattern() {
        assert!(valid_name("my-db_1"));
        assert!(valid_name("0db"));
        assert!(!valid_name("-db"));
        assert!(!valid_name(""));
        assert!(!valid_name("my db"));
    }
}
