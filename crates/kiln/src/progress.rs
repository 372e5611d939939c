//! What a person sees while kiln works. [`Reporter`] renders the build's step events: live
//! bars on a terminal (`tty`), BuildKit's plain lines otherwise (`plain`), nothing when
//! quiet. [`transfer::Transfers`] renders blob transfers of pull, push and copy, and
//! [`archive`] the archives of load and save.

pub mod archive;
mod build_plain;
mod build_tty;
pub mod transfer;

use indicatif::ProgressDrawTarget;
use kiln_build::solver::Progress;

use crate::cli::ProgressMode;

/// How many redraws a second bars may take: often enough to look live, rarely enough that
/// drawing never slows the work (BuildKit draws at most every 100 ms too).
const REDRAWS_PER_SECOND: u8 = 10;

/// Resolves `auto`: bars when stderr is a terminal, plain lines otherwise.
pub fn resolve(mode: ProgressMode) -> ProgressMode {
    use std::io::IsTerminal;
    match mode {
        ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Tty,
        ProgressMode::Auto => ProgressMode::Plain,
        m => m,
    }
}

/// Where bars are drawn: stderr, throttled, and drawn even when stderr is not a terminal,
/// since `--progress tty` asks for bars wherever the output goes (a pipe, `script`, a log).
fn draw_target() -> ProgressDrawTarget {
    ProgressDrawTarget::term_like_with_hz(Box::new(console::Term::stderr()), REDRAWS_PER_SECOND)
}

/// The terminal's width in columns (80 when stderr is not a terminal).
fn width() -> usize {
    usize::from(console::Term::stderr().size().1).max(20)
}

/// A line of a program's output made safe to draw: control characters (the escape
/// sequences or carriage returns a RUN step prints) are dropped and tabs become spaces, so
/// a step can neither move the cursor nor recolour the terminal.
fn sanitize(line: &str) -> String {
    line.chars()
        .filter_map(|c| match c {
            '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// `text` cut to `width` columns, with an ellipsis when cut.
fn fit(text: &str, width: usize) -> String {
    console::truncate_str(text, width, "…").into_owned()
}

/// The CLI's sink for build progress.
pub struct Reporter {
    inner: Inner,
}

enum Inner {
    Quiet,
    Plain(build_plain::Plain),
    Tty(build_tty::Tty),
}

impl Reporter {
    /// Chooses bars or lines from the mode and whether stderr is a terminal.
    pub fn new(mode: ProgressMode) -> Reporter {
        let inner = match resolve(mode) {
            ProgressMode::Quiet => Inner::Quiet,
            ProgressMode::Tty => Inner::Tty(build_tty::Tty::new()),
            _ => Inner::Plain(build_plain::Plain::default()),
        };
        Reporter { inner }
    }

    /// A status line outside of steps (e.g. the final digest).
    pub fn info(&self, msg: &str) {
        match &self.inner {
            Inner::Quiet => {}
            Inner::Plain(p) => p.line(msg),
            Inner::Tty(t) => t.line(msg),
        }
    }
}

impl Reporter {
    /// The build failed with `message`: plain progress ends each running step with
    /// `#N ERROR: …`; a terminal marks them ERROR when the display ends.
    pub fn failed(&self, message: &str) {
        if let Inner::Plain(p) = &self.inner {
            p.failed(message);
        }
    }
}

impl Progress for Reporter {
    fn step_started(&self, stage: &str, index: usize, total: usize, created_by: &str) {
        match &self.inner {
            Inner::Quiet => {}
            Inner::Plain(p) => p.started(stage, index, total, created_by),
            Inner::Tty(t) => t.started(stage, index, total, created_by),
        }
    }

    fn step_bytes(&self, stage: &str, bytes: u64) {
        match &self.inner {
            Inner::Quiet => {}
            Inner::Plain(p) => p.bytes(stage, bytes),
            Inner::Tty(t) => t.bytes(stage, bytes),
        }
    }

    fn step_done(&self, stage: &str, index: usize, total: usize, created_by: &str, cached: bool, seconds: f64) {
        match &self.inner {
            Inner::Quiet => {}
            Inner::Plain(p) => p.done(stage, (index, total, created_by), cached, seconds),
            Inner::Tty(t) => t.done(stage, (index, total, created_by), cached, seconds),
        }
    }

    fn output(&self, stage: &str, line: &str) {
        match &self.inner {
            Inner::Quiet => {}
            Inner::Plain(p) => p.output(stage, line),
            Inner::Tty(t) => t.output(stage, line),
        }
    }

    fn note(&self, message: &str) {
        self.info(message);
    }

    fn warn(&self, message: &str) {
        self.info(&format!("warning: {message}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_cannot_drive_the_terminal() {
        assert_eq!(sanitize("a\x1b[2Jb\rc\td"), "a[2Jbc d");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abc", 4), "abc");
    }
}
