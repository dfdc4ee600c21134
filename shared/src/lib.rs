//! The common core of the RHO-1 Selective Language Modeling pipeline.
//!
//! The modules follow the data path, each layer using only the ones above it
//! in this list: text files become token windows ([`text`]), the model turns
//! windows into per-token losses ([`model`]), and a score set stores them
//! ([`scores`]), written by `scorer` and memory-mapped by `trainer`. The
//! reference loss and the live loss are computed by the same code.
//!
//! Where a new thing goes: an input format in `text/corpus.rs`, a model
//! family in `model/config.rs` + `model/decoder.rs`, a checkpoint format in
//! `model/checkpoint.rs`, a shard column in `scores/shards.rs` (and the
//! manifest's format version in `scores/manifest.rs`).

pub mod error; // the library's typed errors, each naming a file and a record
pub mod model; // config, decoder, per-token loss, fused CPU kernels, checkpoints
pub mod scores;
pub mod text; // corpus files -> documents -> token ids -> windows
pub mod util; // infrastructure: atomic files, hashing, RNG, progress, device, Parquet hygiene // score sets: token shards, manifest, side tables, the reader

pub use error::{Error, Result};
