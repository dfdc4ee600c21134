//! Fault injection for the crash tests: with `RHO1_KILL_AT=NAME` (or
//! `NAME#N` for the N-th time), the process sends itself SIGKILL when it
//! reaches the point `NAME`. Points: `forward` (scorer, before a forward
//! pass), `between-shards` (scorer, after a shard is complete), `step`
//! (trainer, after an update, before its metrics line), and
//! `atomic:FILE` (any atomic file or directory, written but not yet renamed).
//! Unset, a point costs one environment lookup.

use std::sync::atomic::{AtomicU64, Ordering};

static HITS: AtomicU64 = AtomicU64::new(0);

pub fn point(name: &str) {
    let Ok(spec) = std::env::var("RHO1_KILL_AT") else {
        return;
    };
    let (want, nth) = match spec.split_once('#') {
        Some((w, n)) => (w.to_string(), n.parse::<u64>().unwrap_or(1)),
        None => (spec.clone(), 1),
    };
    if name != want {
        return;
    }
    let hit = HITS.fetch_add(1, Ordering::SeqCst) + 1;
    if hit < nth {
        return;
    }
    crate::say!("fault injection: SIGKILL at {name} (hit {hit})");
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
