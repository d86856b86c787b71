//! The responder's persisted state: active quarantines, repeat-offender history, recent quarantine
//! starts (hourly cap) and alert ids already acted on (idempotency), as one JSON file written atomically
//! (temp file + rename) so a crash never leaves half a file.
//!
//! This file owns the format and the disk I/O; decisions live in `responder.rs`.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::record::ActiveQuarantine;

/// File name inside the state dir.
pub const STATE_FILE: &str = "responder-state.json";
const FORMAT_VERSION: u32 = 1;

/// What a workload has done before (for escalation and cool-down).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OffenderHistory {
    /// Quarantine episodes so far.
    pub episodes: u32,
    /// Start of the last episode (epoch s).
    pub last_start: i64,
    /// End of the last episode (epoch s), when released.
    pub last_release: Option<i64>,
}

/// Everything that must survive a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponderState {
    /// Format version.
    pub version: u32,
    /// Active quarantines by workload key.
    pub active: BTreeMap<String, ActiveQuarantine>,
    /// Offender history by workload key.
    pub history: BTreeMap<String, OffenderHistory>,
    /// Start times of recent quarantines (last hour of event time).
    pub recent_starts: VecDeque<i64>,
    /// Alert ids already decided on, with the alert's time (pruned after a retention period).
    pub processed_alerts: BTreeMap<String, i64>,
}

/// The state file of a state dir, plus the modification time of our last write, so changes made by
/// another process (an operator's `quarantine release`) are noticed and reloaded.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    last_written: Option<(SystemTime, u64)>,
}

impl StateFile {
    /// State file in `dir` (created if missing).
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating state dir {}", dir.display()))?;
        Ok(Self {
            path: dir.join(STATE_FILE),
            last_written: None,
        })
    }

    /// Loads the state; an absent file is an empty state.
    pub fn load(&mut self) -> anyhow::Result<ResponderState> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ResponderState {
                    version: FORMAT_VERSION,
                    ..Default::default()
                })
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        };
        let state: ResponderState = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a flowwarden responder state file",
                self.path.display()
            )
        })?;
        if state.version != FORMAT_VERSION {
            anyhow::bail!(
                "{}: unsupported state version {}",
                self.path.display(),
                state.version
            );
        }
        self.last_written = self.mtime();
        Ok(state)
    }

    /// Writes the state atomically.
    pub fn save(&mut self, state: &ResponderState) -> anyhow::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(state)?;
        write_atomic(&tmp, &self.path, &body)?;
        self.last_written = self.mtime();
        Ok(())
    }

    /// Whether someone else wrote the file since our last load/save.
    pub fn changed_on_disk(&self) -> bool {
        let now = self.mtime();
        now.is_some() && now != self.last_written
    }

    /// Modification time and size: size catches rewrites within a coarse mtime tick.
    fn mtime(&self) -> Option<(SystemTime, u64)> {
        let m = fs::metadata(&self.path).ok()?;
        Some((m.modified().ok()?, m.len()))
    }
}

impl ResponderState {
    /// An empty state of the current format.
    pub fn new() -> Self {
        Self {
            version: FORMAT_VERSION,
            ..Default::default()
        }
    }
}

/// Writes `body` to `tmp`, syncs, and renames it over `dest`.
pub fn write_atomic(tmp: &Path, dest: &Path, body: &[u8]) -> anyhow::Result<()> {
    let mut f = fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(body)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.sync_all().ok();
    drop(f);
    fs::rename(tmp, dest)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    Ok(())
}
