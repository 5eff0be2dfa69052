//! The simulator's databases: metadata (persisted as `registry.json` in the data directory) and
//! the [`Database`]s, each opened on its first use.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use crate::sim::clock;
use crate::sim::engine::{Database, DatabaseFiles};
use crate::sim::recency::{OPEN_DATABASES, OpenDatabases};

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
    #[error("`{0}` does not match ^[a-zA-Z0-9][a-zA-Z0-9_-]*$")]
    InvalidName(String),
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

/// The databases in creation order, indexed by uuid (lower case) and by name.
#[derive(Default)]
struct Entries {
    next_sequence: u64,
    by_sequence: BTreeMap<u64, Entry>,
    by_uuid: HashMap<String, u64>,
    by_name: HashMap<String, u64>,
}

impl Entries {
    fn get(&self, sequence: Option<&u64>) -> Option<&Entry> {
        sequence.and_then(|sequence| self.by_sequence.get(sequence))
    }

    fn by_uuid(&self, uuid: &str) -> Option<&Entry> {
        self.get(self.by_uuid.get(&uuid.to_ascii_lowercase()))
    }

    fn by_name(&self, name: &str) -> Option<&Entry> {
        self.get(self.by_name.get(name))
    }

    fn insert(&mut self, meta: DatabaseMeta, database: Arc<Database>) {
        self.next_sequence += 1;
        let sequence = self.next_sequence;
        self.by_uuid
            .insert(meta.uuid.to_ascii_lowercase(), sequence);
        self.by_name.insert(meta.name.clone(), sequence);
        self.by_sequence.insert(sequence, Entry { meta, database });
    }

    fn remove(&mut self, uuid: &str) -> Option<Entry> {
        let sequence = self.by_uuid.remove(&uuid.to_ascii_lowercase())?;
        let entry = self.by_sequence.remove(&sequence)?;
        self.by_name.remove(&entry.meta.name);
        Some(entry)
    }
}

/// All databases of the simulator (shared by every account id).
pub(crate) struct Registry {
    root: PathBuf,
    persistent: bool,
    /// The file-backed databases' open connections (`None` in memory, where closing one would
    /// lose it).
    open_databases: Option<Arc<OpenDatabases>>,
    entries: Mutex<Entries>,
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
    /// read from and written to `root/registry.json`. No database is opened here: each opens
    /// on its first use.
    pub(crate) fn open(root: &Path, persistent: bool) -> anyhow::Result<Self> {
        Self::with_open_limit(root, persistent, OPEN_DATABASES)
    }

    /// [`Registry::open`] keeping at most `limit` file-backed databases open.
    pub(crate) fn with_open_limit(
        root: &Path,
        persistent: bool,
        limit: usize,
    ) -> anyhow::Result<Self> {
        fs_err::create_dir_all(root.join("snapshots"))?;
        if persistent {
            fs_err::create_dir_all(root.join("databases"))?;
        }
        let registry = Self {
            root: root.to_owned(),
            persistent,
            open_databases: persistent.then(|| Arc::new(OpenDatabases::new(limit))),
            entries: Mutex::new(Entries::default()),
        };
        let file = root.join("registry.json");
        if persistent && file.exists() {
            let stored: RegistryFile = serde_json::from_str(&fs_err::read_to_string(&file)?)?;
            let mut entries = registry.lock();
            for meta in stored.databases {
                let created = clock::parse_timestamp(&meta.created_at).unwrap_or(0);
                let database = registry.database(&meta.uuid, created);
                entries.insert(meta, database);
            }
        }
        Ok(registry)
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
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

    /// A closed database (it opens on first use).
    fn database(&self, uuid: &str, created_millis: i64) -> Arc<Database> {
        Database::new(
            uuid,
            self.files(uuid),
            created_millis,
            self.open_databases.clone(),
        )
    }

    fn save(&self, entries: &Entries) -> anyhow::Result<()> {
        if !self.persistent {
            return Ok(());
        }
        let file = RegistryFile {
            databases: entries
                .by_sequence
                .values()
                .map(|entry| entry.meta.clone())
                .collect(),
        };
        let path = self.root.join("registry.json");
        let temporary = self.root.join("registry.json.tmp");
        fs_err::write(&temporary, serde_json::to_string_pretty(&file)?)?;
        fs_err::rename(&temporary, &path)?;
        Ok(())
    }

    /// Adds a database to `entries` (not yet saved).
    fn insert(&self, entries: &mut Entries, new: NewDatabase) -> Result<DatabaseMeta, CreateError> {
        if entries.by_name(&new.name).is_some() {
            return Err(CreateError::NameTaken(new.name));
        }
        let uuid = new
            .uuid
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
            .to_ascii_lowercase();
        if entries.by_uuid(&uuid).is_some() {
            return Err(CreateError::IdTaken(uuid));
        }
        let created_millis = clock::now_millis();
        let meta = DatabaseMeta {
            uuid: uuid.clone(),
            name: new.name,
            created_at: clock::format_iso(created_millis),
            version: "production".to_owned(),
            read_replication: new
                .read_replication
                .unwrap_or_else(|| "disabled".to_owned()),
            jurisdiction: new.jurisdiction,
            primary_location_hint: new.primary_location_hint,
        };
        entries.insert(meta.clone(), self.database(&uuid, created_millis));
        Ok(meta)
    }

    pub(crate) fn create(&self, new: NewDatabase) -> Result<DatabaseMeta, CreateError> {
        let mut entries = self.lock();
        let meta = self.insert(&mut entries, new)?;
        self.save(&entries)?;
        Ok(meta)
    }

    /// Databases named `{prefix}1` … `{prefix}{count}`, created unless they exist (an existing
    /// one is returned as it is), in that order; `registry.json` is written once.
    pub(crate) fn create_many(
        &self,
        prefix: &str,
        count: usize,
    ) -> Result<Vec<DatabaseMeta>, CreateError> {
        // Digits are valid anywhere in a name, so the first name's validity is every name's.
        if count > 0 && !valid_name(&format!("{prefix}1")) {
            return Err(CreateError::InvalidName(format!("{prefix}1")));
        }
        let mut entries = self.lock();
        let mut metas = Vec::with_capacity(count);
        for number in 1..=count {
            let name = format!("{prefix}{number}");
            let meta = match entries.by_name(&name) {
                Some(entry) => entry.meta.clone(),
                None => self.insert(
                    &mut entries,
                    NewDatabase {
                        name,
                        ..NewDatabase::default()
                    },
                )?,
            };
            metas.push(meta);
        }
        self.save(&entries)?;
        Ok(metas)
    }

    /// The database with this uuid.
    pub(crate) fn by_uuid(&self, uuid: &str) -> Option<(DatabaseMeta, Arc<Database>)> {
        self.lock()
            .by_uuid(uuid)
            .map(|entry| (entry.meta.clone(), Arc::clone(&entry.database)))
    }

    /// The database with this uuid or, failing that, this name.
    pub(crate) fn by_uuid_or_name(&self, id: &str) -> Option<(DatabaseMeta, Arc<Database>)> {
        let entries = self.lock();
        entries
            .by_uuid(id)
            .or_else(|| entries.by_name(id))
            .map(|entry| (entry.meta.clone(), Arc::clone(&entry.database)))
    }

    /// The name of the database `id` addresses: a uuid, or also a name when `or_name`.
    pub(crate) fn name_of(&self, id: &str, or_name: bool) -> Option<String> {
        let entries = self.lock();
        entries
            .by_uuid(id)
            .or_else(|| or_name.then(|| entries.by_name(id)).flatten())
            .map(|entry| entry.meta.name.clone())
    }

    /// One page of the databases whose name contains `name` (all without it), in creation
    /// order, and how many match in all. Only the page's items are copied.
    pub(crate) fn page(
        &self,
        name: Option<&str>,
        skip: usize,
        take: usize,
    ) -> (u64, Vec<DatabaseMeta>) {
        let entries = self.lock();
        let matches = |meta: &DatabaseMeta| name.is_none_or(|name| meta.name.contains(name));
        let mut total = 0_u64;
        let mut page = Vec::new();
        for entry in entries.by_sequence.values() {
            if !matches(&entry.meta) {
                continue;
            }
            let index = usize::try_from(total).unwrap_or(usize::MAX);
            if index >= skip && page.len() < take {
                page.push(entry.meta.clone());
            }
            total += 1;
        }
        (total, page)
    }

    pub(crate) fn delete(&self, uuid: &str) -> anyhow::Result<bool> {
        let mut entries = self.lock();
        let Some(entry) = entries.remove(uuid) else {
            return Ok(false);
        };
        self.save(&entries)?;
        drop(entries);
        entry.database.remove_files();
        if let Some(open_databases) = &self.open_databases {
            open_databases.forget(&entry.meta.uuid);
        }
        if let Some(path) = self.files(&entry.meta.uuid).database {
            let _ = fs_err::remove_file(path);
        }
        Ok(true)
    }

    pub(crate) fn set_read_replication(&self, uuid: &str, mode: &str) -> anyhow::Result<()> {
        let mut entries = self.lock();
        let sequence = entries.by_uuid.get(&uuid.to_ascii_lowercase()).copied();
        if let Some(entry) = sequence.and_then(|sequence| entries.by_sequence.get_mut(&sequence)) {
            mode.clone_into(&mut entry.meta.read_replication);
        }
        self.save(&entries)
    }

    /// How many file-backed databases have an open connection.
    #[cfg(test)]
    fn open_count(&self) -> usize {
        self.open_databases
            .as_ref()
            .map_or(0, |open| open.open_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Folder(PathBuf);

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = fs_err::remove_dir_all(&self.0);
        }
    }

    fn folder() -> Folder {
        Folder(std::env::temp_dir().join(format!("d1ctl-sim-registry-{}", uuid::Uuid::new_v4())))
    }

    fn stored_names(root: &Path) -> Vec<String> {
        let stored: RegistryFile =
            serde_json::from_str(&fs_err::read_to_string(root.join("registry.json")).unwrap())
                .unwrap();
        stored.databases.into_iter().map(|meta| meta.name).collect()
    }

    #[test]
    fn file_databases_open_on_first_use_and_the_least_recently_used_close() {
        let folder = folder();
        let registry = Registry::with_open_limit(&folder.0, true, 2).unwrap();
        let metas = registry.create_many("t-", 4).unwrap();
        let names: Vec<&str> = metas.iter().map(|meta| meta.name.as_str()).collect();
        assert_eq!(names, ["t-1", "t-2", "t-3", "t-4"]);
        assert_eq!(stored_names(&folder.0), names);
        let database = |name: &str| registry.by_uuid_or_name(name).unwrap().1;
        let file = |name: &str| {
            let uuid = &registry.by_uuid_or_name(name).unwrap().0.uuid;
            folder.0.join("databases").join(format!("{uuid}.sqlite"))
        };
        assert!(!file("t-1").exists(), "created databases are not opened");
        assert_eq!(registry.open_count(), 0);

        for name in ["t-1", "t-2", "t-3"] {
            database(name)
                .execute_trusted(&format!(
                    "CREATE TABLE t (name); INSERT INTO t VALUES ('{name}')"
                ))
                .unwrap();
        }
        assert_eq!(registry.open_count(), 2);
        assert!(!database("t-1").is_open());
        assert!(database("t-2").is_open() && database("t-3").is_open());
        assert!(!file("t-4").exists());

        // Reopened on demand with its data; the least recently used one closes instead.
        assert_eq!(
            database("t-1").query_trusted("SELECT name FROM t").unwrap(),
            vec![vec![rusqlite::types::Value::Text("t-1".to_owned())]]
        );
        assert!(database("t-1").is_open() && !database("t-2").is_open());
        assert_eq!(registry.open_count(), 2);
    }

    #[test]
    fn lookups_pages_and_bulk_creation_keep_creation_order() {
        let folder = folder();
        let registry = Registry::open(&folder.0, true).unwrap();
        let single = registry
            .create(NewDatabase {
                name: "t-2".to_owned(),
                ..NewDatabase::default()
            })
            .unwrap();
        let metas = registry.create_many("t-", 3).unwrap();
        assert_eq!(metas[1], single, "an existing name is returned as it is");
        assert!(matches!(
            registry.create_many("-bad", 1),
            Err(CreateError::InvalidName(_))
        ));
        assert_eq!(
            registry
                .by_uuid(&single.uuid.to_ascii_uppercase())
                .unwrap()
                .0,
            single
        );
        assert_eq!(registry.name_of("t-3", true).as_deref(), Some("t-3"));
        assert_eq!(registry.name_of("t-3", false), None);
        let names = |(total, page): (u64, Vec<DatabaseMeta>)| {
            (
                total,
                page.into_iter().map(|meta| meta.name).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            names(registry.page(None, 1, 10)),
            (3, vec!["t-1".to_owned(), "t-3".to_owned()])
        );
        assert_eq!(
            names(registry.page(Some("-3"), 0, 10)),
            (1, vec!["t-3".to_owned()])
        );

        assert!(registry.delete(&single.uuid).unwrap());
        assert!(registry.by_uuid_or_name("t-2").is_none());
        let reopened = Registry::open(&folder.0, true).unwrap();
        assert_eq!(
            names(reopened.page(None, 0, 10)),
            (2, vec!["t-1".to_owned(), "t-3".to_owned()])
        );
    }

    #[test]
    fn names_follow_the_spec_pattern() {
        assert!(valid_name("my-db_1"));
        assert!(valid_name("0db"));
        assert!(!valid_name("-db"));
        assert!(!valid_name(""));
        assert!(!valid_name("my db"));
    }
}
