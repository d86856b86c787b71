//! Sources: where lines come from (files, stdin, Kafka, Goldmane push), each line with its position.
//! (Interface placeholder; the file/stdin implementation lands from the `sources` branch.)

use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A block of lines read from one or more sources, in input order, stored contiguously.
#[derive(Debug, Default, Clone)]
pub struct LineBatch {
    /// Concatenated line bytes (without newlines).
    pub data: Vec<u8>,
    /// One per line, in order.
    pub lines: Vec<LineRef>,
    /// Names of the sources referenced by [`LineRef::source`].
    pub sources: Vec<Arc<str>>,
}

/// One line of a [`LineBatch`].
#[derive(Clone, Copy, Debug)]
pub struct LineRef {
    /// Start in `data`.
    pub start: u32,
    /// End in `data`.
    pub end: u32,
    /// Index into `sources`.
    pub source: u32,
    /// 1-based line number in the source.
    pub line: u64,
    /// Byte offset of the line start.
    pub offset: u64,
    /// Set when the line was longer than the limit and cut: its true length.
    pub truncated_len: Option<u64>,
}

/// Where a line came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Source name.
    pub source: String,
    /// 1-based line number (or Kafka offset).
    pub line: u64,
    /// Byte offset.
    pub offset: u64,
}

impl LineBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Empties the batch, keeping capacity.
    pub fn clear(&mut self) {
        self.data.clear();
        self.lines.clear();
        self.sources.clear();
    }
    /// Number of lines.
    pub fn len(&self) -> usize {
        self.lines.len()
    }
    /// Whether there is no line.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
    /// Bytes of line `i`.
    pub fn line(&self, i: usize) -> &[u8] {
        let r = &self.lines[i];
        &self.data[r.start as usize..r.end as usize]
    }
    /// Position of line `i`.
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
    /// Appends a line.
    pub fn push_line(&mut self, source: &Arc<str>, bytes: &[u8], line: u64, offset: u64) {
        let idx = match self.sources.iter().position(|s| Arc::ptr_eq(s, source) || **s == **source) {
            Some(i) => i,
            None => {
                self.sources.push(Arc::clone(source));
                self.sources.len() - 1
            }
        };
        let start = self.data.len() as u32;
        self.data.extend_from_slice(bytes);
        self.lines.push(LineRef {
            start,
            end: self.data.len() as u32,
            source: idx as u32,
            line,
            offset,
            truncated_len: None,
        });
    }
}

/// Result of one poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// The batch has lines.
    Data,
    /// Following: nothing new now.
    Idle,
    /// All input consumed.
    End,
}

/// Resume positions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceCheckpoint {
    /// Per file.
    pub files: Vec<FileCheckpoint>,
}

/// Resume position of one file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    /// Path.
    pub path: String,
    /// Byte offset of the next unread line.
    pub offset: u64,
    /// Lines read.
    pub line: u64,
    /// Inode.
    pub inode: u64,
    /// Device.
    pub dev: u64,
}

/// A source of lines.
pub trait LineSource: Send {
    /// Appends up to `max_lines` lines to `batch`.
    fn poll_batch(&mut self, batch: &mut LineBatch, max_lines: usize, max_bytes: usize) -> std::io::Result<Poll>;
    /// Resume positions.
    fn checkpoint(&self) -> SourceCheckpoint;
    /// Called after the lines of the last batch went through the pipeline and their alerts were
    /// delivered: push sources acknowledge here (HTTP 200), Kafka may mark offsets.
    fn batch_done(&mut self) {}
    /// Called after a checkpoint covering everything polled so far is durable: Kafka commits
    /// offsets here.
    fn checkpoint_done(&mut self) {}
}

/// Options for file sources.
#[derive(Clone, Debug)]
pub struct FileSourceOptions {
    /// Tail files.
    pub follow: bool,
    /// Poll interval when following.
    pub poll_interval: std::time::Duration,
    /// Longest line.
    pub max_line_bytes: usize,
    /// Resume positions.
    pub resume: Option<SourceCheckpoint>,
}

impl Default for FileSourceOptions {
    fn default() -> Self {
        FileSourceOptions {
            follow: false,
            poll_interval: std::time::Duration::from_millis(250),
            max_line_bytes: 1 << 20,
            resume: None,
        }
    }
}

struct SimpleFiles {
    paths: Vec<String>,
    idx: usize,
    reader: Option<(Arc<str>, Box<dyn std::io::BufRead + Send>, u64, u64)>,
    buf: Vec<u8>,
}

impl LineSource for SimpleFiles {
    fn poll_batch(&mut self, batch: &mut LineBatch, max_lines: usize, _max_bytes: usize) -> std::io::Result<Poll> {
        use std::io::BufRead;
        while batch.len() < max_lines {
            if self.reader.is_none() {
                let Some(p) = self.paths.get(self.idx) else { break };
                self.idx += 1;
                let f = std::fs::File::open(p)?;
                let r: Box<dyn BufRead + Send> = if p.ends_with(".gz") {
                    Box::new(std::io::BufReader::new(flate2::read::MultiGzDecoder::new(f)))
                } else {
                    Box::new(std::io::BufReader::with_capacity(1 << 20, f))
                };
                self.reader = Some((Arc::from(p.as_str()), r, 0, 0));
            }
            let Some((name, r, line, off)) = self.reader.as_mut() else { break };
            self.buf.clear();
            let n = r.read_until(b'\n', &mut self.buf)?;
            if n == 0 {
                self.reader = None;
                continue;
            }
            *line += 1;
            let start = *off;
            *off += n as u64;
            let mut l = &self.buf[..];
            if l.ends_with(b"\n") { l = &l[..l.len() - 1]; }
            if l.ends_with(b"\r") { l = &l[..l.len() - 1]; }
            let name = Arc::clone(name);
            let ln = *line;
            batch.push_line(&name, l, ln, start);
        }
        Ok(if batch.is_empty() { Poll::End } else { Poll::Data })
    }
    fn checkpoint(&self) -> SourceCheckpoint {
        SourceCheckpoint::default()
    }
}

/// Opens files (placeholder until the full file source lands).
pub fn open_inputs(specs: &[String], _opts: &FileSourceOptions) -> anyhow::Result<Box<dyn LineSource>> {
    for p in specs {
        if !std::path::Path::new(p).exists() {
            anyhow::bail!("input {p} does not exist");
        }
    }
    Ok(Box::new(SimpleFiles { paths: specs.to_vec(), idx: 0, reader: None, buf: Vec::new() }))
}
