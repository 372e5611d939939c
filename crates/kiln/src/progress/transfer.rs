//! Blob transfers of pull, push and copy. On a terminal: one bar per blob in flight and a
//! total with bytes, rate and time left. In plain mode: one line per finished blob. A blob
//! finished twice in one command (the 2-byte empty config every attachment shares) is said
//! once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kiln_oci::Digest;
use kiln_registry::transfer::{ProgressFn, TransferEvent};

use crate::cli::ProgressMode;

/// A command's transfer display. Dropping it clears the bars.
pub struct Transfers {
    bars: Option<MultiProgress>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    blobs: HashMap<Digest, ProgressBar>,
    total: Option<ProgressBar>,
    planned: u64,
    begun: u64,
    said: HashSet<Digest>,
}

fn blob_style() -> ProgressStyle {
    ProgressStyle::with_template("  {prefix} [{bar:24.cyan/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec:.dim}")
        .expect("valid template")
        .progress_chars("=> ")
}

fn total_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:.bold} [{bar:24.green/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec} {elapsed} elapsed, {eta} left",
    )
    .expect("valid template")
    .progress_chars("=> ")
}

impl Transfers {
    /// A display for `mode` (`auto` resolved against stderr); `None` when quiet.
    pub fn new(mode: ProgressMode) -> Option<Arc<Transfers>> {
        let bars = match super::resolve(mode) {
            ProgressMode::Quiet => return None,
            ProgressMode::Tty => Some(MultiProgress::with_draw_target(super::draw_target())),
            _ => None,
        };
        Some(Arc::new(Transfers {
            bars,
            state: Mutex::default(),
        }))
    }

    /// The sink to hand the registry client.
    pub fn sink(self: &Arc<Self>) -> ProgressFn {
        let me = Arc::clone(self);
        Arc::new(move |ev: &TransferEvent<'_>| me.event(ev))
    }

    fn event(&self, ev: &TransferEvent<'_>) {
        let Some(bars) = &self.bars else {
            if let TransferEvent::End { digest, line } = ev
                && self.state.lock().unwrap().said.insert((*digest).clone())
            {
                eprintln!("{line}");
            }
            return;
        };
        let mut s = self.state.lock().unwrap();
        match ev {
            TransferEvent::Planned { bytes, .. } => {
                s.planned += bytes;
                self.total(&mut s, bars);
            }
            TransferEvent::Begin {
                digest,
                size,
                done,
                upload,
            } => self.begin(&mut s, bars, digest, *size, (*done, *upload)),
            TransferEvent::Bytes { digest, bytes } => {
                if let Some(b) = s.blobs.get(*digest) {
                    b.inc(*bytes);
                }
                if let Some(t) = &s.total {
                    t.inc(*bytes);
                }
            }
            TransferEvent::End { digest, line } => {
                if let Some(b) = s.blobs.remove(*digest) {
                    b.finish_and_clear();
                    bars.remove(&b);
                }
                if s.said.insert((*digest).clone()) {
                    let _ = bars.println(*line);
                }
            }
        }
    }

    /// The total bar, created on first use, as long as what is planned or begun.
    fn total<'s>(&self, s: &'s mut State, bars: &MultiProgress) -> &'s ProgressBar {
        let len = s.planned.max(s.begun);
        let t = s.total.get_or_insert_with(|| {
            let t = bars.add(ProgressBar::new(len));
            t.set_style(total_style());
            t.set_prefix("total");
            t
        });
        t.set_length(len);
        t
    }

    fn begin(&self, s: &mut State, bars: &MultiProgress, digest: &Digest, size: u64, (done, upload): (u64, bool)) {
        let before = match s.blobs.get(digest) {
            Some(b) => b.position(),
            None => {
                s.begun += size;
                let b = ProgressBar::new(size);
                let b = match &s.total {
                    Some(t) => bars.insert_before(t, b),
                    None => bars.add(b),
                };
                b.set_style(blob_style());
                let hex = digest.to_string();
                let short = hex
                    .split(':')
                    .nth(1)
                    .unwrap_or(&hex)
                    .chars()
                    .take(12)
                    .collect::<String>();
                b.set_prefix(format!("{} {short}", if upload { "push" } else { "pull" }));
                s.blobs.insert(digest.clone(), b);
                0
            }
        };
        s.blobs[digest].set_position(done);
        let t = self.total(s, bars);
        t.set_position((t.position() + done).saturating_sub(before));
    }

    /// Clears the bars (the command prints its summary next).
    pub fn finish(&self) {
        let mut s = self.state.lock().unwrap();
        if let Some(bars) = &self.bars {
            for (_, b) in s.blobs.drain() {
                b.finish_and_clear();
                bars.remove(&b);
            }
            if let Some(t) = s.total.take() {
                t.finish_and_clear();
                bars.remove(&t);
            }
        }
    }
}

impl Drop for Transfers {
    fn drop(&mut self) {
        self.finish();
    }
}
