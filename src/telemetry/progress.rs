//! Progress bars for the batch commands (`replay`, `bench`, `train`, `generate`): records per second
//! and, when the input size is known, a bar with an ETA. Drawn on stderr only when stderr is a
//! terminal; piped or redirected runs print nothing, so logs and outputs stay clean.

use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often the records/s message is recomputed (the bar itself is rate-limited by indicatif).
const MESSAGE_EVERY: Duration = Duration::from_millis(200);

/// A progress display; every method is a no-op when hidden.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    records: u64,
    started: Instant,
    last_message: Instant,
    /// Bytes drive the bar when the total is known; records otherwise.
    by_bytes: bool,
}

/// A progress display for `what` (`"replay"`, `"generate"`...). `total_bytes`: the input size when
/// known (plain files), for a bar with an ETA; `None` draws a spinner with the rate.
pub fn progress(total_bytes: Option<u64>, what: &str) -> Progress {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr_with_hz(8)
    } else {
        ProgressDrawTarget::hidden()
    };
    Progress::with_target(total_bytes, what, target)
}

impl Progress {
    fn with_target(total_bytes: Option<u64>, what: &str, target: ProgressDrawTarget) -> Self {
        let bar = match total_bytes {
            Some(total) => {
                let bar = ProgressBar::with_draw_target(Some(total), target);
                if let Ok(style) = ProgressStyle::with_template(
                    "{prefix:.bold} [{elapsed_precise}] {wide_bar:.cyan/blue} {bytes}/{total_bytes} {msg} ETA {eta}",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar
            }
            None => {
                let bar = ProgressBar::with_draw_target(None, target);
                if let Ok(style) = ProgressStyle::with_template(
                    "{spinner} {prefix:.bold} [{elapsed_precise}] {msg}",
                ) {
                    bar.set_style(style);
                }
                bar
            }
        };
        bar.set_prefix(what.to_owned());
        let now = Instant::now();
        Progress {
            bar,
            records: 0,
            started: now,
            last_message: now,
            by_bytes: total_bytes.is_some(),
        }
    }

    /// Whether nothing is drawn.
    pub fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }

    /// Adds processed records and input bytes.
    pub fn inc(&mut self, records: u64, bytes: u64) {
        self.records += records;
        if self.bar.is_hidden() {
            return;
        }
        self.bar.inc(if self.by_bytes { bytes } else { records });
        if self.last_message.elapsed() >= MESSAGE_EVERY {
            self.last_message = Instant::now();
            self.bar.set_message(self.rate_message());
        }
    }

    /// Records counted so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    fn rate_message(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            self.records as f64 / secs
        } else {
            0.0
        };
        format!(
            "{} records, {}/s",
            HumanCount(self.records),
            HumanCount(rate as u64)
        )
    }

    /// Clears the bar (the command prints its own summary afterwards).
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_progress_still_counts() {
        let mut p = Progress::with_target(Some(100), "test", ProgressDrawTarget::hidden());
        assert!(p.is_hidden());
        p.inc(3, 50);
        p.inc(2, 50);
        assert_eq!(p.records(), 5);
        assert!(p.rate_message().starts_with("5 records"));
        p.finish();
    }
}
