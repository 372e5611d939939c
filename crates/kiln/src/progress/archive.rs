//! `kiln load` and `kiln save` on a terminal: a live line with the archive's bytes (as
//! they are written, for save), the rate and the elapsed time. Plain mode prints what the
//! commands always printed, and nothing more.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::cli::ProgressMode;

/// A live archive line; cleared when dropped.
pub struct ArchiveProgress {
    bar: Option<(MultiProgress, ProgressBar)>,
    stop: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

impl ArchiveProgress {
    /// `verb` ("loading", "saving") the archive at `path`. For save, `watch` follows the
    /// file's size as it grows; for load, the size is the archive's.
    pub fn new(mode: ProgressMode, verb: &str, path: &Path, watch: bool) -> ArchiveProgress {
        let stop = Arc::new(AtomicBool::new(false));
        if super::resolve(mode) != ProgressMode::Tty {
            return ArchiveProgress {
                bar: None,
                stop,
                watcher: None,
            };
        }
        let bars = MultiProgress::with_draw_target(super::draw_target());
        let bar = bars.add(ProgressBar::no_length());
        bar.set_style(
            ProgressStyle::with_template("{spinner:.cyan} {msg} {bytes} {binary_bytes_per_sec:.dim} {elapsed}")
                .expect("valid template"),
        );
        bar.set_message(format!("{verb} {}", path.display()));
        bar.enable_steady_tick(Duration::from_millis(100));
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let watcher = if watch {
            let (b, s, p): (ProgressBar, Arc<AtomicBool>, PathBuf) = (bar.clone(), stop.clone(), path.to_path_buf());
            Some(std::thread::spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    b.set_position(size(&p));
                    std::thread::sleep(Duration::from_millis(100));
                }
            }))
        } else {
            bar.set_position(size(path));
            None
        };
        ArchiveProgress {
            bar: Some((bars, bar)),
            stop,
            watcher,
        }
    }
}

impl Drop for ArchiveProgress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
        if let Some((bars, bar)) = self.bar.take() {
            bar.finish_and_clear();
            bars.remove(&bar);
        }
    }
}
