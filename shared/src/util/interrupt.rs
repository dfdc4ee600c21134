//! SIGTERM and SIGINT as a request to stop between units of work. Slurm and
//! Kubernetes send SIGTERM some time before they kill; a user presses
//! Ctrl-C. After [`watch`], the first one sets a flag that long loops poll
//! ([`requested`]) to finish the current unit, save what resumes it, and
//! exit with [`EXIT_STOPPED`]; a second one ends the process at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Exit status of a run stopped by a signal after saving what resumes it
/// (BSD's EX_TEMPFAIL: "try again"; a rerun with `--resume` continues).
pub const EXIT_STOPPED: u8 = 75;

/// Exit status when a second signal ends the process at once (128 + SIGINT).
const EXIT_FORCED: i32 = 130;

static SIGNAL: std::sync::OnceLock<Arc<AtomicUsize>> = std::sync::OnceLock::new();
static STOPPED: AtomicBool = AtomicBool::new(false);

/// Starts catching SIGTERM and SIGINT (idempotent).
pub fn watch() -> std::io::Result<()> {
    if SIGNAL.get().is_some() {
        return Ok(());
    }
    let seen = Arc::new(AtomicUsize::new(0));
    let any = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // Order matters: the shutdown hook sees the flag the previous signal set.
        signal_hook::flag::register_conditional_shutdown(sig, EXIT_FORCED, Arc::clone(&any))?;
        signal_hook::flag::register(sig, Arc::clone(&any))?;
        signal_hook::flag::register_usize(sig, Arc::clone(&seen), sig as usize)?;
    }
    let _ = SIGNAL.set(seen);
    Ok(())
}

/// The signal that asked to stop ("SIGTERM", "SIGINT"), if one has.
pub fn requested() -> Option<&'static str> {
    match SIGNAL.get()?.load(Ordering::SeqCst) as i32 {
        0 => None,
        signal_hook::consts::SIGTERM => Some("SIGTERM"),
        signal_hook::consts::SIGINT => Some("SIGINT"),
        _ => Some("a signal"),
    }
}

/// Records that the command stopped early on a signal with its state saved:
/// the binaries' `main` (the shared process module) then exits with [`EXIT_STOPPED`].
pub fn mark_stopped() {
    STOPPED.store(true, Ordering::SeqCst);
}

pub fn stopped() -> bool {
    STOPPED.load(Ordering::SeqCst)
}
