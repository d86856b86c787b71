//! The GitOps actuator: one YAML file per active quarantine in a directory, written atomically
//! (temp file + rename, so a Git sync never sees half a manifest) and removed on release.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Actuator;
use crate::respond::record::{ActionKind, ActionRecord};
use crate::respond::state::write_atomic;

/// Writes manifests into `dir`.
#[derive(Debug)]
pub struct DirectoryActuator {
    dir: PathBuf,
}

impl DirectoryActuator {
    /// Uses (creating) `dir`.
    pub fn new(dir: PathBuf) -> anyhow::Result<Self> {
        fs::create_dir_all(&dir)
            .with_context(|| format!("creating manifest directory {}", dir.display()))?;
        Ok(Self { dir })
    }

    /// The file that holds a workload's quarantine manifest.
    pub fn manifest_path(&self, workload: &str) -> PathBuf {
        manifest_path(&self.dir, workload)
    }
}

fn manifest_path(dir: &Path, workload: &str) -> PathBuf {
    let cleaned: String = workload
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let hash = xxhash_rust::xxh3::xxh3_64(workload.as_bytes()) as u32;
    dir.join(format!("quarantine-{cleaned}-{hash:08x}.yaml"))
}

impl Actuator for DirectoryActuator {
    fn name(&self) -> &'static str {
        "directory"
    }

    fn apply(&mut self, action: &ActionRecord) -> anyhow::Result<()> {
        if !action.is_actionable() {
            return Ok(());
        }
        let path = self.manifest_path(&action.workload);
        match action.action {
            ActionKind::Quarantine => {
                let body = format!(
                    "# flowwarden quarantine of {} (action {}, expires at {})\n{}",
                    action.workload,
                    action.id,
                    action
                        .expires_at
                        .map_or_else(|| "-".to_string(), |t| t.to_string()),
                    action.manifest
                );
                let tmp = path.with_extension("yaml.tmp");
                write_atomic(&tmp, &path, body.as_bytes())
            }
            ActionKind::Release => match fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
            },
            ActionKind::Skip => Ok(()),
        }
    }
}
