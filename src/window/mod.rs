//! Event-time windows: window length (fixed or `auto`), the watermark that closes windows, and where a
//! record goes (its own window, or the next open one when it is late).
//!
//! This module owns time. It must not read wall clocks: replaying a file, consuming Kafka live, or
//! running on 1 or 16 threads gives the same windows for the same input (invariant 1). The watermark is
//! `max(start_time seen) - allowed_lateness`: a record's `start_time` is when its flush window began, so
//! once records of a later window arrive (plus the lateness allowance for nodes flushing out of step)
//! the earlier window is complete.
//!
//! Broken clocks must not steer the watermark. A record dated more than `max_future_skew` after the
//! newest start time seen is rejected (dead-lettered with its reason and counted as a *future*
//! record) without moving the watermark; only when most recent records agree on the jump (the
//! whole input moved, e.g. after a gap) does the clock follow. A record more than `stale_after`
//! older than the newest start time is rejected as *stale* (dead-lettered, counted) rather than
//! merged into a window it does not belong to; between `allowed_lateness` and `stale_after` it is
//! *late*: counted and folded into the next open window.

pub mod aggregate;
pub mod table;

pub use aggregate::{Side, WindowAggregate};
pub use table::WindowTable;

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
    /// A record starting more than this after the newest start time seen is rejected as future
    /// (dead-lettered, counted) and does not move the watermark; `0s` disables the check.
    pub max_future_skew: String,
    /// A record starting more than this before the newest start time seen is rejected as stale
    /// (dead-lettered, counted) instead of folded into the next open window; `0s` disables it.
    pub stale_after: String,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            length: "auto".into(),
            allowed_lateness: "30s".into(),
            auto_sample: 1000,
            max_future_skew: "10m".into(),
            stale_after: "1h".into(),
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

    /// Checks `max_future_skew` and `stale_after`; errors name the key.
    pub fn validate_clock(&self) -> Result<(), (String, String)> {
        parse_duration_s(&self.max_future_skew)
            .map_err(|m| ("window.max_future_skew".to_string(), m))?;
        let stale = parse_duration_s(&self.stale_after)
            .map_err(|m| ("window.stale_after".to_string(), m))?;
        let lateness = self.lateness_s().unwrap_or(0);
        if stale != 0 && stale <= lateness {
            return Err((
                "window.stale_after".into(),
                format!(
                    "must be longer than allowed_lateness ({})",
                    self.allowed_lateness
                ),
            ));
        }
        Ok(())
    }

    /// The clock bounds in seconds: (max future skew, stale after); 0 = unchecked.
    pub fn clock_bounds_s(&self) -> (i64, i64) {
        (
            parse_duration_s(&self.max_future_skew).unwrap_or(600),
            parse_duration_s(&self.stale_after).unwrap_or(3600),
        )
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
    /// Largest accepted lead over `max_start` (0: unchecked).
    #[serde(default)]
    max_future_skew: i64,
    /// Largest accepted lag behind `max_start` (0: unchecked).
    #[serde(default)]
    stale_after: i64,
    /// Decayed count of recent future records: at `FUTURE_AGREE` the jump is believed.
    #[serde(default)]
    future_weight: f64,
    /// A forward jump was just believed: the caller re-assigns the records it held, unchecked,
    /// then calls [`WindowClock::jump_done`].
    #[serde(default)]
    jumping: bool,
}

/// Records over which the share of future records is judged (decay 1 - 1/N per record).
const FUTURE_MEMORY: f64 = 256.0;
/// The clock follows a forward jump once the decayed count of future records reaches this: about
/// 350 future records in a row, or three quarters of recent ones (one broken node among several
/// never gets there).
const FUTURE_AGREE: f64 = FUTURE_MEMORY * 0.75;

/// Why a record was not given a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Starts this many seconds after the newest start time seen, beyond `max_future_skew`.
    Future(i64),
    /// Starts this many seconds before the newest start time seen, beyond `stale_after`.
    Stale(i64),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::Future(s) => write!(
                f,
                "start_time is {s}s after the newest record seen (beyond window.max_future_skew): clock skew, not merged"
            ),
            Rejection::Stale(s) => write!(
                f,
                "start_time is {s}s before the newest record seen (beyond window.stale_after): too old to merge"
            ),
        }
    }
}

/// Where a record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    /// Window index (`start_time / len`, or the next open window when late).
    pub window: i64,
    /// The record's own window had already closed.
    pub late: bool,
    /// Set when the record gets no window at all (held or dead-lettered by the caller).
    pub rejected: Option<Rejection>,
    /// With a `Future` rejection: most recent records agree, the input really moved forward. The
    /// caller re-assigns the future records it held and this one, in input order.
    pub jump: bool,
}

impl WindowClock {
    /// A clock for windows of `len` seconds accepting records up to `lateness` seconds late.
    pub fn new(len: i64, lateness: i64) -> Self {
        WindowClock {
            len: len.max(1),
            lateness: lateness.max(0),
            max_start: None,
            frontier: None,
            max_future_skew: 0,
            stale_after: 0,
            future_weight: 0.0,
            jumping: false,
        }
    }

    /// Believes a forward jump without waiting for agreement (the end of a finite input, where
    /// nothing can follow); end it with [`WindowClock::jump_done`].
    pub fn begin_jump(&mut self) {
        self.jumping = true;
        self.future_weight = 0.0;
    }

    /// Ends a believed forward jump (see [`Assignment::jump`]).
    pub fn jump_done(&mut self) {
        self.jumping = false;
    }

    /// The same clock rejecting records more than `max_future_skew` seconds ahead of or
    /// `stale_after` seconds behind the newest start time (0: unchecked).
    pub fn with_bounds(mut self, max_future_skew: i64, stale_after: i64) -> Self {
        self.max_future_skew = max_future_skew.max(0);
        self.stale_after = stale_after.max(0);
        self
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
        if let Some(m) = self.max_start {
            let ahead = start_time.saturating_sub(m);
            if self.max_future_skew > 0 && ahead > self.max_future_skew && !self.jumping {
                self.future_weight = self.future_weight * (1.0 - 1.0 / FUTURE_MEMORY) + 1.0;
                // At `FUTURE_AGREE` most recent records agree: the input really moved forward.
                let jump = self.future_weight >= FUTURE_AGREE;
                if jump {
                    self.future_weight = 0.0;
                    self.jumping = true;
                }
                return Assignment {
                    window: self.frontier.unwrap_or(0),
                    late: false,
                    rejected: Some(Rejection::Future(ahead)),
                    jump,
                };
            } else if !self.jumping {
                self.future_weight *= 1.0 - 1.0 / FUTURE_MEMORY;
            }
            let behind = m.saturating_sub(start_time);
            if self.stale_after > 0 && behind > self.stale_after {
                return Assignment {
                    window: self.frontier.unwrap_or(0),
                    late: false,
                    rejected: Some(Rejection::Stale(behind)),
                    jump: false,
                };
            }
        }
        let own = start_time.div_euclid(self.len);
        let a = match self.frontier {
            Some(f) if own < f => Assignment {
                window: f,
                late: true,
                rejected: None,
                jump: false,
            },
            _ => Assignment {
                window: own,
                late: false,
                rejected: None,
                jump: false,
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
                late: false,
                rejected: None,
                jump: false,
            }
        );
        assert_eq!(
            c.assign(15),
            Assignment {
                window: 1,
                late: false,
                rejected: None,
                jump: false,
            }
        );
        // Window 0 closed when a record of window 1 arrived with no lateness allowed.
        assert_eq!(
            c.assign(3),
            Assignment {
                window: 1,
                late: true,
                rejected: None,
                jump: false,
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
                late: false,
                rejected: None,
                jump: false,
            }
        );
        c.assign(46);
        assert_eq!(
            c.assign(5),
            Assignment {
                window: 1,
                late: true,
                rejected: None,
                jump: false,
            }
        );
    }

    #[test]
    fn future_records_do_not_move_the_watermark_until_the_input_agrees() {
        let mut c = WindowClock::new(60, 30).with_bounds(600, 3600);
        c.assign(10_000);
        let wm = c.watermark();
        // A node with a clock a year ahead, among normal records.
        for i in 0..1000 {
            let a = c.assign(10_000 + 365 * 86_400);
            assert_eq!(
                a.rejected,
                Some(Rejection::Future(365 * 86_400)),
                "record {i}"
            );
            assert!(c.assign(10_000 - i % 20).rejected.is_none());
        }
        assert_eq!(c.watermark(), wm, "the watermark stayed");
        // Everyone moved forward (a gap in the input): the clock follows after a few hundred.
        let mut accepted_at = None;
        for i in 0..1000 {
            let a = c.assign(200_000 + i);
            assert!(a.rejected.is_some(), "held until the jump is believed");
            if a.jump {
                accepted_at = Some(i);
                break;
            }
        }
        let at = accepted_at.expect("the jump is believed");
        assert!((100..400).contains(&at), "{at}");
        // The caller re-assigns what it held, in input order: now accepted.
        for i in 0..=at {
            assert!(c.assign(200_000 + i).rejected.is_none());
        }
        c.jump_done();
        assert_eq!(c.watermark(), Some(200_000 + at - 30));
        assert!(c.assign(200_000 + at + 1).rejected.is_none());
    }

    #[test]
    fn stale_records_are_rejected_and_late_ones_folded() {
        let mut c = WindowClock::new(60, 30).with_bounds(600, 3600);
        c.assign(100_000);
        let late = c.assign(100_000 - 600);
        assert!(late.late && late.rejected.is_none());
        assert_eq!(
            c.assign(100_000 - 7200).rejected,
            Some(Rejection::Stale(7200))
        );
        assert!(WindowConfig {
            stale_after: "10s".into(),
            ..WindowConfig::default()
        }
        .validate_clock()
        .is_err());
    }

    #[test]
    fn auto_length_is_the_median_span() {
        assert_eq!(auto_length(&mut [15, 15, 300, 15]), 15);
        assert_eq!(auto_length(&mut []), 60);
        assert_eq!(auto_length(&mut [0, 0]), 60);
    }
}
