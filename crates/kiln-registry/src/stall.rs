//! Giving up on a registry that stops answering: a deadline on *progress*, not on time.
//!
//! A per-read timeout multiplied by retries let a registry that accepts connections but
//! never answers hold kiln for 12 to 24 minutes. Instead, every operation (one request with
//! its retries, or one blob transfer) carries a [`Progress`] clock that moves whenever
//! something arrives (an answer, a body chunk) or leaves (an upload piece), and
//! [`within`] fails the operation once the clock has stood still for the timeout
//! (`--timeout`, 60 s by default). A slow but moving transfer is never cut; a stalled one is
//! cut after the timeout, whatever the number of retries left.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The last moment an operation made progress. Cheap to clone; clones share the clock.
#[derive(Debug, Clone)]
pub struct Progress {
    start: Instant,
    /// Milliseconds from `start` to the last progress.
    last: Arc<AtomicU64>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// A clock that starts now.
    pub fn new() -> Progress {
        Progress {
            start: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records progress now.
    pub fn tick(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    /// How long since the last progress.
    pub fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// The operation made no progress for this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stalled(pub Duration);

/// Runs `fut` to completion unless `progress` stands still for `timeout` first. Progress
/// made while `fut` runs (an upload body being read) keeps it alive.
pub async fn within<T>(fut: impl Future<Output = T>, progress: &Progress, timeout: Duration) -> Result<T, Stalled> {
    let mut fut = std::pin::pin!(fut);
    loop {
        let idle = progress.idle();
        if idle >= timeout {
            return Err(Stalled(idle));
        }
        tokio::select! {
            r = &mut fut => return Ok(r),
            _ = tokio::time::sleep(timeout - idle) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stall_is_cut_and_progress_keeps_alive() {
        let p = Progress::new();
        let never = std::future::pending::<()>();
        assert!(within(never, &p, Duration::from_secs(5)).await.is_err());
        // A future that makes progress every second for 10 s outlives a 5 s timeout.
        let p = Progress::new();
        let ticking = {
            let p = p.clone();
            async move {
                for _ in 0..10 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    p.tick();
                }
                7
            }
        };
        assert_eq!(within(ticking, &p, Duration::from_secs(5)).await, Ok(7));
    }
}
