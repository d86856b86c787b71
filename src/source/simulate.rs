//! The embedded demo source (`[source] kind = "simulate"`): a simulated Calico cluster with the
//! default attack mix, rendered window by window as Calico flow-log lines, so `flowwarden run` shows
//! detection and dry-run quarantine with no broker and no files.

use crate::simulate::{SimConfig, Simulator};
use crate::source::{LineBatch, LineSource, Poll, SourceCheckpoint};
use std::sync::Arc;

/// Lines from the simulator, one flush window at a time.
pub struct SimulatedSource {
    sim: Simulator,
    name: Arc<str>,
    buf: Vec<u8>,
    pos: usize,
    line: u64,
    offset: u64,
    done: bool,
}

impl SimulatedSource {
    /// A simulated cluster of `duration_s` seconds with the default attacks.
    pub fn new(seed: u64, duration_s: u64) -> Self {
        let cfg = SimConfig {
            seed,
            ..SimConfig::with_default_attacks(duration_s)
        };
        SimulatedSource {
            sim: Simulator::new(cfg),
            name: Arc::from("simulated-cluster"),
            buf: Vec::new(),
            pos: 0,
            line: 0,
            offset: 0,
            done: false,
        }
    }
}

impl LineSource for SimulatedSource {
    fn poll_batch(
        &mut self,
        batch: &mut LineBatch,
        max_lines: usize,
        _max_bytes: usize,
    ) -> std::io::Result<Poll> {
        while batch.len() < max_lines {
            if self.pos >= self.buf.len() {
                if self.done {
                    break;
                }
                self.buf.clear();
                self.pos = 0;
                if !self.sim.next_window(&mut self.buf, None) {
                    self.done = true;
                    break;
                }
                continue;
            }
            let rest = &self.buf[self.pos..];
            let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
            self.line += 1;
            batch.push_line(&self.name, &rest[..end], self.line, self.offset);
            self.offset += end as u64 + 1;
            self.pos += end + 1;
        }
        Ok(if batch.is_empty() && self.done {
            Poll::End
        } else {
            Poll::Data
        })
    }

    fn checkpoint(&self) -> SourceCheckpoint {
        SourceCheckpoint::default()
    }
}
