//! Event-time windows: window length (fixed or `auto`), the watermark that closes windows, and where a
//! record goes (its own window, or the next open one when it is late).
//!
//! This module owns time. It must not read wall clocks: replaying a file, consuming Kafka live, or
//! running on 1 or 16 threads gives the same windows for the same input (invariant 1). The watermark is
//! `max(start_time seen) - allowed_lateness`: a record's `start_time` is when its flush window began, so
//! once records of a later window arrive (plus the lateness allowance for nodes flushing out of step)
//! the earlier window is complete.

pub mod aggregate;

pub use aggregate::{Side, WindowAggregate};

use serde::{Deserialize, Serialize};

/// `[window]` configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// Window length: `auto` (median `end_time - start_time` of the first records) or a duration
    /// (`15s`, `5m`).
    pub length: String,
    /// How long after a window's end records for it are still accepted (`30s`); later ones are
    /// counted as late and folded into the next open window.
    pub allowed_lateness: String,
    /// How many leading records `auto` looks at.
    pub auto_sample: usize,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            length: "auto".into(),
            allowed_lateness: "30s".into(),
            auto_sample: 1000,
        }
    }
}

impl WindowConfig {
    /// Fixed length in seconds, or `None` for `auto`.
    pub fn fixed_length(&self) -> Result<Option<i64>, String> {
        if self.length == "auto" {
            return Ok(None);
        }
        let d = parse_duration_s(&self.length)?;
        if d <= 0 {
            return Err("must be at least 1s".into());
        }
        Ok(Some(d))
    }
    /// Allowed lateness in seconds.
    pub fn lateness_s(&self) -> Result<i64, String> {
        parse_duration_s(&self.allowed_lateness)
    }
}

/// Parses a humantime duration (`15s`, `5m`, `1h`) into whole seconds.
pub fn parse_duration_s(s: &str) -> Result<i64, String> {
    humantime::parse_duration(s.trim())
        .map(|d| d.as_secs() as i64)
        .map_err(|e| format!("{s:?} is not a duration like \"30s\" or \"5m\": {e}"))
}

/// Length chosen by `auto`: the median record span, at least 1 s; 60 s when spans are all 0.
pub fn auto_length(spans: &mut [i64]) -> i64 {
    if spans.is_empty() {
        return 60;
    }
    spans.sort_unstable();
    let m = spans[spans.len() / 2];
    if m <= 0 {
        60
    } else {
        m
    }
}

/// Assigns records to windows and tracks the watermark.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowClock {
    len: i64,
    lateness: i64,
    max_start: Option<i64>,
    /// Windows with an index below this are closed.
    frontier: Option<i64>,
}

/// Where a record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    /// Window index (`start_time / len`, or the next open window when late).
    pub window: i64,
    /// The record's own window had already closed.
    pub late: bool,
}

impl WindowClock {
    /// A clock for windows of `len` seconds accepting records up to `lateness` seconds late.
    pub fn new(len: i64, lateness: i64) -> Self {
        WindowClock {
            len: len.max(1),
            lateness: lateness.max(0),
            max_start: None,
            frontier: None,
        }
    }

    /// Window length in seconds.
    pub fn len(&self) -> i64 {
        self.len
    }

    /// Always false: a window has a positive length.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Start of window `w` (epoch s).
    pub fn start_of(&self, w: i64) -> i64 {
        w * self.len
    }

    /// Assigns a record by its start time and advances the watermark.
    #[inline]
    pub fn assign(&mut self, start_time: i64) -> Assignment {
        let own = start_time.div_euclid(self.len);
        let a = match self.frontier {
            Some(f) if own < f => Assignment {
                window: f,
                late: true,
            },
            _ => Assignment {
                window: own,
                late: false,
            },
        };
        if self.max_start.is_none_or(|m| start_time > m) {
            self.max_start = Some(start_time);
            let f = (start_time - self.lateness).div_euclid(self.len);
            if self.frontier.is_none_or(|old| f > old) {
                self.frontier = Some(f);
            }
        }
        a
    }

    /// Windows with an index below this may close.
    pub fn frontier(&self) -> Option<i64> {
        self.frontier
    }

    /// Watermark in epoch seconds.
    pub fn watermark(&self) -> Option<i64> {
        self.max_start.map(|m| m - self.lateness)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_records_go_to_the_next_open_window() {
        let mut c = WindowClock::new(15, 0);
        assert_eq!(
            c.assign(0),
            Assignment {
                window: 0,
                late: false
            }
        );
        assert_eq!(
            c.assign(15),
            Assignment {
                window: 1,
                late: false
            }
        );
        // Window 0 closed when a record of window 1 arrived with no lateness allowed.
        assert_eq!(
            c.assign(3),
            Assignment {
                window: 1,
                late: true
            }
        );
        assert_eq!(c.frontier(), Some(1));
    }

    #[test]
    fn lateness_keeps_windows_open() {
        let mut c = WindowClock::new(15, 30);
        c.assign(0);
        c.assign(30);
        assert_eq!(
            c.assign(5),
            Assignment {
                window: 0,
                late: false
            }
        );
        c.assign(46);
        assert_eq!(
            c.assign(5),
            Assignment {
                window: 1,
                late: true
            }
        );
    }

    #[test]
    fn auto_length_is_the_median_span() {
        assert_eq!(auto_length(&mut [15, 15, 300, 15]), 15);
        assert_eq!(auto_length(&mut []), 60);
        assert_eq!(auto_length(&mut [0, 0]), 60);
    }
}
