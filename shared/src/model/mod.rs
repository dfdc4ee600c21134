//! The model: a Llama-family decoder with Hugging Face weight names, the
//! per-token loss it is scored and trained with, and checkpoint I/O. The
//! fused CPU kernels it runs on are in [`crate::kernels`].

pub mod checkpoint; // Hugging Face checkpoint directories (or GGUF files): load, save, init
pub mod config; // config.json: the family's hyperparameters and presets
pub mod decoder; // the decoder blocks and their forward pass
pub mod gguf; // llama.cpp GGUF files: config, dequantized tensors, HF names
pub mod loss; // per-token cross-entropy and the LM head's: the fused kernel or candle's ops
pub mod ops; // the decoder's ops, each choosing the fused kernel or candle's ops

pub use decoder::{expected_tensors, Llama, Mode};
