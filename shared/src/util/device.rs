//! `--device cpu | cuda[:N]`: the one switch between CPU (f32) and CUDA
//! (behind the `cuda` cargo feature). Nothing else in the code paths differs.

use candle_core::{DType, Device};

use crate::error::{Error, Result};

pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        _ if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal: usize = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map_err(|_| Error::Invalid(format!("bad device {s:?}: expected cuda:N")))?,
                None => 0,
            };
            cuda(ordinal)
        }
        _ => Err(Error::Invalid(format!(
            "unknown device {s:?}: expected cpu or cuda:N"
        ))),
    }
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize) -> Result<Device> {
    Ok(Device::new_cuda(ordinal)?)
}

#[cfg(not(feature = "cuda"))]
fn cuda(_ordinal: usize) -> Result<Device> {
    Err(Error::Invalid(
        "this build has no CUDA support: rebuild with `--features cuda` (needs the CUDA toolkit), or use --device cpu".into(),
    ))
}

/// f32 on CPU (half precision is not faster there); f32 on CUDA too unless
/// asked otherwise, so that scores match across devices to 1e-4.
pub fn default_dtype(_device: &Device) -> DType {
    DType::F32
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
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
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
    }
    tune_cpu_threads();
}
