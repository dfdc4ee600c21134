//! The CPU kernels under the model: fused ops with their own backward
//! (attention, RMSNorm, rotary, SwiGLU, cross-entropy, the LM head with its
//! loss), the GEMM they and candle's matmul call, and the vector and thread
//! plumbing they share. Nothing here knows the model; `model` decides when
//! they run (`util::device::use_fused`) and falls back to candle's composed
//! ops, which every other device takes.

pub mod attention; // causal self-attention as one op with its own backward
pub mod blas; // which f32 GEMM runs: MKL loaded at run time on Intel CPUs, else the `gemm` crate
pub mod cross_entropy; // per-token cross-entropy, and the LM head + cross-entropy in one op
pub mod exp; // a vectorizable f32 e^x
pub mod fused; // RMSNorm, rotary, SwiGLU; the output-buffer helpers of every kernel
pub mod gemm; // the f32 GEMM our kernels call: the `gemm` crate, or MKL (loaded or linked)
pub mod lanes; // vector width: run-time CPU dispatch, row max, dot, sum of squares
pub mod threads; // rayon's, candle's and MKL's thread counts
