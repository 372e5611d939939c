//! Plain build progress, as BuildKit's `--progress plain`: a step's header when it starts,
//! then its output lines (`#N SECONDS LINE`), then `#N DONE 2.0s` or `#N CACHED`, a blank
//! line between steps. When steps of parallel stages interleave, the header is printed
//! again before the lines of a step other than the last one printed.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

/// The plain renderer.
#[derive(Default)]
pub(super) struct Plain {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    counter: usize,
    /// The running step of each stage.
    running: HashMap<String, Step>,
    /// The step whose line was printed last.
    last: Option<usize>,
    printed: bool,
}

struct Step {
    n: usize,
    header: String,
    started: Instant,
    bytes: u64,
}

impl State {
    fn start(&mut self, stage: &str, (index, total, created_by): (usize, usize, &str)) -> &mut Step {
        self.counter += 1;
        let n = self.counter;
        let text = super::sanitize(created_by);
        let step = Step {
            n,
            header: format!("#{n} [{stage} {index}/{total}] {text}"),
            started: Instant::now(),
            bytes: 0,
        };
        self.running.insert(stage.to_string(), step);
        self.running.get_mut(stage).expect("just inserted")
    }

    /// The lines that make `n` the step being printed: its header, once per turn.
    fn turn_to(&mut self, n: usize, header: &str, out: &mut String) {
        if self.last != Some(n) {
            if self.printed {
                out.push('\n');
            }
            out.push_str(header);
            out.push('\n');
            self.last = Some(n);
            self.printed = true;
        }
    }
}

impl Plain {
    fn emit(out: &str) {
        let mut e = std::io::stderr().lock();
        let _ = e.write_all(out.as_bytes());
        let _ = e.flush();
    }

    /// A step began: its header, at once.
    pub(super) fn started(&self, stage: &str, index: usize, total: usize, created_by: &str) {
        let mut s = self.state.lock().unwrap();
        let (n, header) = {
            let step = s.start(stage, (index, total, created_by));
            (step.n, step.header.clone())
        };
        let mut out = String::new();
        s.turn_to(n, &header, &mut out);
        Self::emit(&out);
    }

    /// Layer bytes are summed and said when the step is done.
    pub(super) fn bytes(&self, stage: &str, bytes: u64) {
        if let Some(step) = self.state.lock().unwrap().running.get_mut(stage) {
            step.bytes += bytes;
        }
    }

    /// One output line of the running step of `stage`, with its time into the step.
    pub(super) fn output(&self, stage: &str, line: &str) {
        let mut s = self.state.lock().unwrap();
        let Some((n, header, secs)) = s
            .running
            .get(stage)
            .map(|st| (st.n, st.header.clone(), st.started.elapsed().as_secs_f64()))
        else {
            drop(s);
            return Self::emit(&format!("{}\n", super::sanitize(line)));
        };
        let mut out = String::new();
        s.turn_to(n, &header, &mut out);
        out.push_str(&format!("#{n} {secs:.3} {}\n", super::sanitize(line)));
        Self::emit(&out);
    }

    /// The step of `stage` finished: `#N DONE 1.2s` or `#N CACHED`.
    pub(super) fn done(&self, stage: &str, at: (usize, usize, &str), cached: bool, seconds: f64) {
        let mut s = self.state.lock().unwrap();
        let step = match s.running.remove(stage) {
            Some(step) => step,
            None => {
                s.start(stage, at);
                s.running.remove(stage).expect("just started")
            }
        };
        let mut out = String::new();
        s.turn_to(step.n, &step.header, &mut out);
        let n = step.n;
        if cached {
            out.push_str(&format!("#{n} CACHED\n"));
        } else {
            if step.bytes > 0 {
                let size = kiln_registry::repo::human_size(step.bytes);
                out.push_str(&format!("#{n} writing layer {size} done\n"));
            }
            out.push_str(&format!("#{n} DONE {seconds:.1}s\n"));
        }
        Self::emit(&out);
    }

    /// The build failed: every step still running gets `#N ERROR: MESSAGE`, as BuildKit's
    /// plain mode ends a failed step, so a CI log shows which step broke and why.
    pub(super) fn failed(&self, message: &str) {
        let mut s = self.state.lock().unwrap();
        let mut steps: Vec<Step> = s.running.drain().map(|(_, st)| st).collect();
        steps.sort_by_key(|st| st.n);
        let first = super::sanitize(message.lines().next().unwrap_or_default());
        let mut out = String::new();
        for step in steps {
            s.turn_to(step.n, &step.header, &mut out);
            out.push_str(&format!("#{} ERROR: {first}\n", step.n));
        }
        drop(s);
        Self::emit(&out);
    }

    /// A line outside of steps (notes, warnings, the summary).
    pub(super) fn line(&self, msg: &str) {
        let mut s = self.state.lock().unwrap();
        let mut out = String::new();
        if s.last.is_some() {
            out.push('\n');
            s.last = None;
        }
        out.push_str(msg);
        out.push('\n');
        Self::emit(&out);
    }
}
