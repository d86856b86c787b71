//! The [`LineSource`] over several inputs: in batch mode they are read one after another in the
//! given order; in follow mode the existing content of each is read in order first, then all are
//! tailed round-robin so that one busy file cannot starve the others.

use super::expand::InputSpec;
use super::file::{FileInput, InputPoll};
use super::follow::FollowedFile;
use super::split::Limits;
use super::stream::{StreamInput, StreamWait};
use super::{FileSourceOptions, LineBatch, LineSource, Poll, SourceCheckpoint};
use std::io;
use std::sync::Arc;
use std::time::Duration;

pub(crate) enum Input {
    /// Read once, start to end.
    Once(FileInput),
    /// Tailed (follow mode).
    Follow(FollowedFile),
    /// Stdin or another byte stream.
    Stream(StreamInput),
}

impl Input {
    fn is_done(&self) -> bool {
        match self {
            Input::Once(f) => f.is_done(),
            Input::Follow(f) => f.is_done(),
            Input::Stream(s) => s.is_done(),
        }
    }

    /// The existing content has been read; later inputs may start (follow mode).
    fn caught_up(&self) -> bool {
        match self {
            Input::Once(f) => f.is_done(),
            Input::Follow(f) => f.caught_up(),
            // A live stream has no "existing content": it must not hold the files back.
            Input::Stream(_) => true,
        }
    }

    fn poll(
        &mut self,
        batch: &mut LineBatch,
        limits: &Limits,
        wait: StreamWait,
    ) -> io::Result<InputPoll> {
        match self {
            Input::Once(f) => f.poll(batch, limits),
            Input::Follow(f) => f.poll(batch, limits),
            Input::Stream(s) => s.poll(batch, limits, wait),
        }
    }
}

pub(crate) struct InputSet {
    inputs: Vec<Input>,
    follow: bool,
    poll_interval: Duration,
    /// Batch mode: the input being read. Follow mode: where the next round-robin pass starts.
    cursor: usize,
    /// An error met after lines were already in the batch; reported on the next call.
    pending_error: Option<io::Error>,
}

impl InputSet {
    pub(crate) fn open(specs: Vec<InputSpec>, opts: &FileSourceOptions) -> io::Result<Self> {
        let resume = opts.resume.clone().map(Arc::new);
        let mut inputs = Vec::with_capacity(specs.len());
        for spec in specs {
            inputs.push(match spec {
                InputSpec::Stdin => Input::Stream(StreamInput::spawn(
                    Arc::from("-"),
                    io::stdin(),
                    opts.max_line_bytes,
                )?),
                InputSpec::File { path, rotated } if opts.follow && !rotated => {
                    Input::Follow(FollowedFile::new(
                        path,
                        opts.max_line_bytes,
                        opts.poll_interval,
                        resume.clone(),
                    ))
                }
                InputSpec::File { path, .. } => {
                    Input::Once(FileInput::new(path, opts.max_line_bytes, resume.clone()))
                }
            });
        }
        Ok(Self::from_inputs(inputs, opts))
    }

    pub(crate) fn from_inputs(inputs: Vec<Input>, opts: &FileSourceOptions) -> Self {
        InputSet {
            inputs,
            follow: opts.follow,
            poll_interval: opts.poll_interval,
            cursor: 0,
            pending_error: None,
        }
    }

    fn poll_in_order(&mut self, batch: &mut LineBatch, limits: &Limits) -> io::Result<Poll> {
        while let Some(input) = self.inputs.get_mut(self.cursor) {
            match input.poll(batch, limits, StreamWait::Block)? {
                InputPoll::Full => return Ok(Poll::Data),
                InputPoll::Idle => break,
                InputPoll::Done => self.cursor += 1,
            }
        }
        Ok(if !batch.is_empty() {
            Poll::Data
        } else if self.cursor >= self.inputs.len() {
            Poll::End
        } else {
            Poll::Idle
        })
    }

    fn poll_following(&mut self, batch: &mut LineBatch, limits: &Limits) -> io::Result<Poll> {
        let n = self.inputs.len();
        // Backlog first, in order; once everything is caught up, round-robin.
        let start = self
            .inputs
            .iter()
            .position(|i| !i.caught_up())
            .unwrap_or(self.cursor % n.max(1));
        let live = self.inputs.iter().filter(|i| !i.is_done()).count();
        for step in 0..n {
            let i = (start + step) % n;
            let input = &mut self.inputs[i];
            if input.is_done() {
                continue;
            }
            // A lone stdin may wait a little for data; next to files it must not hold them up.
            let wait = if live == 1 {
                StreamWait::Upto(self.poll_interval)
            } else {
                StreamWait::Upto(Duration::ZERO)
            };
            match input.poll(batch, limits, wait) {
                Ok(InputPoll::Full) => {
                    self.cursor = i + 1;
                    return Ok(Poll::Data);
                }
                Ok(_) => {}
                Err(e) if batch.is_empty() => {
                    self.cursor = i + 1;
                    return Err(e);
                }
                Err(e) => {
                    self.cursor = i + 1;
                    self.pending_error = Some(e);
                    return Ok(Poll::Data);
                }
            }
        }
        self.cursor = start + 1;
        Ok(if !batch.is_empty() {
            Poll::Data
        } else if self.inputs.iter().all(Input::is_done) {
            Poll::End
        } else {
            Poll::Idle
        })
    }
}

impl LineSource for InputSet {
    fn poll_batch(
        &mut self,
        batch: &mut LineBatch,
        max_lines: usize,
        max_bytes: usize,
    ) -> io::Result<Poll> {
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        let limits = Limits::new(max_lines, max_bytes);
        let result = if self.follow {
            self.poll_following(batch, &limits)
        } else {
            self.poll_in_order(batch, &limits)
        };
        match result {
            Err(e) if !self.follow => {
                // The failed input marked itself done; the next call continues with the next one.
                if batch.is_empty() {
                    Err(e)
                } else {
                    self.pending_error = Some(e);
                    Ok(Poll::Data)
                }
            }
            other => other,
        }
    }

    fn checkpoint(&self) -> SourceCheckpoint {
        let files = self
            .inputs
            .iter()
            .filter_map(|input| match input {
                Input::Once(f) => f.checkpoint(),
                Input::Follow(f) => f.checkpoint(),
                Input::Stream(_) => None,
            })
            .collect();
        SourceCheckpoint {
            files,
            ..SourceCheckpoint::default()
        }
    }
}
