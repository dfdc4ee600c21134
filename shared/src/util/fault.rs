//! Fault injection for the crash tests: with `RHO1_KILL_AT=NAME` (or
//! `NAME#N` for the N-th time), the process sends itself SIGKILL when it
//! reaches the point `NAME`; with `RHO1_STALL_AT=NAME[#N]` it stops there
//! for good instead (a hung process, for the data-parallel watchdog). Points: `forward` (scorer, before a forward
//! pass), `between-shards` (scorer, after a shard is complete), `step`
//! (trainer, after an update, before its metrics line), and
//! `atomic:FILE` (any atomic file or directory, written but not yet renamed).
//! Unset, a point costs one environment lookup.

use std::sync::atomic::{AtomicU64, Ordering};

static HITS: AtomicU64 = AtomicU64::new(0);

pub fn point(name: &str) {
    if let Ok(spec) = std::env::var("RHO1_STALL_AT") {
        if reached(&spec, name) {
            crate::say!("fault injection: stalled at {name}");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
    let Ok(spec) = std::env::var("RHO1_KILL_AT") else {
        return;
    };
    if !reached(&spec, name) {
        return;
    }
    crate::say!("fault injection: SIGKILL at {name}");
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// Whether `spec` (`NAME` or `NAME#N`) is reached at this hit of `name`.
fn reached(spec: &str, name: &str) -> bool {
    let (want, nth) = match spec.split_once('#') {
        Some((w, n)) => (w, n.parse::<u64>().unwrap_or(1)),
        None => (spec, 1),
    };
    want == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 >= nth
}
