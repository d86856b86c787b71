//! Checkpoints: the pipeline's state plus the source positions it covers, written atomically
//! (temp file, fsync, rename, fsync of the directory) so a crash leaves either the old or the new
//! checkpoint, never half of one. Restart = load, restore, seek the source, replay: at-least-once
//! input with idempotent alert ids.

use crate::pipeline::PipelineSnapshot;
use crate::source::SourceCheckpoint;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `[checkpoint]` configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Directory for `checkpoint.bin`; unset = no checkpoints.
    pub dir: Option<PathBuf>,
    /// How often the daemon checkpoints (wall time), besides at shutdown.
    pub interval: String,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            dir: None,
            interval: "30s".into(),
        }
    }
}

impl CheckpointConfig {
    /// Checks values; errors name the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        humantime::parse_duration(&self.interval)
            .map_err(|e| ("checkpoint.interval".to_string(), e.to_string()))?;
        Ok(())
    }

    /// The checkpoint file, when enabled.
    pub fn file(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(CHECKPOINT_FILE))
    }
}

/// File name inside the checkpoint directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.bin";

/// What a checkpoint holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Pipeline state.
    pub pipeline: PipelineSnapshot,
    /// Source positions covered by that state.
    pub source: SourceCheckpoint,
    /// Wall time written (epoch s), for operators.
    pub written_at: i64,
}

/// Writes a checkpoint atomically.
pub fn write(path: &Path, cp: &Checkpoint) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| {
        anyhow::anyhow!("cannot create checkpoint directory {}: {e}", dir.display())
    })?;
    let tmp = path.with_extension("tmp");
    let bytes = bincode::serialize(cp)?;
    {
        let mut f = std::fs::File::create(&tmp)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", tmp.display()))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
        .map_err(|e| anyhow::anyhow!("cannot move checkpoint into {}: {e}", path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads a checkpoint; `Ok(None)` when there is none.
pub fn read(path: &Path) -> anyhow::Result<Option<Checkpoint>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bincode::deserialize(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "checkpoint {} is unreadable ({e}); move it away to start fresh",
                path.display()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!(
            "cannot read checkpoint {}: {e}",
            path.display()
        )),
    }
}
