//! Where `d1ctl auth login` keeps tokens: the OS keyring, or memory in tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use keyring_core::{CredentialStore, Entry};

use super::{KEYRING_SERVICE, Secret};

/// A keyring failure. Its message never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No keyring can be reached (headless machine, no D-Bus session, locked or missing Secret
    /// Service, unsupported platform). Treat as "no keyring": print a note and [`Self::hint`].
    #[error("the OS keyring is unavailable: {message}")]
    Unavailable {
        /// The platform's reason.
        message: String,
    },
    /// The keyring answered with an error.
    #[error("OS keyring error: {message}")]
    Other {
        /// What went wrong.
        message: String,
    },
}

impl StoreError {
    /// A `hint:` line for this error, if there is advice to give.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Unavailable { .. } => Some(Self::unavailable_hint()),
            Self::Other { .. } => None,
        }
    }

    pub(super) fn unavailable_hint() -> String {
        "no OS keyring is reachable (on a headless Linux machine, run inside a D-Bus session with \
         an unlocked Secret Service such as gnome-keyring); set the token in the environment or \
         in `.dev.vars` instead"
            .to_owned()
    }

    /// Whether this is [`StoreError::Unavailable`].
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Storage for per-environment tokens. `d1ctl auth login ENV` calls [`SecretStore::set`],
/// `auth logout ENV` calls [`SecretStore::delete`], and [`super::resolve`] calls
/// [`SecretStore::get`] when no other source has a token.
pub trait SecretStore: Send + Sync {
    /// The token stored for environment `env`, or `None`.
    fn get(&self, env: &str) -> Result<Option<Secret>, StoreError>;
    /// Stores (or replaces) the token for environment `env`.
    fn set(&self, env: &str, secret: &Secret) -> Result<(), StoreError>;
    /// Removes the token for environment `env`; `false` when there was none.
    fn delete(&self, env: &str) -> Result<bool, StoreError>;
}

/// An in-memory store for tests. [`MemoryStore::unavailable`] builds one that fails like a
/// machine without a keyring.
#[derive(Debug, Default)]
pub struct MemoryStore {
    secrets: Mutex<HashMap<String, Secret>>,
    unavailable: Option<String>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose every call fails with [`StoreError::Unavailable`] carrying `message`.
    pub fn unavailable(message: &str) -> Self {
        Self {
            secrets: Mutex::default(),
            unavailable: Some(message.to_owned()),
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        match &self.unavailable {
            Some(message) => Err(StoreError::Unavailable {
                message: message.clone(),
            }),
            None => Ok(()),
        }
    }
}

impl SecretStore for MemoryStore {
    fn get(&self, env: &str) -> Result<Option<Secret>, StoreError> {
        self.check()?;
        let secrets = self.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(secrets.get(env).cloned())
    }

    fn set(&self, env: &str, secret: &Secret) -> Result<(), StoreError> {
        self.check()?;
        let mut secrets = self.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        secrets.insert(env.to_owned(), secret.clone());
        Ok(())
    }

    fn delete(&self, env: &str) -> Result<bool, StoreError> {
        self.check()?;
        let mut secrets = self.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(secrets.remove(env).is_some())
    }
}

/// The OS keyring ([`KEYRING_NAME`]): the Secret Service over D-Bus on Linux and the BSDs
/// (gnome-keyring, KWallet, KeePassXC), the login Keychain on macOS, the Credential Manager on
/// Windows; on other platforms every call reports [`StoreError::Unavailable`].
///
/// Entries live under service [`KEYRING_SERVICE`] with the environment name as the user. The
/// connection is opened on first use and reused; if it cannot be opened, every call returns the
/// same [`StoreError::Unavailable`]. The calls block (D-Bus round trips): from async code, call
/// them inside `tokio::task::spawn_blocking`.
///
/// ```no_run
/// use d1ctl::credentials::{KeyringStore, Secret, SecretStore};
///
/// let store = KeyringStore::new();
/// store.set("staging", &Secret::new("token".to_owned()))?;
/// assert!(store.get("staging")?.is_some());
/// assert!(store.delete("staging")?);
/// # Ok::<(), d1ctl::credentials::StoreError>(())
/// ```
pub struct KeyringStore {
    store: OnceLock<Result<Arc<CredentialStore>, StoreError>>,
}

impl std::fmt::Debug for KeyringStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KeyringStore")
            .field("store", &self.store.get())
            .finish()
    }
}

impl Default for KeyringStore {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyringStore {
    /// A store that connects to the platform keyring on first use.
    pub fn new() -> Self {
        Self {
            store: OnceLock::new(),
        }
    }

    /// Connects now; `Err(StoreError::Unavailable)` when no keyring is reachable. Use it to
    /// report early (`auth login`) instead of after prompting for a token.
    pub fn connect() -> Result<Self, StoreError> {
        let store = Self::new();
        store.inner()?;
        Ok(store)
    }

    /// A store backed by any `keyring-core` store (e.g. `keyring_core::mock::Store`).
    pub fn with_store(store: Arc<CredentialStore>) -> Self {
        Self {
            store: OnceLock::from(Ok(store)),
        }
    }

    fn inner(&self) -> Result<&Arc<CredentialStore>, StoreError> {
        self.store
            .get_or_init(connect_platform_store)
            .as_ref()
            .map_err(Clone::clone)
    }

    fn entry(&self, env: &str) -> Result<Entry, StoreError> {
        self.inner()?
            .build(KEYRING_SERVICE, env, None)
            .map_err(|error| classify(&error, env))
    }
}

impl SecretStore for KeyringStore {
    fn get(&self, env: &str) -> Result<Option<Secret>, StoreError> {
        match self.entry(env)?.get_password() {
            Ok(password) => Ok(Some(Secret::new(password))),
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(error) => Err(classify(&error, env)),
        }
    }

    fn set(&self, env: &str, secret: &Secret) -> Result<(), StoreError> {
        self.entry(env)?
            .set_password(secret.expose())
            .map_err(|error| classify(&error, env))
    }

    fn delete(&self, env: &str) -> Result<bool, StoreError> {
        match self.entry(env)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring_core::Error::NoEntry) => Ok(false),
            Err(error) => Err(classify(&error, env)),
        }
    }
}

/// The OS keyring this build of d1ctl uses, as `auth status` names it: chosen at build time by
/// the target OS, with the same service and entry names on every one.
pub const KEYRING_NAME: &str = platform::NAME;

fn connect_platform_store() -> Result<Arc<CredentialStore>, StoreError> {
    platform::connect().map_err(|error| classify(&error, ""))
}

#[cfg(any(
    target_os = "linux",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd"
))]
mod platform {
    use std::sync::Arc;

    use keyring_core::CredentialStore;

    pub(super) const NAME: &str = "Secret Service";

    pub(super) fn connect() -> keyring_core::Result<Arc<CredentialStore>> {
        let store: Arc<CredentialStore> = zbus_secret_service_keyring_store::Store::new()?;
        Ok(store)
    }
}

#[cfg(target_os = "macos")]
mod platform {
    use std::sync::Arc;

    use keyring_core::CredentialStore;

    pub(super) const NAME: &str = "macOS Keychain";

    /// The user's login keychain.
    pub(super) fn connect() -> keyring_core::Result<Arc<CredentialStore>> {
        let store: Arc<CredentialStore> = apple_native_keyring_store::keychain::Store::new()?;
        Ok(store)
    }
}

#[cfg(target_os = "windows")]
mod platform {
    use std::sync::Arc;

    use keyring_core::CredentialStore;

    pub(super) const NAME: &str = "Windows Credential Manager";

    pub(super) fn connect() -> keyring_core::Result<Arc<CredentialStore>> {
        let store: Arc<CredentialStore> = windows_native_keyring_store::Store::new()?;
        Ok(store)
    }
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "macos",
    target_os = "windows"
)))]
mod platform {
    use std::sync::Arc;

    use keyring_core::CredentialStore;

    pub(super) const NAME: &str = "none";

    pub(super) fn connect() -> keyring_core::Result<Arc<CredentialStore>> {
        // `NoDefaultStore` reads as "unavailable": d1ctl carries on with the other sources.
        Err(keyring_core::Error::NoDefaultStore)
    }
}

/// Maps a `keyring-core` error: no access, platform failure and no store mean "unavailable".
fn classify(error: &keyring_core::Error, env: &str) -> StoreError {
    use keyring_core::Error;
    match error {
        Error::NoStorageAccess(_) | Error::PlatformFailure(_) | Error::NoDefaultStore => {
            StoreError::Unavailable {
                message: error.to_string(),
            }
        }
        Error::Ambiguous(entries) => StoreError::Other {
            message: format!(
                "{} keyring items match service `{KEYRING_SERVICE}`, entry `{env}`; remove the \
                 extra ones with your keyring manager",
                entries.len()
            ),
        },
        // `BadEncoding` and `BadDataFormat` carry the stored bytes: never format them.
        Error::BadEncoding(_) => StoreError::Other {
            message: format!(
                "the keyring item for service `{KEYRING_SERVICE}`, entry `{env}` is not UTF-8 text"
            ),
        },
        Error::BadDataFormat(_, _) => StoreError::Other {
            message: format!(
                "the keyring item for service `{KEYRING_SERVICE}`, entry `{env}` is malformed"
            ),
        },
        other => StoreError::Other {
            message: other.to_string(),
        },
    }
}

/// A real round trip through the OS keyring under a throwaway entry name: set, get (must match),
/// delete (must report `true`), get (must be `None`), delete again (must report `false`). Used by
/// the keyring tests, and usable as a `d1ctl doctor`-style check. Returns
/// [`StoreError::Unavailable`] when no keyring is reachable.
pub fn keyring_round_trip_check(entry: &str) -> Result<(), StoreError> {
    round_trip(&KeyringStore::connect()?, entry)
}

pub(super) fn round_trip(store: &dyn SecretStore, entry: &str) -> Result<(), StoreError> {
    let mismatch = |step: &str| StoreError::Other {
        message: format!("keyring round trip for entry `{entry}` failed: {step}"),
    };
    let written = Secret::new(format!("d1ctl-round-trip-{entry}"));
    store.set(entry, &written)?;
    let read = store.get(entry)?;
    let deleted = store.delete(entry)?;
    match read {
        Some(read) if read.expose() == written.expose() => {}
        Some(_) => return Err(mismatch("read a different value than written")),
        None => return Err(mismatch("the value written was not found")),
    }
    if !deleted {
        return Err(mismatch("delete found nothing to delete"));
    }
    if store.get(entry)?.is_some() {
        return Err(mismatch("the value is still there after delete"));
    }
    if store.delete(entry)? {
        return Err(mismatch("a second delete reported a deletion"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique_entry(prefix: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        format!("{prefix}-{}-{nanos}", std::process::id())
    }

    #[test]
    fn memory_store_round_trip() {
        round_trip(&MemoryStore::new(), "staging").expect("memory round trip");
    }

    #[test]
    fn unavailable_memory_store_reports_unavailable() {
        let store = MemoryStore::unavailable("no D-Bus session");
        let error = store.get("staging").expect_err("unavailable");
        assert!(error.is_unavailable());
        assert!(error.hint().is_some());
    }

    #[test]
    fn keyring_store_over_keyring_core_mock_round_trip() {
        let mock: Arc<CredentialStore> = keyring_core::mock::Store::new().expect("mock store");
        let store = KeyringStore::with_store(mock);
        round_trip(&store, "staging").expect("mock round trip");
    }

    #[test]
    fn keyring_errors_are_classified() {
        let platform = keyring_core::Error::PlatformFailure("no bus".into());
        assert!(classify(&platform, "x").is_unavailable());
        let access = keyring_core::Error::NoStorageAccess("locked".into());
        assert!(classify(&access, "x").is_unavailable());
        assert!(classify(&keyring_core::Error::NoDefaultStore, "x").is_unavailable());
        let encoding = keyring_core::Error::BadEncoding(b"sekrit-bytes".to_vec());
        let other = classify(&encoding, "x");
        assert!(!other.is_unavailable());
        assert!(!other.to_string().contains("sekrit"));
    }

    /// Real Secret Service round trip. Skips with a message when no keyring is reachable, unless
    /// `D1CTL_REQUIRE_KEYRING` is set (CI), where a skip is a failure.
    #[test]
    fn real_keyring_round_trip() {
        let entry = unique_entry("unit-round-trip");
        match keyring_round_trip_check(&entry) {
            Ok(()) => {}
            Err(StoreError::Unavailable { message }) if !keyring_required() => {
                // Straight to the process's stderr: the test harness swallows `eprintln!`.
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    format!(
                        "SKIPPED real_keyring_round_trip: no OS keyring ({message}); set \
                         D1CTL_REQUIRE_KEYRING=1 to make this a failure\n"
                    )
                    .as_bytes(),
                );
            }
            Err(error) => panic!("keyring round trip failed: {error}"),
        }
    }

    /// Whether `D1CTL_REQUIRE_KEYRING` is set (to anything but empty or `0`): CI sets it so that
    /// an unreachable keyring fails the test instead of skipping it.
    fn keyring_required() -> bool {
        std::env::var_os("D1CTL_REQUIRE_KEYRING")
            .is_some_and(|value| !value.is_empty() && value != "0")
    }
}
