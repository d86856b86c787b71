//! Splitting one byte stream into lines: a large reusable read buffer, `memchr` for newlines, the
//! position (1-based line number, byte offset of the line start) of every line, CRLF stripping, a held
//! back partial last line, and bounded memory for oversized lines.
//!
//! This module owns no file handles: callers hand it a read function ([`LineSplitter::fill`]) and decide
//! what end of input means (flush the partial line, or wait for more bytes in follow mode).

use super::LineBatch;
use memchr::memchr;
use std::io;

/// Size of one read. Big reads keep the syscall count per MB low.
pub(crate) const READ_CHUNK: usize = 1 << 20;
/// How much of an oversized line is kept for the dead-letter record.
pub(crate) const TRUNCATED_PREFIX: usize = 4096;
/// Upper bound for `max_line_bytes`, so batch offsets always fit the `u32` of [`super::LineRef`].
pub(crate) const MAX_LINE_LIMIT: usize = 1 << 30;
/// Upper bound for a batch's data, for the same reason.
const MAX_BATCH_BYTES: usize = 1 << 31;

/// How much one `poll_batch` call may append.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    max_lines: usize,
    max_bytes: usize,
}

impl Limits {
    pub(crate) fn new(max_lines: usize, max_bytes: usize) -> Self {
        Limits {
            max_lines: max_lines.max(1),
            max_bytes: max_bytes.clamp(1, MAX_BATCH_BYTES),
        }
    }

    #[inline]
    pub(crate) fn full(&self, batch: &LineBatch) -> bool {
        batch.lines.len() >= self.max_lines || batch.data.len() >= self.max_bytes
    }
}

/// Result of one read attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fill {
    /// This many bytes were appended.
    Bytes(usize),
    /// Nothing available right now, but the stream is still open (live streams only).
    Pending,
    /// End of the stream (or, for a followed file, of what was written so far).
    Eof,
}

/// A line longer than the limit, being skipped up to its newline.
struct OversizedLine {
    line: u64,
    offset: u64,
    prefix: Vec<u8>,
    /// Bytes of the line seen so far.
    len: u64,
    /// Last byte seen, to strip a `\r` that sits right before the newline.
    last_byte: u8,
}

/// Splits a byte stream into lines and appends them to [`LineBatch`]es.
pub(crate) struct LineSplitter {
    buf: Vec<u8>,
    /// First byte of `buf` not yet emitted; always the start of a line unless skipping an oversized one.
    start: usize,
    /// End of the valid bytes in `buf`.
    end: usize,
    /// Stream offset of `buf[start]`.
    offset: u64,
    /// 1-based number of the next line to emit.
    next_line: u64,
    max_line_bytes: usize,
    oversized: Option<OversizedLine>,
}

impl LineSplitter {
    pub(crate) fn new(max_line_bytes: usize) -> Self {
        LineSplitter {
            // Allocated on the first read, so inputs that are not opened yet cost nothing.
            buf: Vec::new(),
            start: 0,
            end: 0,
            offset: 0,
            next_line: 1,
            max_line_bytes: max_line_bytes.clamp(1, MAX_LINE_LIMIT),
            oversized: None,
        }
    }

    /// Forgets buffered bytes and continues as if the stream were at `offset`, the start of line
    /// `next_line` (used after a seek, a rotation or a truncation).
    pub(crate) fn reset(&mut self, offset: u64, next_line: u64) {
        self.start = 0;
        self.end = 0;
        self.offset = offset;
        self.next_line = next_line.max(1);
        self.oversized = None;
    }

    /// Byte offset of the next line not yet emitted (what a checkpoint records).
    pub(crate) fn next_line_offset(&self) -> u64 {
        match &self.oversized {
            Some(o) => o.offset,
            None => self.offset,
        }
    }

    /// Number of lines emitted so far (including lines skipped by a resume).
    pub(crate) fn lines_emitted(&self) -> u64 {
        self.next_line - 1
    }

    /// Bytes consumed from the stream so far, emitted or buffered.
    pub(crate) fn read_offset(&self) -> u64 {
        self.offset + (self.end - self.start) as u64
    }

    /// Appends every complete buffered line to `batch` under source index `source`. Returns true when
    /// the batch is full (lines may remain buffered), false when more bytes are needed.
    pub(crate) fn drain(&mut self, batch: &mut LineBatch, source: u32, limits: &Limits) -> bool {
        loop {
            if limits.full(batch) {
                return true;
            }
            let avail = &self.buf[self.start..self.end];
            if let Some(over) = self.oversized.as_mut() {
                match memchr(b'\n', avail) {
                    Some(i) => {
                        let last = if i > 0 { avail[i - 1] } else { over.last_byte };
                        let mut len = over.len + i as u64;
                        if last == b'\r' {
                            len -= 1;
                        }
                        batch.push_raw(source, &over.prefix, over.line, over.offset, Some(len));
                        self.start += i + 1;
                        self.offset += (i + 1) as u64;
                        self.next_line += 1;
                        self.oversized = None;
                        continue;
                    }
                    None => {
                        if let Some(&last) = avail.last() {
                            over.len += avail.len() as u64;
                            over.last_byte = last;
                            self.offset += avail.len() as u64;
                            self.start = self.end;
                        }
                        return false;
                    }
                }
            }
            match memchr(b'\n', avail) {
                Some(i) => {
                    let line = strip_cr(&avail[..i]);
                    if line.len() > self.max_line_bytes {
                        let keep = TRUNCATED_PREFIX.min(self.max_line_bytes);
                        let len = Some(line.len() as u64);
                        batch.push_raw(source, &line[..keep], self.next_line, self.offset, len);
                    } else {
                        batch.push_raw(source, line, self.next_line, self.offset, None);
                    }
                    self.start += i + 1;
                    self.offset += (i + 1) as u64;
                    self.next_line += 1;
                }
                None => {
                    if avail.len() > self.max_line_bytes {
                        // Keep a prefix, drop the rest: memory stays bounded whatever the line length.
                        let keep = TRUNCATED_PREFIX.min(self.max_line_bytes);
                        self.oversized = Some(OversizedLine {
                            line: self.next_line,
                            offset: self.offset,
                            prefix: avail[..keep].to_vec(),
                            len: avail.len() as u64,
                            last_byte: avail[avail.len() - 1],
                        });
                        self.offset += avail.len() as u64;
                        self.start = self.end;
                    }
                    return false;
                }
            }
        }
    }

    /// Makes room and calls `read` once with the free part of the buffer.
    pub(crate) fn fill<F>(&mut self, read: F) -> io::Result<Fill>
    where
        F: FnOnce(&mut [u8]) -> io::Result<Fill>,
    {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.len() - self.end < READ_CHUNK {
            if self.start > 0 {
                // Move the partial line to the front; it is at most `max_line_bytes` long.
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < READ_CHUNK {
                self.buf.resize(self.end + READ_CHUNK, 0);
            }
        }
        let got = read(&mut self.buf[self.end..])?;
        if let Fill::Bytes(n) = got {
            self.end += n.min(self.buf.len() - self.end);
        }
        Ok(got)
    }

    /// At the real end of a stream: emits the held-back partial line (or the oversized line being
    /// skipped) as a line. The caller makes sure the batch has room for one more line.
    pub(crate) fn finish(&mut self, batch: &mut LineBatch, source: u32) {
        if let Some(over) = self.oversized.take() {
            let len = over.len - u64::from(over.last_byte == b'\r');
            batch.push_raw(source, &over.prefix, over.line, over.offset, Some(len));
            self.next_line += 1;
            return;
        }
        if self.start == self.end {
            return;
        }
        let raw_len = self.end - self.start;
        let line = strip_cr(&self.buf[self.start..self.end]);
        if line.len() > self.max_line_bytes {
            let keep = TRUNCATED_PREFIX.min(self.max_line_bytes);
            let len = Some(line.len() as u64);
            batch.push_raw(source, &line[..keep], self.next_line, self.offset, len);
        } else {
            batch.push_raw(source, line, self.next_line, self.offset, None);
        }
        self.start = self.end;
        self.offset += raw_len as u64;
        self.next_line += 1;
    }
}

#[inline]
fn strip_cr(line: &[u8]) -> &[u8] {
    match line.split_last() {
        Some((b'\r', rest)) => rest,
        _ => line,
    }
}

/// Reads from `reader` into `buf`, retrying on `Interrupted`; 0 bytes means end of stream.
pub(crate) fn read_some<R: io::Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<Fill> {
    loop {
        match reader.read(buf) {
            Ok(0) => return Ok(Fill::Eof),
            Ok(n) => return Ok(Fill::Bytes(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// Splits `input` read in `chunk`-sized pieces, flushing the partial line at the end.
    fn split_all(input: &[u8], chunk: usize, max_line: usize) -> LineBatch {
        let mut splitter = LineSplitter::new(max_line);
        let mut reader = Cursor::new(input);
        let mut batch = LineBatch::new();
        let limits = Limits::new(usize::MAX, usize::MAX);
        loop {
            assert!(!splitter.drain(&mut batch, 0, &limits));
            let got = splitter
                .fill(|buf| {
                    let n = buf.len().min(chunk);
                    read_some(&mut reader, &mut buf[..n])
                })
                .unwrap();
            if got == Fill::Eof {
                splitter.finish(&mut batch, 0);
                return batch;
            }
        }
    }

    #[test]
    fn positions_and_crlf() {
        let b = split_all(b"ab\r\ncde\n\nf", 3, 100);
        let lines: Vec<_> = (0..b.len()).map(|i| b.line(i).to_vec()).collect();
        assert_eq!(
            lines,
            vec![b"ab".to_vec(), b"cde".to_vec(), b"".to_vec(), b"f".to_vec()]
        );
        let pos: Vec<_> = b.lines.iter().map(|l| (l.line, l.offset)).collect();
        assert_eq!(pos, vec![(1, 0), (2, 4), (3, 8), (4, 9)]);
    }

    #[test]
    fn oversized_line_is_truncated_and_following_lines_intact() {
        let mut input = b"short\n".to_vec();
        input.extend_from_slice(&[b'x'; 10_000]);
        input.extend_from_slice(b"\r\nnext\n");
        for chunk in [7, 100, 4096, 1 << 20] {
            let b = split_all(&input, chunk, 1000);
            assert_eq!(b.len(), 3, "chunk {chunk}");
            assert_eq!(b.line(0), b"short");
            assert_eq!(b.lines[1].truncated_len, Some(10_000));
            assert_eq!(b.line(1).len(), 1000.min(TRUNCATED_PREFIX));
            assert_eq!((b.lines[1].line, b.lines[1].offset), (2, 6));
            assert_eq!(b.line(2), b"next");
            assert_eq!((b.lines[2].line, b.lines[2].offset), (3, 10_008));
            assert_eq!(b.lines[2].truncated_len, None);
        }
    }

    #[test]
    fn oversized_partial_line_at_eof() {
        let input = vec![b'y'; 5000];
        let b = split_all(&input, 512, 100);
        assert_eq!(b.len(), 1);
        assert_eq!(b.lines[0].truncated_len, Some(5000));
        assert_eq!(b.line(0).len(), 100);
    }

    #[test]
    fn batch_limit_keeps_remaining_lines() {
        let mut splitter = LineSplitter::new(100);
        let mut reader = Cursor::new(b"a\nb\nc\n".to_vec());
        splitter.fill(|buf| read_some(&mut reader, buf)).unwrap();
        let mut batch = LineBatch::new();
        assert!(splitter.drain(&mut batch, 0, &Limits::new(2, usize::MAX)));
        assert_eq!(batch.len(), 2);
        assert_eq!(splitter.next_line_offset(), 4);
        assert_eq!(splitter.lines_emitted(), 2);
        batch.clear();
        assert!(!splitter.drain(&mut batch, 0, &Limits::new(2, usize::MAX)));
        assert_eq!(batch.line(0), b"c");
        assert_eq!(batch.lines[0].line, 3);
    }
}
