//! `--device cpu | cuda[:N]` and `--dtype f32 | bf16 | f16`: the switch
//! between the CPU and CUDA (behind the `cuda` cargo feature), and between
//! the fused CPU kernels and candle's composed ops, which are the path every
//! other device takes.

use std::cell::Cell;

use candle_core::{DType, Device};

use crate::error::{Error, Result};

/// `--device`: `cpu`, or `cuda:N` (`cuda` is `cuda:0`), as written; opened
/// with [`DeviceSpec::open`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map(DeviceSpec::Cuda)
                    .map_err(|_| Error::Invalid(format!("bad device {s:?}: expected cuda:N"))),
                None => Err(Error::Invalid(format!(
                    "unknown device {s:?}: expected cpu or cuda:N"
                ))),
            },
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl serde::Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl DeviceSpec {
    /// The device, or an error that says what to check.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(n) => cuda(n),
        }
    }
}

pub fn parse_device(s: &str) -> Result<Device> {
    s.parse::<DeviceSpec>()?.open()
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| {
        Error::Invalid(format!(
            "--device cuda:{ordinal}: no usable CUDA device ({e}); check nvidia-smi, the driver (>= 580 for CUDA 13) and that the CUDA 13 libraries are on the loader path, or use --device cpu"
        ))
    })
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

/// `--dtype`: the compute dtype of the model's weights and activations. The
/// per-token loss is always computed in f32 from the logits.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    #[default]
    F32,
    Bf16,
    F16,
}

impl Dtype {
    pub fn dtype(self) -> DType {
        match self {
            Dtype::F32 => DType::F32,
            Dtype::Bf16 => DType::BF16,
            Dtype::F16 => DType::F16,
        }
    }
}

/// A `--dtype` name as a dtype.
pub fn parse_dtype(s: &str) -> Result<DType> {
    match s {
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        "f16" => Ok(DType::F16),
        _ => Err(Error::Invalid(format!(
            "unknown --dtype {s:?}: expected f32, bf16 or f16"
        ))),
    }
}

/// The name `--dtype` takes for a dtype.
pub fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        _ => "f32",
    }
}

/// `cpu` or `cuda`: what a manifest records of the device.
pub fn device_kind(d: &Device) -> &'static str {
    if d.is_cuda() {
        "cuda"
    } else if d.is_metal() {
        "metal"
    } else {
        "cpu"
    }
}

/// Refuses a dtype the device cannot compute in, before any work starts.
pub fn check_dtype(dev: &Device, dtype: DType) -> Result<()> {
    let probe = candle_core::Tensor::ones((2, 2), dtype, dev)
        .and_then(|a| a.matmul(&a))
        .and_then(|p| p.to_dtype(DType::F32));
    probe.map(|_| ()).map_err(|e| {
        Error::Invalid(format!(
            "--dtype {} is not supported on {}: {e}",
            dtype_name(dtype),
            device_kind(dev)
        ))
    })
}

thread_local! {
    static COMPOSED: Cell<bool> = const { Cell::new(false) };
}

/// Whether the fused CPU kernels run for tensors on `dev`: on the CPU, in
/// f32, unless the composed ops are asked for (`RHO1_COMPOSED=1`, or
/// [`force_composed`] on this thread). The composed ops are the path the GPU
/// takes; forcing them on the CPU runs that path where no GPU exists.
pub fn use_fused(dev: &Device, dtype: DType) -> bool {
    static ENV: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let env = *ENV.get_or_init(|| std::env::var("RHO1_COMPOSED").is_ok_and(|v| v == "1"));
    dev.is_cpu() && dtype == DType::F32 && !env && !COMPOSED.with(|c| c.get())
}

/// Makes [`use_fused`] false on this thread while `on` (tests of the device path).
pub fn force_composed(on: bool) {
    COMPOSED.with(|c| c.set(on));
}
