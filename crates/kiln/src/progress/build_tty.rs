//! Build progress on a terminal: every running step is a live line with its elapsed time
//! (and bytes and rate while it writes a layer) and, for RUN, the last lines of its output
//! scrolling under it. A finished step leaves one line above the live area
//! (`#N [stage i/n] INSTR  1.2s` or `CACHED`) that is never erased.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressState, ProgressStyle};

/// How many output lines of a running step are shown.
const TAIL: usize = 6;

/// The terminal renderer.
pub(super) struct Tty {
    bars: MultiProgress,
    state: Mutex<State>,
    width: usize,
}

#[derive(Default)]
struct State {
    counter: usize,
    /// The running step of each stage.
    running: HashMap<String, Running>,
}

struct Running {
    header: String,
    text: String,
    bar: ProgressBar,
    tail: Arc<Mutex<VecDeque<String>>>,
    writing: bool,
}

/// A running step's look: spinner, `#N [stage i/n]`, the instruction, bytes and rate while
/// a layer is written, the elapsed time, then the output tail on the lines below.
fn style(tail: &Arc<Mutex<VecDeque<String>>>, writing: bool) -> ProgressStyle {
    let template = if writing {
        "{spinner:.cyan} {prefix:.bold} {wide_msg} {bytes} {binary_bytes_per_sec:.dim}  {secs}{tail}"
    } else {
        "{spinner:.cyan} {prefix:.bold} {wide_msg}  {secs}{tail}"
    };
    let tail = Arc::clone(tail);
    ProgressStyle::with_template(template)
        .expect("valid template")
        .with_key("secs", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.1}s", s.elapsed().as_secs_f64());
        })
        .with_key("tail", move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
            for line in tail.lock().unwrap().iter() {
                let _ = write!(w, "\n  │ {line}");
            }
        })
}

impl Tty {
    /// A renderer drawing on stderr.
    pub(super) fn new() -> Tty {
        Tty {
            bars: MultiProgress::with_draw_target(super::draw_target()),
            state: Mutex::default(),
            width: super::width(),
        }
    }

    /// A step began: a live line for it.
    pub(super) fn started(&self, stage: &str, index: usize, total: usize, created_by: &str) {
        let mut s = self.state.lock().unwrap();
        self.start(&mut s, stage, (index, total, created_by));
    }

    fn start(&self, s: &mut State, stage: &str, (index, total, created_by): (usize, usize, &str)) {
        s.counter += 1;
        let header = format!("#{} [{stage} {index}/{total}]", s.counter);
        let text = super::sanitize(created_by);
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL)));
        let bar = ProgressBar::no_length()
            .with_style(style(&tail, false))
            .with_prefix(header.clone())
            .with_message(text.clone());
        let bar = self.bars.add(bar);
        bar.enable_steady_tick(Duration::from_millis(100));
        let running = Running {
            header,
            text,
            bar,
            tail,
            writing: false,
        };
        s.running.insert(stage.to_string(), running);
    }

    /// The running step of `stage` wrote `bytes` more into its layer.
    pub(super) fn bytes(&self, stage: &str, bytes: u64) {
        let mut s = self.state.lock().unwrap();
        if let Some(r) = s.running.get_mut(stage) {
            if !r.writing {
                r.writing = true;
                r.bar.set_style(style(&r.tail, true));
            }
            r.bar.inc(bytes);
        }
    }

    /// One output line of the running step of `stage`: into its scrolling tail.
    pub(super) fn output(&self, stage: &str, line: &str) {
        let s = self.state.lock().unwrap();
        match s.running.get(stage) {
            Some(r) => {
                let mut tail = r.tail.lock().unwrap();
                if tail.len() == TAIL {
                    tail.pop_front();
                }
                tail.push_back(super::fit(&super::sanitize(line), self.width.saturating_sub(6)));
            }
            None => {
                drop(s);
                self.line(&super::sanitize(line));
            }
        }
    }

    /// The step of `stage` finished: its live line becomes a lasting one.
    pub(super) fn done(&self, stage: &str, at: (usize, usize, &str), cached: bool, seconds: f64) {
        let mut s = self.state.lock().unwrap();
        if !s.running.contains_key(stage) {
            self.start(&mut s, stage, at);
        }
        let r = s.running.remove(stage).expect("started above");
        drop(s);
        r.bar.finish_and_clear();
        self.bars.remove(&r.bar);
        let status = if cached {
            "CACHED".to_string()
        } else {
            format!("{seconds:.1}s")
        };
        let room = self.width.saturating_sub(r.header.len() + status.len() + 3);
        self.line(&format!("{} {}  {status}", r.header, super::fit(&r.text, room)));
    }

    /// A lasting line above the live ones.
    pub(super) fn line(&self, msg: &str) {
        if self.bars.println(msg).is_err() {
            eprintln!("{msg}");
        }
    }
}

impl Drop for Tty {
    /// Steps still running when the build ends failed: each stays on screen marked ERROR,
    /// with the last lines of its output, above the error kiln prints next.
    fn drop(&mut self) {
        let running: Vec<Running> = self.state.lock().unwrap().running.drain().map(|(_, r)| r).collect();
        for r in running {
            r.bar.finish_and_clear();
            self.bars.remove(&r.bar);
            let mut text = format!("{} {}  ERROR", r.header, r.text);
            for line in r.tail.lock().unwrap().iter() {
                text.push_str(&format!("\n  │ {line}"));
            }
            self.line(&text);
        }
    }
}
