//! Temporary files d1ctl owns: dumps being written, databases being built, rehearsal copies.

use std::path::{Path, PathBuf};

use crate::core::registry::Registry;

/// `.d1ctl/tmp/` beside environments.toml, created on demand.
pub fn tmp_dir(registry: &Registry) -> std::io::Result<PathBuf> {
    let dir = registry.root.join(".d1ctl").join("tmp");
    fs_err::create_dir_all(&dir)?;
    Ok(dir)
}

/// A file with a unique name, removed when dropped unless persisted.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    /// Reserves `dir/<prefix>-<uuid>.<extension>` (the file is created by whoever writes it).
    pub fn new(dir: &Path, prefix: &str, extension: &str) -> Self {
        Self {
            path: dir.join(format!(
                "{prefix}-{}.{extension}",
                uuid::Uuid::new_v4().simple()
            )),
            keep: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the file to `to` (atomically when both are on one file system).
    pub fn persist(mut self, to: &Path) -> std::io::Result<()> {
        fs_err::rename(&self.path, to)?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // Best effort: a leftover temp file is harmless and named as ours. SQLite's side files
        // go too, in case a connection to it did not close cleanly.
        if self.keep {
            return;
        }
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let mut name = self.path.as_os_str().to_owned();
            name.push(suffix);
            let path = PathBuf::from(name);
            if path.exists() {
                let _ = fs_err::remove_file(&path);
            }
        }
    }
}
