//! The audit log: every decision as one JSON line, appended and flushed (SOC 2 CC7.4 / CC8.1 evidence:
//! who was isolated, why, by what, and when it was released).
//!
//! This file owns the audit file only; the record is [`ActionRecord`].

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::record::ActionRecord;

/// Append-only JSON-lines audit log.
#[derive(Debug)]
pub struct AuditLog {
    file: File,
}

impl AuditLog {
    /// Opens (creating) the log for appending.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening audit log {}", path.display()))?;
        Ok(Self { file })
    }

    /// Appends one record as a line (one `write` call, so concurrent appenders do not interleave lines).
    pub fn append(&mut self, record: &ActionRecord) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.file.write_all(&line).context("writing audit record")?;
        self.file.flush().context("flushing audit log")?;
        Ok(())
    }
}
