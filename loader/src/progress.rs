//! A progress line for long work on standard error: rows done, rows per second, time left. Drawn in place at most
//! twice a second and only when standard error is a terminal (or when forced), so logs and tests stay clean.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    start: Instant,
    last: Instant,
    enabled: bool,
}

impl Progress {
    /// A progress line for `total` rows; `quiet` silences it.
    pub fn new(label: &str, total: u64, quiet: bool) -> Progress {
        let now = Instant::now();
        Progress {
            label: label.to_string(),
            total,
            done: 0,
            start: now,
            last: now,
            enabled: !quiet && std::io::stderr().is_terminal(),
        }
    }

    pub fn add(&mut self, rows: u64) {
        self.done += rows;
        if self.enabled && self.last.elapsed() >= Duration::from_millis(500) {
            self.last = Instant::now();
            self.draw(false);
        }
    }

    /// The line as it would be drawn now.
    pub fn line(&self) -> String {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let rate = self.done as f64 / secs;
        let left = if rate > 0.0 {
            (self.total.saturating_sub(self.done)) as f64 / rate
        } else {
            0.0
        };
        format!(
            "{}: {:.1} M / {:.1} M rows, {:.2} M rows/s, {:.0} s left",
            self.label,
            self.done as f64 / 1e6,
            self.total as f64 / 1e6,
            rate / 1e6,
            left
        )
    }

    fn draw(&self, last: bool) {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{:<78}", self.line());
        if last {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }

    pub fn finish(&mut self) {
        if self.enabled {
            self.draw(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_reports_counts() {
        let mut p = Progress::new("pass 1", 2_000_000, true);
        p.add(500_000);
        assert!(
            p.line().starts_with("pass 1: 0.5 M / 2.0 M rows"),
            "{}",
            p.line()
        );
    }
}
