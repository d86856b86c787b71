//! Byte streams that cannot seek or be polled for size, such as stdin (`-`): a background thread
//! reads them (gzip detected by its magic bytes) and hands chunks over a bounded channel, so that a
//! follow-mode poll never blocks on a quiet pipe and a slow pipeline back-pressures the reader.

use super::file::InputPoll;
use super::split::{read_some, Fill, Limits, LineSplitter};
use super::LineBatch;
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use flate2::read::MultiGzDecoder;
use std::io::{self, Cursor, Read};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Size of one read of the background thread (pipes hand out at most 64 KiB at a time anyway).
const STREAM_READ: usize = 256 << 10;
/// Chunks in flight between the reader thread and the source.
const CHANNEL_CHUNKS: usize = 64;

/// How long a poll may wait for the stream when it has nothing buffered.
#[derive(Clone, Copy, Debug)]
pub(crate) enum StreamWait {
    /// Until data or end of stream (batch mode: there is nothing else to do).
    Block,
    /// At most this long (zero: do not wait).
    Upto(Duration),
}

/// A stream read by a background thread.
pub(crate) struct StreamInput {
    name: Arc<str>,
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    chunk_pos: usize,
    splitter: LineSplitter,
    done: bool,
}

impl StreamInput {
    pub(crate) fn spawn<R: Read + Send + 'static>(
        name: Arc<str>,
        reader: R,
        max_line_bytes: usize,
    ) -> io::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded(CHANNEL_CHUNKS);
        thread::Builder::new()
            .name(format!("source {name}"))
            .spawn(move || {
                if let Err(e) = pump(reader, &tx) {
                    let _ = tx.send(Err(e));
                }
            })?;
        Ok(StreamInput {
            name,
            rx,
            chunk: Vec::new(),
            chunk_pos: 0,
            splitter: LineSplitter::new(max_line_bytes),
            done: false,
        })
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    pub(crate) fn poll(
        &mut self,
        batch: &mut LineBatch,
        limits: &Limits,
        wait: StreamWait,
    ) -> io::Result<InputPoll> {
        if self.done {
            return Ok(InputPoll::Done);
        }
        let source = batch.source_index(&self.name);
        let lines_before = batch.len();
        loop {
            if self.splitter.drain(batch, source, limits) {
                return Ok(InputPoll::Full);
            }
            // Once this poll produced lines, hand them out rather than wait for more.
            let wait = if batch.len() > lines_before {
                StreamWait::Upto(Duration::ZERO)
            } else {
                wait
            };
            let (rx, chunk, pos) = (&self.rx, &mut self.chunk, &mut self.chunk_pos);
            let got = self
                .splitter
                .fill(|buf| next_bytes(rx, chunk, pos, buf, wait));
            match got {
                Ok(Fill::Bytes(_)) => continue,
                Ok(Fill::Pending) => return Ok(InputPoll::Idle),
                Ok(Fill::Eof) => {
                    self.splitter.finish(batch, source);
                    self.done = true;
                    return Ok(InputPoll::Done);
                }
                Err(e) => {
                    self.done = true;
                    return Err(io::Error::new(e.kind(), format!("{}: {e}", self.name)));
                }
            }
        }
    }
}

/// Copies bytes from the current chunk, receiving the next one when it is used up.
fn next_bytes(
    rx: &Receiver<io::Result<Vec<u8>>>,
    chunk: &mut Vec<u8>,
    pos: &mut usize,
    buf: &mut [u8],
    wait: StreamWait,
) -> io::Result<Fill> {
    if *pos >= chunk.len() {
        let next = match wait {
            StreamWait::Block => rx.recv().map_err(|_| TryRecvError::Disconnected),
            StreamWait::Upto(d) if d.is_zero() => rx.try_recv(),
            StreamWait::Upto(d) => rx.recv_timeout(d).map_err(|e| match e {
                RecvTimeoutError::Timeout => TryRecvError::Empty,
                RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
            }),
        };
        match next {
            Ok(Ok(bytes)) => {
                *chunk = bytes;
                *pos = 0;
            }
            Ok(Err(e)) => return Err(e),
            Err(TryRecvError::Empty) => return Ok(Fill::Pending),
            Err(TryRecvError::Disconnected) => return Ok(Fill::Eof),
        }
    }
    let n = (chunk.len() - *pos).min(buf.len());
    buf[..n].copy_from_slice(&chunk[*pos..*pos + n]);
    *pos += n;
    Ok(Fill::Bytes(n))
}

/// The reader thread: sniffs gzip, then sends chunks until end of stream or until the source is gone.
fn pump<R: Read>(
    mut reader: R,
    tx: &crossbeam_channel::Sender<io::Result<Vec<u8>>>,
) -> io::Result<()> {
    let mut head = Vec::with_capacity(2);
    let mut byte = [0u8; 2];
    while head.len() < 2 {
        match read_some(&mut reader, &mut byte[..2 - head.len()])? {
            Fill::Bytes(n) => head.extend_from_slice(&byte[..n]),
            _ => break,
        }
    }
    let gzip = head == [0x1f, 0x8b];
    let mut reader: Box<dyn Read> = if gzip {
        Box::new(MultiGzDecoder::new(Cursor::new(head).chain(reader)))
    } else {
        Box::new(Cursor::new(head).chain(reader))
    };
    let mut buf = vec![0u8; STREAM_READ];
    loop {
        match read_some(reader.as_mut(), &mut buf)? {
            Fill::Bytes(n) => {
                if tx.send(Ok(buf[..n].to_vec())).is_err() {
                    return Ok(()); // the source was dropped
                }
            }
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A never-ending stream fed by the test, like a quiet pipe.
    struct ChannelReader(crossbeam_channel::Receiver<Vec<u8>>);

    impl Read for ChannelReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.recv() {
                Ok(bytes) => {
                    let n = bytes.len().min(buf.len());
                    buf[..n].copy_from_slice(&bytes[..n]);
                    Ok(n)
                }
                Err(_) => Ok(0),
            }
        }
    }

    #[test]
    fn quiet_stream_is_idle_not_blocking_and_partial_lines_wait() {
        let (feed, rx) = crossbeam_channel::unbounded();
        let mut input = StreamInput::spawn(Arc::from("-"), ChannelReader(rx), 1 << 20).unwrap();
        let limits = Limits::new(100, 1 << 20);
        let mut batch = LineBatch::new();
        let no_wait = StreamWait::Upto(Duration::ZERO);
        assert_eq!(
            input.poll(&mut batch, &limits, no_wait).unwrap(),
            InputPoll::Idle
        );
        feed.send(b"ab".to_vec()).unwrap();
        feed.send(b"c\nde".to_vec()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while batch.is_empty() && Instant::now() < deadline {
            let _ = input.poll(
                &mut batch,
                &limits,
                StreamWait::Upto(Duration::from_millis(10)),
            );
        }
        assert_eq!(batch.len(), 1);
        assert_eq!(batch.line(0), b"abc");
        drop(feed); // end of stream: the partial line is emitted
        batch.clear();
        while !input.is_done() && Instant::now() < deadline {
            let _ = input.poll(&mut batch, &limits, StreamWait::Block);
        }
        assert_eq!(
            (batch.len(), batch.line(0), batch.lines[0].offset),
            (1, &b"de"[..], 4)
        );
    }
}
