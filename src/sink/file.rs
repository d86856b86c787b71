//! The alert file sink: JSON lines appended to a file, written so that a failed write can simply be
//! retried by the delivery layer.
//!
//! Lines are buffered in memory and written at `flush`, which opens the path (append, create),
//! writes the buffer and closes it again. A write that fails half-way is rolled back (the file is
//! cut back to its length before the write) and the buffer is kept, so a retry never leaves a torn
//! or doubled line. Re-opening at every flush also means a file moved away (log rotation) or a
//! path that was broken and repaired (a full disk, a directory where the file should be, lost
//! permissions) is picked up without a restart.

use crate::alert::Alert;
use crate::sink::AlertSink;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Buffered lines above this size are written without waiting for a flush.
const WRITE_AT: usize = 1 << 20;

/// Alerts as JSON lines in a file that is re-opened for every write.
pub struct AlertFileSink {
    path: PathBuf,
    unwritten: Vec<u8>,
}

impl AlertFileSink {
    /// Creates (truncates) the file, with a clear error naming it.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create directory {}: {e}", dir.display()))?;
        }
        std::fs::File::create(path)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
        Ok(AlertFileSink {
            path: path.to_path_buf(),
            unwritten: Vec::with_capacity(1 << 16),
        })
    }

    /// Appends the buffered lines; on failure the file is as before and the lines are kept.
    fn write_out(&mut self) -> anyhow::Result<()> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        let path = &self.path;
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        let before = f
            .metadata()
            .map_err(|e| anyhow::anyhow!("cannot stat {}: {e}", path.display()))?
            .len();
        if let Err(e) = f.write_all(&self.unwritten) {
            // Cut the torn tail so the retry writes whole lines once.
            let rolled_back = f.set_len(before).is_ok();
            anyhow::bail!(
                "cannot write {} ({e}){}",
                path.display(),
                if rolled_back {
                    ""
                } else {
                    "; a partial line may remain"
                }
            );
        }
        self.unwritten.clear();
        Ok(())
    }
}

impl AlertSink for AlertFileSink {
    fn send(&mut self, alert: &Alert) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.unwritten, alert)?;
        self.unwritten.push(b'\n');
        if self.unwritten.len() >= WRITE_AT {
            // A failure here is retried by the caller with the line already buffered: the retry
            // must not buffer it again, so report success and let the next flush fail instead.
            if let Err(e) = self.write_out() {
                tracing::debug!(error = %format!("{e:#}"), "alert file write deferred to the next flush");
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.write_out()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_path_keeps_the_lines_and_a_repaired_one_gets_them_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alerts.jsonl");
        let mut sink = AlertFileSink::create(&path).expect("create");
        sink.send(&crate::sink::delivery::tests::alert("a1"))
            .expect("send");
        sink.flush().expect("flush");
        // Break the path: the file moves away and a directory takes its place.
        std::fs::rename(&path, dir.path().join("part1.jsonl")).expect("rename");
        std::fs::create_dir(&path).expect("dir in the way");
        sink.send(&crate::sink::delivery::tests::alert("a2"))
            .expect("send");
        assert!(sink.flush().is_err());
        assert!(sink.flush().is_err(), "still broken");
        std::fs::remove_dir(&path).expect("repair");
        sink.flush().expect("flush after repair");
        let first = std::fs::read_to_string(dir.path().join("part1.jsonl")).expect("part1");
        let second = std::fs::read_to_string(&path).expect("second");
        assert_eq!(first.lines().count(), 1);
        assert_eq!(second.lines().count(), 1);
        assert!(second.contains("\"a2\""));
    }
}
