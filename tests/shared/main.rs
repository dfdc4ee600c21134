//! The `shared` library against models nobody here trained: per-token losses
//! of Hugging Face checkpoints of every family, and of GGUF files, equal
//! transformers' (tests/fixtures/GOLDEN.md); and every saved fuzz input
//! replayed through its target.

#[path = "../util/mod.rs"]
mod util;

mod fuzz_replay;
mod golden;
