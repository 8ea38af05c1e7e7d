//! The agent's own registrations on disk, so they survive a restart (as Consul keeps
//! `services/`, `checks/` and `checks/state/` in its data dir).
//!
//! Service and check definitions registered through the API are stored as their canonical
//! JSON and replayed through the same validation at start-up. The last status of a TTL check
//! is stored with its deadline and restored only while the TTL has not run out. Maintenance
//! is stored with its reasons. Files are written atomically (temporary file, rename); a
//! damaged file is reported and skipped, never fatal.
//!
//! Only API registrations are kept: config-file ones are read from the config again at
//! start-up, so storing them would only let a removed definition come back. Write errors
//! are logged, not returned: the registration is already live in memory and in the catalog,
//! and only its survival across a restart is lost.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::warn;

/// What is kept for one API service registration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedService {
    /// Service ID.
    pub id: String,
    /// The definition as registered (canonical JSON).
    /// Replayed through the registration code at start-up, so a record written by an older
    /// version is validated by the current rules.
    pub definition: Value,
}

/// What is kept for one API check registration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedCheck {
    /// Check ID.
    pub id: String,
    /// The definition as registered (canonical JSON).
    pub definition: Value,
}

/// The last status of a TTL check.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedTtl {
    /// Check ID.
    pub id: String,
    /// `passing`, `warning` or `critical`.
    pub status: String,
    /// Output.
    pub output: String,
    /// Unix ms after which the status no longer holds.
    /// Wall-clock time, since `Instant`s do not survive a restart.
    pub expires_ms: u64,
}

/// Maintenance reasons: node (if enabled) and services by ID.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SavedMaintenance {
    /// Node maintenance reason, when enabled.
    pub node: Option<String>,
    /// Service ID -> reason.
    pub services: BTreeMap<String, String>,
}

/// Everything loaded at start-up.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Service registrations.
    pub services: Vec<SavedService>,
    /// Check registrations.
    pub checks: Vec<SavedCheck>,
    /// TTL check states by ID.
    pub ttl: BTreeMap<String, SavedTtl>,
    /// Maintenance.
    pub maintenance: SavedMaintenance,
}

/// The local state directory.
///
/// Layout, as Consul's: `services/`, `checks/` and `checks/state/` hold one JSON file per
/// registration, and `maintenance.json` the maintenance reasons.
#[derive(Clone, Debug)]
pub struct Persist {
    dir: PathBuf,
}

/// A stable file name for an ID (IDs may hold any character).
///
/// An ID may hold `/`, `..` or characters a file system refuses, so the name is a 64-bit
/// FNV-1a hash of it; the file holds the ID itself, so loading never depends on the name.
/// The hash is written out rather than `std`'s `DefaultHasher`, whose output may change
/// between Rust releases and would orphan the files.
fn file_name(id: &str) -> String {
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{h:016x}.json")
}

/// Writes through a temporary file renamed over the target: a crash leaves the old file or
/// the new one, never a torn one. With `sync`, the data is on disk before the rename, so a
/// power loss cannot expose an empty file under the final name.
fn write_atomic(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Not `.json`: a temporary file left by a crash is skipped by [`Persist::read_all`].
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)
}

impl Persist {
    /// State kept under `data_dir`.
    pub fn new(data_dir: &Path) -> Persist {
        Persist {
            dir: data_dir.to_path_buf(),
        }
    }

    fn services_dir(&self) -> PathBuf {
        self.dir.join("services")
    }

    fn checks_dir(&self) -> PathBuf {
        self.dir.join("checks")
    }

    fn ttl_dir(&self) -> PathBuf {
        self.dir.join("checks").join("state")
    }

    fn save<T: Serialize>(&self, path: PathBuf, v: &T, sync: bool) {
        let result = serde_json::to_vec(v)
            .map_err(std::io::Error::other)
            .and_then(|b| write_atomic(&path, &b, sync));
        if let Err(e) = result {
            warn!(path = %path.display(), error = %e, "failed to persist local state");
        }
    }

    fn remove(&self, path: PathBuf) {
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(path = %path.display(), error = %e, "failed to remove persisted state");
        }
    }

    /// Stores a service registration.
    pub fn save_service(&self, s: &SavedService) {
        self.save(self.services_dir().join(file_name(&s.id)), s, true);
    }

    /// Forgets a service registration.
    pub fn remove_service(&self, id: &str) {
        self.remove(self.services_dir().join(file_name(id)));
    }

    /// Stores a check registration.
    pub fn save_check(&self, c: &SavedCheck) {
        self.save(self.checks_dir().join(file_name(&c.id)), c, true);
    }

    /// Forgets a check registration and its TTL state.
    pub fn remove_check(&self, id: &str) {
        self.remove(self.checks_dir().join(file_name(id)));
        self.remove(self.ttl_dir().join(file_name(id)));
    }

    /// Stores a TTL check's last status (not synced: losing the very last update is harmless).
    pub fn save_ttl(&self, t: &SavedTtl) {
        self.save(self.ttl_dir().join(file_name(&t.id)), t, false);
    }

    /// Stores maintenance reasons.
    pub fn save_maintenance(&self, m: &SavedMaintenance) {
        self.save(self.dir.join("maintenance.json"), m, true);
    }

    /// Every `*.json` file of `dir`; a directory that does not exist (a fresh data dir) is
    /// empty.
    fn read_all<T: for<'de> Deserialize<'de>>(dir: &Path) -> Vec<T> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            match std::fs::read(&path).map(|b| serde_json::from_slice::<T>(&b)) {
                Ok(Ok(v)) => out.push(v),
                Ok(Err(e)) => {
                    warn!(path = %path.display(), error = %e, "skipping a damaged local state file")
                }
                Err(e) => warn!(path = %path.display(), error = %e, "cannot read local state"),
            }
        }
        out
    }

    /// Loads everything stored.
    pub fn load(&self) -> Loaded {
        // A missing or unreadable maintenance file means no maintenance.
        let maintenance = std::fs::read(self.dir.join("maintenance.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Loaded {
            services: Self::read_all(&self.services_dir()),
            checks: Self::read_all(&self.checks_dir()),
            ttl: Self::read_all::<SavedTtl>(&self.ttl_dir())
                .into_iter()
                .map(|t| (t.id.clone(), t))
                .collect(),
            maintenance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An ID with a `/` round-trips, a damaged file is skipped, and removals remove.
    #[test]
    fn round_trip_and_damage_is_skipped() {
        let dir = std::env::temp_dir().join(format!("cairn-persist-{}", uuid::Uuid::new_v4()));
        let p = Persist::new(&dir);
        p.save_service(&SavedService {
            id: "web/1".into(),
            definition: json!({"Name": "web", "ID": "web/1"}),
        });
        p.save_check(&SavedCheck {
            id: "c1".into(),
            definition: json!({"Name": "c1", "TTL": "10s"}),
        });
        p.save_ttl(&SavedTtl {
            id: "c1".into(),
            status: "passing".into(),
            output: "ok".into(),
            expires_ms: 42,
        });
        p.save_maintenance(&SavedMaintenance {
            node: Some("upgrade".into()),
            ..SavedMaintenance::default()
        });
        std::fs::write(dir.join("services").join("garbage.json"), b"{not json").expect("write");
        let l = p.load();
        assert_eq!(l.services.len(), 1);
        assert_eq!(l.services[0].id, "web/1");
        assert_eq!(l.checks.len(), 1);
        assert_eq!(l.ttl.get("c1").map(|t| t.expires_ms), Some(42));
        assert_eq!(l.maintenance.node.as_deref(), Some("upgrade"));
        p.remove_service("web/1");
        p.remove_check("c1");
        let l = p.load();
        assert!(l.services.is_empty() && l.checks.is_empty() && l.ttl.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
