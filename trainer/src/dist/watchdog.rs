//! A bound on waiting for the other ranks: a collective that has not
//! completed after RHO1_DIST_TIMEOUT seconds (default 1800) means a rank
//! hung (a dead one is ended by the launcher); this process then says so
//! and exits non-zero, and mpirun ends the rest of the job. The bound must
//! exceed what rank 0 spends between two steps alone (an evaluation, a
//! checkpoint) and the slowest rank's start-up checks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Seconds a collective may wait when RHO1_DIST_TIMEOUT is not set.
pub const DEFAULT_TIMEOUT_S: u64 = 1800;

pub struct Watchdog {
    /// Milliseconds since `start` when the pending collective began; 0: none.
    began: Arc<AtomicU64>,
    start: Instant,
}

impl Watchdog {
    /// Starts the watching thread for rank `rank`.
    pub fn start(rank: usize) -> Self {
        let timeout = std::env::var("RHO1_DIST_TIMEOUT")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(DEFAULT_TIMEOUT_S);
        let began = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let seen = began.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(500));
            let at = seen.load(Ordering::SeqCst);
            let now = start.elapsed().as_millis() as u64;
            if at != 0 && now.saturating_sub(at) > timeout * 1000 {
                shared::util::say::set_quiet(false);
                shared::say!(
                    "error: rank {rank}: the other ranks did not answer for {timeout} s (RHO1_DIST_TIMEOUT): a rank hung; ending this one (rerun with --resume)"
                );
                std::process::exit(1);
            }
        });
        Watchdog { began, start }
    }

    /// Runs the collective `f` under the bound.
    pub fn watch<T>(&self, f: impl FnOnce() -> T) -> T {
        let now = (self.start.elapsed().as_millis() as u64).max(1);
        self.began.store(now, Ordering::SeqCst);
        let out = f();
        self.began.store(0, Ordering::SeqCst);
        out
    }
}
