//! Line sources: where input lines come from, with the position of every line.
//!
//! This module owns reading bytes and splitting them into lines: files, directories, globs, gzip
//! (detected by its magic bytes), stdin (`-`), and `--follow` (tail -F: rotation and truncation). It
//! hands out [`LineBatch`]es and knows nothing about what a line means; decoding is [`crate::flow`]'s
//! job. Resuming after a restart goes through [`SourceCheckpoint`].
//!
//! Sources are synchronous and meant to run on their own thread: [`LineSource::poll_batch`] never
//! sleeps for long (a followed file answers [`Poll::Idle`] and the caller waits `poll_interval`).

mod expand;
mod file;
mod follow;
mod set;
mod split;
mod stream;

pub mod goldmane_http;
pub mod simulate;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

pub use expand::SourceError;

/// A block of lines read from one or more sources, in input order. Lines are stored contiguously.
#[derive(Debug, Default)]
pub struct LineBatch {
    /// Concatenated line bytes (without newlines and without a trailing `\r`).
    pub data: Vec<u8>,
    /// One per line, in order.
    pub lines: Vec<LineRef>,
    /// Names of the sources referenced by [`LineRef::source`] in this batch.
    pub sources: Vec<Arc<str>>,
}

/// Where one line sits in [`LineBatch::data`] and in its source.
#[derive(Clone, Copy, Debug)]
pub struct LineRef {
    /// Range of the line in [`LineBatch::data`].
    pub start: u32,
    pub end: u32,
    /// Index into [`LineBatch::sources`].
    pub source: u32,
    /// 1-based line number within the source file.
    pub line: u64,
    /// Byte offset of the line start in the (decompressed) source.
    pub offset: u64,
    /// `Some(true length)` when the line exceeded `max_line_bytes`: only its first 4 KiB are in the
    /// batch and the pipeline should dead-letter it.
    pub truncated_len: Option<u64>,
}

impl LineBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.data.clear();
        self.lines.clear();
        self.sources.clear();
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The bytes of line `i` (panics if `i >= len()`, like slice indexing).
    #[inline]
    pub fn line(&self, i: usize) -> &[u8] {
        let r = &self.lines[i];
        &self.data[r.start as usize..r.end as usize]
    }

    /// Where line `i` came from.
    pub fn position(&self, i: usize) -> Position {
        let r = &self.lines[i];
        Position {
            source: self
                .sources
                .get(r.source as usize)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            line: r.line,
            offset: r.offset,
        }
    }

    /// `Some(true length)` when line `i` was truncated because it was too long.
    pub fn truncated_len(&self, i: usize) -> Option<u64> {
        self.lines[i].truncated_len
    }

    /// Appends one line (for tests and for sources that are not byte streams).
    pub fn push_line(&mut self, source: &Arc<str>, bytes: &[u8], line: u64, offset: u64) {
        let idx = self.source_index(source);
        self.push_raw(idx, bytes, line, offset, None);
    }

    /// Index of `name` in `sources`, adding it if needed. Called once per source per poll, not per line.
    pub(crate) fn source_index(&mut self, name: &Arc<str>) -> u32 {
        if let Some(last) = self.sources.last() {
            if Arc::ptr_eq(last, name) {
                return (self.sources.len() - 1) as u32;
            }
        }
        if let Some(i) = self.sources.iter().position(|s| s == name) {
            return i as u32;
        }
        self.sources.push(Arc::clone(name));
        (self.sources.len() - 1) as u32
    }

    #[inline]
    pub(crate) fn push_raw(
        &mut self,
        source: u32,
        bytes: &[u8],
        line: u64,
        offset: u64,
        truncated_len: Option<u64>,
    ) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(bytes);
        let end = self.data.len() as u32;
        self.lines.push(LineRef {
            start,
            end,
            source,
            line,
            offset,
            truncated_len,
        });
    }
}

/// The position of one line, for dead letters and error messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub source: String,
    pub line: u64,
    pub offset: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} (byte {})", self.source, self.line, self.offset)
    }
}

/// What a [`LineSource::poll_batch`] call produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// The batch has lines.
    Data,
    /// Follow mode (or a live stream): nothing new right now; poll again after `poll_interval`.
    Idle,
    /// All input consumed; the batch is empty.
    End,
}

/// A producer of line batches.
pub trait LineSource: Send {
    /// Appends up to `max_lines` lines (or about `max_bytes`) to `batch` (which the caller cleared).
    ///
    /// An error names the input it came from; that input is abandoned and polling again continues with
    /// the others. Lines read before an error are returned first (the error comes on the next call).
    fn poll_batch(
        &mut self,
        batch: &mut LineBatch,
        max_lines: usize,
        max_bytes: usize,
    ) -> std::io::Result<Poll>;

    /// Positions to resume from after a restart: for each file, the byte offset of the next line not
    /// yet returned by `poll_batch`. Take it after the lines returned so far have been processed.
    fn checkpoint(&self) -> SourceCheckpoint;
    /// Called after the lines of the last batch went through the pipeline and their alerts were
    /// delivered: push sources acknowledge here (HTTP 200), Kafka may mark offsets.
    fn batch_done(&mut self) {}
    /// Called after a checkpoint covering everything polled so far is durable: Kafka commits
    /// offsets here.
    fn checkpoint_done(&mut self) {}
    /// Kafka partitions gained or lost since the last call (scale-out state hand-over); other
    /// sources have none.
    fn take_assignment_changes(&mut self) -> Vec<crate::kafka::source::AssignmentChange> {
        Vec::new()
    }
}

/// Options of file and stdin sources.
#[derive(Clone, Debug)]
pub struct FileSourceOptions {
    /// Tail files like `tail -F` instead of stopping at their end.
    pub follow: bool,
    /// How often a followed file is checked for rotation and truncation.
    pub poll_interval: Duration,
    /// Longer lines are returned truncated (see [`LineRef::truncated_len`]).
    pub max_line_bytes: usize,
    /// Seek to these offsets on start.
    pub resume: Option<SourceCheckpoint>,
}

impl Default for FileSourceOptions {
    fn default() -> Self {
        FileSourceOptions {
            follow: false,
            poll_interval: Duration::from_millis(250),
            max_line_bytes: 1 << 20,
            resume: None,
        }
    }
}

/// Resume positions of file inputs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceCheckpoint {
    /// Kafka partition offsets (next offset to read), when the source is Kafka.
    #[serde(default)]
    pub kafka: Vec<crate::kafka::PartitionOffset>,
    /// File positions.
    pub files: Vec<FileCheckpoint>,
}

/// Resume position of one file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    pub path: String,
    /// Byte offset (in the decompressed stream for gzip) of the next line to read.
    pub offset: u64,
    /// Number of lines before `offset`: the next line read is number `line + 1`.
    pub line: u64,
    /// Identity of the file the offset belongs to (0 when unknown); a file found at `path` with
    /// another identity is read from the start, a file at another path with this identity (it was
    /// rotated) resumes at `offset`.
    pub inode: u64,
    pub dev: u64,
}

/// Opens the inputs named by `specs`: files, directories (all regular files inside, recursively,
/// rotated `name.N` files oldest first), glob patterns, and `-` for stdin. Errors name the path.
pub fn open_inputs(
    specs: &[String],
    opts: &FileSourceOptions,
) -> anyhow::Result<Box<dyn LineSource>> {
    let inputs = expand::expand(specs, opts.follow)?;
    let set = set::InputSet::open(inputs, opts)?;
    Ok(Box::new(set))
}

/// Asks the kernel to drop the files named by `specs` from its page cache: `bench` holds its input in
/// memory, and a second, cached copy of a 10 GB input left the timed run short of free memory.
/// Best effort: a file that cannot be opened is left alone.
pub fn release_cached_inputs(specs: &[String]) {
    let Ok(inputs) = expand::expand(specs, false) else {
        return;
    };
    for spec in inputs {
        let expand::InputSpec::File { path, .. } = spec else {
            continue;
        };
        #[cfg(target_os = "linux")]
        if let Ok(f) = std::fs::File::open(&path) {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid open descriptor; the call only drops clean cached pages.
            unsafe {
                libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = path;
    }
}

/// A source over any byte stream (stdin is one): gzip detected by magic bytes, read on a background
/// thread so that `poll_batch` in follow mode does not block. It has no checkpoint.
pub fn reader_source<R: Read + Send + 'static>(
    name: &str,
    reader: R,
    opts: &FileSourceOptions,
) -> anyhow::Result<Box<dyn LineSource>> {
    let stream = stream::StreamInput::spawn(Arc::from(name), reader, opts.max_line_bytes)?;
    Ok(Box::new(set::InputSet::from_inputs(
        vec![set::Input::Stream(stream)],
        opts,
    )))
}

/// Lines from memory, for tests.
pub struct MemorySource {
    name: Arc<str>,
    lines: Vec<Vec<u8>>,
    next: usize,
    offset: u64,
}

impl MemorySource {
    pub fn new(name: &str, lines: Vec<Vec<u8>>) -> Self {
        MemorySource {
            name: Arc::from(name),
            lines,
            next: 0,
            offset: 0,
        }
    }
}

impl LineSource for MemorySource {
    fn poll_batch(
        &mut self,
        batch: &mut LineBatch,
        max_lines: usize,
        max_bytes: usize,
    ) -> std::io::Result<Poll> {
        let limits = split::Limits::new(max_lines, max_bytes);
        let source = batch.source_index(&self.name);
        while self.next < self.lines.len() && !limits.full(batch) {
            let line = &self.lines[self.next];
            batch.push_raw(source, line, self.next as u64 + 1, self.offset, None);
            self.offset += line.len() as u64 + 1;
            self.next += 1;
        }
        Ok(if batch.is_empty() {
            Poll::End
        } else {
            Poll::Data
        })
    }

    fn checkpoint(&self) -> SourceCheckpoint {
        SourceCheckpoint {
            files: vec![FileCheckpoint {
                path: self.name.to_string(),
                offset: self.offset,
                line: self.next as u64,
                inode: 0,
                dev: 0,
            }],
            ..SourceCheckpoint::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_positions_and_display() {
        let a: Arc<str> = Arc::from("a.log");
        let b: Arc<str> = Arc::from("b.log");
        let mut batch = LineBatch::new();
        batch.push_line(&a, b"one", 1, 0);
        batch.push_line(&b, b"two", 7, 40);
        batch.push_line(&a, b"three", 2, 4);
        assert_eq!(batch.sources.len(), 2);
        assert_eq!(batch.line(2), b"three");
        let p = batch.position(1);
        assert_eq!(
            p,
            Position {
                source: "b.log".into(),
                line: 7,
                offset: 40
            }
        );
        assert_eq!(p.to_string(), "b.log:7 (byte 40)");
        batch.clear();
        assert!(batch.is_empty() && batch.sources.is_empty() && batch.data.is_empty());
    }

    #[test]
    fn memory_source_respects_limits_and_ends() {
        let mut src = MemorySource::new("mem", vec![b"a".to_vec(), b"bb".to_vec(), b"c".to_vec()]);
        let mut batch = LineBatch::new();
        assert_eq!(src.poll_batch(&mut batch, 2, 1 << 20).unwrap(), Poll::Data);
        assert_eq!(batch.len(), 2);
        assert_eq!(src.checkpoint().files[0].offset, 5);
        batch.clear();
        assert_eq!(src.poll_batch(&mut batch, 2, 1 << 20).unwrap(), Poll::Data);
        assert_eq!(
            (batch.line(0), batch.lines[0].line, batch.lines[0].offset),
            (&b"c"[..], 3, 5)
        );
        batch.clear();
        assert_eq!(src.poll_batch(&mut batch, 2, 1 << 20).unwrap(), Poll::End);
    }
}
