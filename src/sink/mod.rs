//! Sinks: where alerts, actions and dead letters go (stdout, files; Kafka and webhooks plug in behind
//! the same traits).
//!
//! A sink owns delivery and nothing else: it must not filter or reorder what the pipeline hands it.
//! In the daemon every alert sink runs behind [`delivery::Delivery`] (bounded queue, retries).

pub mod delivery;
pub mod file;
pub mod webhook;

use crate::alert::Alert;
use crate::source::Position;
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Receives alerts in emission order.
pub trait AlertSink: Send {
    /// Delivers one alert.
    fn send(&mut self, alert: &Alert) -> anyhow::Result<()>;
    /// Makes everything sent so far durable / delivered.
    fn flush(&mut self) -> anyhow::Result<()>;
}

/// JSON lines to any writer (stdout, a file).
pub struct JsonLinesSink<W: Write + Send> {
    out: W,
    line: Vec<u8>,
}

impl<W: Write + Send> JsonLinesSink<W> {
    /// Wraps a writer.
    pub fn new(out: W) -> Self {
        JsonLinesSink {
            out,
            line: Vec::with_capacity(2048),
        }
    }

    /// Writes any serialisable value as one line.
    pub fn write_value<T: Serialize>(&mut self, v: &T) -> anyhow::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, v)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        Ok(())
    }
}

impl JsonLinesSink<BufWriter<File>> {
    /// Creates (truncates) a file, with a clear error naming it.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create directory {}: {e}", dir.display()))?;
        }
        let f = File::create(path)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
        Ok(Self::new(BufWriter::with_capacity(1 << 16, f)))
    }
}

impl<W: Write + Send> AlertSink for JsonLinesSink<W> {
    fn send(&mut self, alert: &Alert) -> anyhow::Result<()> {
        self.write_value(alert)
    }
    fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush()?;
        Ok(())
    }
}

/// Sends every alert to several sinks.
#[derive(Default)]
pub struct FanOut {
    sinks: Vec<Box<dyn AlertSink>>,
}

impl FanOut {
    /// Adds a sink.
    pub fn push(&mut self, s: Box<dyn AlertSink>) {
        self.sinks.push(s);
    }
    /// Whether there is no sink.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }
}

impl AlertSink for FanOut {
    fn send(&mut self, alert: &Alert) -> anyhow::Result<()> {
        for s in &mut self.sinks {
            s.send(alert)?;
        }
        Ok(())
    }
    fn flush(&mut self) -> anyhow::Result<()> {
        for s in &mut self.sinks {
            s.flush()?;
        }
        Ok(())
    }
}

/// One rejected input line.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct DeadLetter {
    /// Source name (path, `-`, topic/partition).
    pub source: String,
    /// Where in the source.
    pub position: Position,
    /// Why it was rejected.
    pub reason: String,
    /// The line as written (lossy UTF-8), cut at [`DEAD_LETTER_RAW_MAX`] bytes.
    pub raw: String,
}

/// Longest raw excerpt kept in a dead letter.
pub const DEAD_LETTER_RAW_MAX: usize = 4096;

impl DeadLetter {
    /// Builds a dead letter, cutting the raw bytes.
    pub fn new(position: Position, reason: String, raw: &[u8]) -> Self {
        let cut = &raw[..raw.len().min(DEAD_LETTER_RAW_MAX)];
        DeadLetter {
            source: position.source.clone(),
            position,
            reason,
            raw: String::from_utf8_lossy(cut).into_owned(),
        }
    }
}

/// Receives dead letters.
pub trait DeadLetterSink: Send {
    /// Records one.
    fn send(&mut self, dl: &DeadLetter) -> anyhow::Result<()>;
    /// Flushes.
    fn flush(&mut self) -> anyhow::Result<()>;
}

impl<W: Write + Send> DeadLetterSink for JsonLinesSink<W> {
    fn send(&mut self, dl: &DeadLetter) -> anyhow::Result<()> {
        self.write_value(dl)
    }
    fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush()?;
        Ok(())
    }
}
