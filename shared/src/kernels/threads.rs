//! How many threads the CPU kernels use: rayon's pool (candle's GEMMs and
//! our kernels), candle's own elementwise pool, and MKL's when it is loaded.

use crate::kernels::blas;

/// The worker threads: `RAYON_NUM_THREADS` if set, else every core.
pub(crate) fn worker_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Call first thing in `main`, before any thread exists. candle runs its
/// elementwise kernels on a spin-waiting thread pool of its own, beside the
/// rayon threads that run its GEMMs; with 2 cores the pool's worker spins on
/// a core while a GEMM wants both. Measured on the 2-core dev machine
/// (`trainer bench`, hidden 256, 4 layers, vocab 8192, batch 8 x 256, three
/// interleaved runs each): CLM step 547-571 ms with the pool, 529-534 ms with
/// elementwise kernels inline (CANDLE_NUM_THREADS=1); a shorter spin limit
/// was slower (559-632 ms). So below 3 threads the pool is turned off, unless
/// the user set CANDLE_NUM_THREADS. GEMMs still use every thread.
pub fn tune_cpu_threads() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static OURS: AtomicBool = AtomicBool::new(false);
    if std::env::var_os("CANDLE_NUM_THREADS").is_some() && !OURS.load(Ordering::Relaxed) {
        return;
    }
    let threads = worker_threads();
    #[cfg(feature = "mkl")]
    {
        // MKL linked in: its OpenMP runtime reads these when it starts.
        blas::quiet_openmp();
        std::env::set_var("MKL_NUM_THREADS", threads.to_string());
    }
    if threads <= 2 {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
        OURS.store(true, Ordering::Relaxed);
    } else if OURS.load(Ordering::Relaxed) {
        std::env::remove_var("CANDLE_NUM_THREADS");
    }
}

/// Sets the worker threads for rayon and candle's kernels.
pub fn set_threads(n: Option<usize>) {
    if let Some(n) = n.filter(|&n| n > 0) {
        // candle reads RAYON_NUM_THREADS for its own thread count.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
        blas::set_threads(n);
    }
    tune_cpu_threads();
}
