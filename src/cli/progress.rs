//! Progress of long CLI work: an `indicatif` bar when stderr is a terminal, otherwise one
//! line every 5 seconds (logs of a container or CI stay readable).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    what: &'static str,
    total: Option<u64>,
    bar: Option<ProgressBar>,
    last_line: Mutex<Instant>,
    started: Instant,
}

const LINE_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    /// `total`: the amount when known (a bar with an ETA), else a counter with a rate.
    pub fn new(what: &'static str, total: Option<u64>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(n) => ProgressBar::new(n).with_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left) {msg}",
                    )
                    .expect("a valid template")
                    .progress_chars("=> "),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{prefix} {spinner} {pos} ({per_sec}) {msg}")
                        .expect("a valid template"),
                ),
            };
            bar.set_prefix(what);
            bar
        });
        Progress {
            what,
            total,
            bar,
            last_line: Mutex::new(Instant::now()),
            started: Instant::now(),
        }
    }

    pub fn set(&self, done: u64) {
        match &self.bar {
            Some(b) => b.set_position(done),
            None => {
                let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() >= LINE_EVERY {
                    *last = Instant::now();
                    let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
                    match self.total {
                        Some(n) => eprintln!("{}: {done}/{n} ({rate:.0}/s)", self.what),
                        None => eprintln!("{}: {done} ({rate:.0}/s)", self.what),
                    }
                }
            }
        }
    }

    pub fn message(&self, msg: &'static str) {
        match &self.bar {
            Some(b) => b.set_message(msg),
            None => eprintln!("{}: {msg}", self.what),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
