//! Files read once from start (or resume offset) to end: plain or gzip (detected by the magic bytes
//! `1f 8b`, whatever the extension). Also the pieces the follower shares: opening, file identity
//! (device, inode) and finding a file's resume position in a [`SourceCheckpoint`].

use super::split::{read_some, Fill, Limits, LineSplitter};
use super::{FileCheckpoint, LineBatch, SourceCheckpoint};
use flate2::read::MultiGzDecoder;
use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What one input did during a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InputPoll {
    /// The batch is full; this input may have more.
    Full,
    /// Nothing more right now (follow mode, live stream).
    Idle,
    /// This input is finished.
    Done,
}

/// Device and inode of a file: what tells a rotated file from the new one at the same path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FileIdentity {
    pub dev: u64,
    pub inode: u64,
}

impl FileIdentity {
    #[cfg(unix)]
    pub(crate) fn of(meta: &Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileIdentity {
            dev: meta.dev(),
            inode: meta.ino(),
        }
    }

    #[cfg(not(unix))]
    pub(crate) fn of(_meta: &Metadata) -> Self {
        FileIdentity::default()
    }

    fn is_known(&self) -> bool {
        self.inode != 0
    }
}

/// An open file, plain or gzip.
pub(crate) enum FileReader {
    Plain(File),
    Gzip(Box<MultiGzDecoder<File>>),
}

impl FileReader {
    /// Opens `path`, sniffing the gzip magic bytes. Returns the reader, the identity and the size.
    pub(crate) fn open(path: &Path) -> io::Result<(FileReader, FileIdentity, u64)> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        let mut magic = [0u8; 2];
        let mut got = 0;
        while got < magic.len() {
            match read_some(&mut file, &mut magic[got..])? {
                Fill::Bytes(n) => got += n,
                _ => break,
            }
        }
        file.seek(SeekFrom::Start(0))?;
        let reader = if got == 2 && magic == [0x1f, 0x8b] {
            FileReader::Gzip(Box::new(MultiGzDecoder::new(file)))
        } else {
            FileReader::Plain(file)
        };
        Ok((reader, FileIdentity::of(&meta), meta.len()))
    }

    pub(crate) fn is_gzip(&self) -> bool {
        matches!(self, FileReader::Gzip(_))
    }

    pub(crate) fn read_into(&mut self, buf: &mut [u8]) -> io::Result<Fill> {
        match self {
            FileReader::Plain(f) => read_some(f, buf),
            FileReader::Gzip(g) => read_some(g.as_mut(), buf),
        }
    }

    /// Moves to `offset` of the (decompressed) stream; gzip has to decompress up to there.
    pub(crate) fn skip_to(&mut self, offset: u64) -> io::Result<()> {
        match self {
            FileReader::Plain(f) => f.seek(SeekFrom::Start(offset)).map(|_| ()),
            FileReader::Gzip(g) => {
                let skipped = io::copy(&mut g.as_mut().take(offset), &mut io::sink())?;
                if skipped < offset {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("resume offset {offset} is past the end ({skipped} bytes)"),
                    ));
                }
                Ok(())
            }
        }
    }
}

/// Adds the path to an I/O error, so that every error names its file.
pub(crate) fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The checkpoint entry that applies to the file at `path` with `identity` and `size` (None for
/// gzip, whose decompressed size is unknown): the entry with the same identity (the file may have
/// been renamed by a rotation), else the entry for the same path when its identity is unknown.
pub(crate) fn resume_entry<'a>(
    resume: Option<&'a SourceCheckpoint>,
    path: &Path,
    identity: FileIdentity,
    size: Option<u64>,
) -> Option<&'a FileCheckpoint> {
    let resume = resume?;
    let path_str = path.to_string_lossy();
    let fits = |c: &FileCheckpoint| size.is_none_or(|s| c.offset <= s);
    let by_identity = resume.files.iter().find(|c| {
        identity.is_known() && c.inode == identity.inode && c.dev == identity.dev && fits(c)
    });
    let found = by_identity.or_else(|| {
        resume
            .files
            .iter()
            .find(|c| c.path == path_str && c.inode == 0 && c.dev == 0 && fits(c))
    });
    if found.is_none() && resume.files.iter().any(|c| c.path == path_str) {
        tracing::info!(path = %path.display(), "file changed since the checkpoint; reading it from the start");
    }
    found
}

/// Opens `path` and moves to its resume position, if any. Returns the reader and identity; the
/// splitter is reset to the position.
pub(crate) fn open_at_resume(
    path: &Path,
    resume: Option<&SourceCheckpoint>,
    splitter: &mut LineSplitter,
) -> io::Result<(FileReader, FileIdentity)> {
    let (mut reader, identity, size) = FileReader::open(path)?;
    let size = (!reader.is_gzip()).then_some(size);
    splitter.reset(0, 1);
    if let Some(entry) = resume_entry(resume, path, identity, size) {
        reader.skip_to(entry.offset)?;
        splitter.reset(entry.offset, entry.line + 1);
    }
    Ok((reader, identity))
}

enum ReadState {
    NotOpened,
    Reading(FileReader),
    Done,
}

/// A file read once, from start (or resume offset) to end.
pub(crate) struct FileInput {
    path: PathBuf,
    name: Arc<str>,
    splitter: LineSplitter,
    state: ReadState,
    identity: FileIdentity,
    opened: bool,
    resume: Option<Arc<SourceCheckpoint>>,
}

impl FileInput {
    pub(crate) fn new(
        path: PathBuf,
        max_line_bytes: usize,
        resume: Option<Arc<SourceCheckpoint>>,
    ) -> Self {
        let name: Arc<str> = Arc::from(path.to_string_lossy().as_ref());
        FileInput {
            path,
            name,
            splitter: LineSplitter::new(max_line_bytes),
            state: ReadState::NotOpened,
            identity: FileIdentity::default(),
            opened: false,
            resume,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self.state, ReadState::Done)
    }

    pub(crate) fn poll(&mut self, batch: &mut LineBatch, limits: &Limits) -> io::Result<InputPoll> {
        let result = self.poll_inner(batch, limits);
        if result.is_err() {
            // Abandon this file; the other inputs go on.
            self.state = ReadState::Done;
        }
        result.map_err(|e| with_path(&self.path, e))
    }

    fn poll_inner(&mut self, batch: &mut LineBatch, limits: &Limits) -> io::Result<InputPoll> {
        let source = batch.source_index(&self.name);
        loop {
            match &mut self.state {
                ReadState::NotOpened => {
                    let (reader, identity) =
                        open_at_resume(&self.path, self.resume.as_deref(), &mut self.splitter)?;
                    self.identity = identity;
                    self.opened = true;
                    self.state = ReadState::Reading(reader);
                }
                ReadState::Reading(reader) => {
                    if self.splitter.drain(batch, source, limits) {
                        return Ok(InputPoll::Full);
                    }
                    if self.splitter.fill(|buf| reader.read_into(buf))? == Fill::Eof {
                        self.splitter.finish(batch, source);
                        self.state = ReadState::Done;
                        return Ok(InputPoll::Done);
                    }
                }
                ReadState::Done => return Ok(InputPoll::Done),
            }
        }
    }

    /// The resume position of this file, or the inherited one when it has not been opened yet.
    pub(crate) fn checkpoint(&self) -> Option<FileCheckpoint> {
        match self.state {
            ReadState::NotOpened => inherited_entry(self.resume.as_deref(), &self.path),
            _ if !self.opened => None, // failed to open: nothing to resume
            _ => Some(FileCheckpoint {
                path: self.name.to_string(),
                offset: self.splitter.next_line_offset(),
                line: self.splitter.lines_emitted(),
                inode: self.identity.inode,
                dev: self.identity.dev,
            }),
        }
    }
}

/// The entry of a not yet opened file, carried over so that an early checkpoint loses nothing.
pub(crate) fn inherited_entry(
    resume: Option<&SourceCheckpoint>,
    path: &Path,
) -> Option<FileCheckpoint> {
    let path_str = path.to_string_lossy();
    resume?.files.iter().find(|c| c.path == path_str).cloned()
}
