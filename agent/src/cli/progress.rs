//! Progress lines for long transfers (`cairn snapshot save|restore`): nothing for transfers
//! that finish within a second, then one line on stderr per second with the amount so far.
//!
//! Lines rather than a redrawn bar: the output stays readable when stderr is a log file or a
//! CI console, and stdout is untouched for scripts.

use std::time::{Duration, Instant};

/// Reports how much of a transfer is done.
pub(crate) struct Progress {
    /// What is being done, for the line ("received", "sent").
    verb: &'static str,
    /// The size when known (`Content-Length`): lines then show a percentage.
    total: Option<u64>,
    done: u64,
    started: Instant,
    last: Instant,
    /// Whether any line was printed, so that a quick transfer prints nothing at all.
    shown: bool,
}

const EVERY: Duration = Duration::from_secs(1);

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl Progress {
    /// A transfer of `total` bytes when known; `verb` says what is done ("received", "sent").
    pub(crate) fn new(verb: &'static str, total: Option<u64>) -> Progress {
        let now = Instant::now();
        Progress {
            verb,
            total,
            done: 0,
            started: now,
            last: now,
            shown: false,
        }
    }

    /// Counts `n` more bytes, printing a line when a second has passed since the last one.
    pub(crate) fn add(&mut self, n: usize) {
        self.done += n as u64;
        if self.last.elapsed() >= EVERY {
            self.last = Instant::now();
            self.shown = true;
            eprintln!("{}", self.line());
        }
    }

    /// Whether the known total has been reached.
    pub(crate) fn is_complete(&self) -> bool {
        self.total.is_some_and(|t| self.done >= t)
    }

    /// Prints the final line if progress was shown at all.
    pub(crate) fn finish(&self) {
        if self.shown {
            eprintln!("{}", self.line());
        }
    }

    fn line(&self) -> String {
        // Never 0, so the rate of a zero-length moment is not a division by zero.
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = mib(self.done) / secs;
        match self.total {
            Some(t) if t > 0 => format!(
                "{:>3}%  {:.1} of {:.1} MiB {} ({rate:.1} MiB/s)",
                self.done * 100 / t,
                mib(self.done),
                mib(t),
                self.verb
            ),
            _ => format!("{:.1} MiB {} ({rate:.1} MiB/s)", mib(self.done), self.verb),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A known total gives a percentage; an unknown one only the amount.
    #[test]
    fn lines_show_percent_when_the_total_is_known() {
        let mut p = Progress::new("sent", Some(4 * 1024 * 1024));
        p.add(1024 * 1024);
        let l = p.line();
        assert!(l.starts_with(" 25%  1.0 of 4.0 MiB sent"), "{l}");
        let q = Progress::new("received", None);
        assert!(q.line().starts_with("0.0 MiB received"), "{}", q.line());
    }

    /// Nothing is printed within the first second.
    #[test]
    fn quick_transfers_print_nothing() {
        let mut p = Progress::new("sent", None);
        p.add(10);
        assert!(!p.shown);
    }
}
