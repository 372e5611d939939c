//! Build progress: an indicatif line per step on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_build::solver::Progress;

use crate::cli::ProgressMode;

/// The CLI's progress sink.
pub struct Reporter {
    mode: ProgressMode,
    bars: Option<MultiProgress>,
    counter: Mutex<usize>,
}

impl Reporter {
    /// Chooses bars or lines from the mode and whether stderr is a terminal.
    pub fn new(mode: ProgressMode) -> Reporter {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Tty,
            ProgressMode::Auto => ProgressMode::Plain,
            m => m,
        };
        let bars = (mode == ProgressMode::Tty).then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Reporter {
            mode,
            bars,
            counter: Mutex::new(0),
        }
    }

    /// A status line outside of steps (e.g. the final digest).
    pub fn info(&self, msg: &str) {
        match (&self.bars, self.mode) {
            (_, ProgressMode::Quiet) => {}
            (Some(b), _) => {
                let _ = b.println(msg);
            }
            (None, _) => eprintln!("{msg}"),
        }
    }
}

impl Progress for Reporter {
    fn step_done(&self, stage: &str, index: usize, total: usize, created_by: &str, cached: bool, seconds: f64) {
        let n = {
            let mut c = self.counter.lock().unwrap();
            *c += 1;
            *c
        };
        let status = if cached {
            "CACHED".to_string()
        } else {
            format!("{seconds:.2}s")
        };
        let text: String = created_by.chars().take(100).collect();
        match (&self.bars, self.mode) {
            (_, ProgressMode::Quiet) => {}
            (Some(mp), _) => {
                let bar = mp.add(ProgressBar::new(total as u64));
                bar.set_style(
                    ProgressStyle::with_template("{prefix:.bold} {bar:10.cyan/blue} {msg}").expect("valid template"),
                );
                bar.set_prefix(format!("#{n} [{stage} {index}/{total}]"));
                bar.set_position(index as u64);
                bar.finish_with_message(format!("{text}  {status}"));
            }
            (None, _) => eprintln!("#{n} [{stage} {index}/{total}] {text}  {status}"),
        }
    }

    fn output(&self, stage: &str, line: &str) {
        match (&self.bars, self.mode) {
            (_, ProgressMode::Quiet) => {}
            (Some(b), _) => {
                let _ = b.println(format!("  [{stage}] {line}"));
            }
            (None, _) => eprintln!("  [{stage}] {line}"),
        }
    }

    fn warn(&self, message: &str) {
        if self.mode != ProgressMode::Quiet {
            eprintln!("warning: {message}");
        }
    }
}
