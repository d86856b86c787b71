//! Following one file like `tail -F`: read what is there, then poll for growth. Every
//! `poll_interval` the path is checked: another file at the path (device/inode changed) means the
//! file was rotated, so the old file is read to its end and then the new one from its start; a file
//! smaller than what was read means it was truncated, so reading restarts at 0. A missing path is
//! waited for (logged once). A held-back partial line is only emitted once its newline arrives, or
//! when the file is rotated away.

use super::file::{
    inherited_entry, open_at_resume, with_path, FileIdentity, FileReader, InputPoll,
};
use super::split::{Fill, Limits, LineSplitter};
use super::{FileCheckpoint, LineBatch, SourceCheckpoint};
use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

enum FollowState {
    /// Waiting for the path to exist (at start or right after a rotation).
    Waiting,
    Open {
        reader: FileReader,
        /// Another file appeared at the path: finish this one, then switch.
        rotated: bool,
    },
    /// A gzip file (cannot grow) read to its end, or a file abandoned after a read error.
    Finished,
}

/// One followed file.
pub(crate) struct FollowedFile {
    path: PathBuf,
    name: Arc<str>,
    splitter: LineSplitter,
    state: FollowState,
    identity: FileIdentity,
    poll_interval: Duration,
    last_check: Option<Instant>,
    /// The existing content has been read once (or the file is missing): later files may start.
    caught_up: bool,
    missing_logged: bool,
    opened_once: bool,
    resume: Option<Arc<SourceCheckpoint>>,
}

impl FollowedFile {
    pub(crate) fn new(
        path: PathBuf,
        max_line_bytes: usize,
        poll_interval: Duration,
        resume: Option<Arc<SourceCheckpoint>>,
    ) -> Self {
        let name: Arc<str> = Arc::from(path.to_string_lossy().as_ref());
        FollowedFile {
            path,
            name,
            splitter: LineSplitter::new(max_line_bytes),
            state: FollowState::Waiting,
            identity: FileIdentity::default(),
            poll_interval,
            last_check: None,
            caught_up: false,
            missing_logged: false,
            opened_once: false,
            resume,
        }
    }

    pub(crate) fn caught_up(&self) -> bool {
        self.caught_up
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self.state, FollowState::Finished)
    }

    pub(crate) fn poll(&mut self, batch: &mut LineBatch, limits: &Limits) -> io::Result<InputPoll> {
        self.poll_inner(batch, limits)
            .map_err(|e| with_path(&self.path, e))
    }

    fn poll_inner(&mut self, batch: &mut LineBatch, limits: &Limits) -> io::Result<InputPoll> {
        let source = batch.source_index(&self.name);
        loop {
            match &mut self.state {
                FollowState::Finished => return Ok(InputPoll::Done),
                FollowState::Waiting => {
                    if !check_due(&mut self.last_check, self.poll_interval) {
                        return Ok(InputPoll::Idle);
                    }
                    // The checkpoint only applies to the file found at start.
                    let resume = if self.opened_once {
                        None
                    } else {
                        self.resume.as_deref()
                    };
                    match open_at_resume(&self.path, resume, &mut self.splitter) {
                        Ok((reader, identity)) => {
                            if self.missing_logged {
                                tracing::info!(path = %self.path.display(), "file appeared; following it");
                                self.missing_logged = false;
                            }
                            self.identity = identity;
                            self.opened_once = true;
                            self.state = FollowState::Open {
                                reader,
                                rotated: false,
                            };
                        }
                        Err(e) => {
                            self.caught_up = true;
                            if e.kind() != io::ErrorKind::NotFound {
                                return Err(e); // retried after poll_interval
                            }
                            if !self.missing_logged {
                                tracing::warn!(path = %self.path.display(), "file does not exist; waiting for it");
                                self.missing_logged = true;
                            }
                            return Ok(InputPoll::Idle);
                        }
                    }
                }
                FollowState::Open { reader, rotated } => {
                    if self.splitter.drain(batch, source, limits) {
                        return Ok(InputPoll::Full);
                    }
                    match self.splitter.fill(|buf| reader.read_into(buf)) {
                        Ok(Fill::Bytes(_)) => continue,
                        Ok(Fill::Pending) => return Ok(InputPoll::Idle),
                        Ok(Fill::Eof) => {}
                        Err(e) => {
                            self.state = FollowState::Finished;
                            return Err(e);
                        }
                    }
                    if reader.is_gzip() {
                        self.splitter.finish(batch, source);
                        self.caught_up = true;
                        self.state = FollowState::Finished;
                        return Ok(InputPoll::Done);
                    }
                    if *rotated {
                        // The old file is read to its end: its last line is complete now.
                        self.splitter.finish(batch, source);
                        tracing::info!(path = %self.path.display(), "file rotated; following the new file");
                        self.state = FollowState::Waiting;
                        self.last_check = None;
                        continue;
                    }
                    self.caught_up = true;
                    if !check_due(&mut self.last_check, self.poll_interval) {
                        return Ok(InputPoll::Idle);
                    }
                    let meta = match fs::metadata(&self.path) {
                        Ok(meta) => meta,
                        // Renamed away and no new file yet: keep reading the old one meanwhile.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            return Ok(InputPoll::Idle)
                        }
                        Err(e) => return Err(e),
                    };
                    if FileIdentity::of(&meta) != self.identity {
                        // Read what was appended to the old file before the rename, then switch.
                        *rotated = true;
                        continue;
                    }
                    if meta.len() < self.splitter.read_offset() {
                        tracing::info!(path = %self.path.display(), "file truncated; reading it from the start");
                        reader.skip_to(0)?;
                        self.splitter.reset(0, 1);
                        continue;
                    }
                    return Ok(InputPoll::Idle);
                }
            }
        }
    }

    pub(crate) fn checkpoint(&self) -> Option<FileCheckpoint> {
        if !self.opened_once {
            return inherited_entry(self.resume.as_deref(), &self.path);
        }
        if matches!(self.state, FollowState::Waiting) {
            // Rotated and the new file is not open yet: it will be read from its start.
            return None;
        }
        Some(FileCheckpoint {
            path: self.name.to_string(),
            offset: self.splitter.next_line_offset(),
            line: self.splitter.lines_emitted(),
            inode: self.identity.inode,
            dev: self.identity.dev,
        })
    }
}

/// True (and records the time) when at least `interval` passed since the last check.
fn check_due(last: &mut Option<Instant>, interval: Duration) -> bool {
    let now = Instant::now();
    match *last {
        Some(t) if now.duration_since(t) < interval => false,
        _ => {
            *last = Some(now);
            true
        }
    }
}
