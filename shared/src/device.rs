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

/// Sets the worker threads for rayon and candle's kernels.
pub fn set_threads(n: Option<usize>) {
    if let Some(n) = n.filter(|&n| n > 0) {
        // candle reads RAYON_NUM_THREADS for its own thread count.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
}
