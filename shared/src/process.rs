//! What both binaries do before and after their command: the allocator's
//! options, the thread pools, the panic hook, and one `error: ...` line
//! with a non-zero exit. Above every other layer (it sets up all of them).
//! The allocator itself is the binaries' choice (`#[global_allocator]` in
//! each `main.rs`): a library does not choose one for its users.

use std::fmt::Display;
use std::process::ExitCode;

const MI_OPTION_PURGE_DELAY: i32 = 15;

/// Every candle op allocates its output: an allocator that returns freed
/// memory to the OS makes the kernel zero fresh pages on every step (~25% of
/// a small model's step). mimalloc (the binaries' allocator), told never to
/// purge, reuses them instead.
fn keep_freed_memory() {
    // SAFETY: sets a plain integer option; mimalloc reads it on later purges.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// A binary's `main`: sets the process up, runs `command`, prints its error
/// with every cause (`{:#}`) and returns the exit status.
pub fn main<E: Display>(command: impl FnOnce() -> Result<(), E>) -> ExitCode {
    keep_freed_memory();
    crate::kernels::threads::tune_cpu_threads();
    crate::util::guard::install_panic_hook();
    match command() {
        Ok(()) if crate::util::interrupt::stopped() => {
            ExitCode::from(crate::util::interrupt::EXIT_STOPPED)
        }
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::util::say::set_quiet(false); // every rank names its error
            crate::say!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// This process's peak resident memory in MB (`VmHWM` of /proc/self/status;
/// NaN where there is no such file).
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
