//! Progress for long jobs: an indicatif bar with rate and ETA on a terminal,
//! plain periodic lines (every 10 s) when stderr is a file or a pipe.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    label: String,
    unit: String,
    total: u64,
    done: u64,
    start: Instant,
    last_line: Instant,
    bar: Option<ProgressBar>,
    /// A figure shown after the count (e.g. the last step's loss).
    note: String,
}

impl Progress {
    pub fn new(label: &str, unit: &str, total: u64) -> Self {
        let bar = (std::io::stderr().is_terminal() && !crate::util::say::is_quiet()).then(|| {
            let bar = ProgressBar::new(total);
            let template = format!("{label} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}} elapsed {{elapsed}} ETA {{eta}} {{msg}}");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Progress {
            label: label.to_string(),
            unit: unit.to_string(),
            total,
            done: 0,
            start: Instant::now(),
            last_line: Instant::now(),
            bar,
            note: String::new(),
        }
    }

    /// Progress of work whose total is not known ahead: a spinner with the
    /// count and rate on a terminal, plain lines every 10 s otherwise.
    pub fn counter(label: &str, unit: &str) -> Self {
        let bar = (std::io::stderr().is_terminal() && !crate::util::say::is_quiet()).then(|| {
            let bar = ProgressBar::new_spinner();
            let template =
                format!("{label} {{spinner}} {{pos}} {unit} {{per_sec}} elapsed {{elapsed}}");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style);
            }
            bar
        });
        Progress {
            label: label.to_string(),
            unit: unit.to_string(),
            total: 0,
            done: 0,
            start: Instant::now(),
            last_line: Instant::now(),
            bar,
            note: String::new(),
        }
    }

    /// Sets the figure shown with the count from now on.
    pub fn note(&mut self, note: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(note.clone());
        }
        self.note = note;
    }

    pub fn inc(&mut self, n: u64) {
        self.done += n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
        } else if self.last_line.elapsed() >= Duration::from_secs(10) {
            self.last_line = Instant::now();
            self.line();
        }
    }

    fn line(&self) {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let rate = self.done as f64 / secs;
        if self.total == 0 {
            crate::say!(
                "{}: {} {}, {} {}/s, elapsed {}",
                self.label,
                self.done,
                self.unit,
                fmt_rate(rate),
                self.unit,
                fmt_secs(secs)
            );
            return;
        }
        let eta = if rate > 0.0 && self.total > self.done {
            (self.total - self.done) as f64 / rate
        } else {
            0.0
        };
        let pct = if self.total > 0 {
            100.0 * self.done as f64 / self.total as f64
        } else {
            100.0
        };
        let note = if self.note.is_empty() {
            String::new()
        } else {
            format!(", {}", self.note)
        };
        crate::say!(
            "{}: {}/{} {} ({pct:.1}%), {} {}/s, elapsed {}, ETA {}{note}",
            self.label,
            self.done,
            self.total,
            self.unit,
            fmt_rate(rate),
            self.unit,
            fmt_secs(secs),
            fmt_secs(eta)
        );
    }

    pub fn finish(self) {
        match &self.bar {
            Some(bar) => bar.finish(),
            None => self.line(),
        }
    }
}

/// Three significant digits up to 1000 (1.31, 13.1, 131), whole numbers above.
pub fn fmt_rate(r: f64) -> String {
    let decimals = if r >= 100.0 {
        0
    } else if r >= 10.0 {
        1
    } else {
        2
    };
    format!("{r:.decimals$}")
}

pub fn fmt_secs(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_keep_three_significant_digits() {
        assert_eq!(fmt_rate(1.3), "1.30");
        assert_eq!(fmt_rate(0.456), "0.46");
        assert_eq!(fmt_rate(13.14), "13.1");
        assert_eq!(fmt_rate(4821.7), "4822");
    }
}
