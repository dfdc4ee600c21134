//! The model: a Llama-family decoder with Hugging Face weight names, the
//! per-token loss it is scored and trained with, the fused CPU kernels under
//! both, and checkpoint I/O.

pub mod attention; // causal self-attention as one fused CPU op with its own backward
pub mod blas; // which f32 GEMM runs: MKL loaded at run time on Intel CPUs, else the `gemm` crate
pub mod checkpoint; // Hugging Face checkpoint directories (or GGUF files): load, save, init
pub mod config; // config.json: the family's hyperparameters and presets
pub mod decoder; // the decoder blocks and their forward pass
pub mod exp; // a vectorizable f32 e^x for the kernels
pub mod fused; // fused CPU kernels with their own backward
pub mod gemm; // the f32 GEMM our kernels call: the `gemm` crate, or MKL (loaded or linked)
pub mod gguf; // llama.cpp GGUF files: config, dequantized tensors, HF names
pub mod lanes; // vector width for the kernels: run-time CPU dispatch, row max, dot, sum of squares
pub mod loss; // per-token cross-entropy, and the fused LM head + CE

pub use decoder::{expected_tensors, Llama, Mode};
