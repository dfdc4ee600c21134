//! The common core of the RHO-1 Selective Language Modeling pipeline.
//!
//! The modules are layers, each using only the ones below it: [`util`]
//! (files, hashing, devices) and [`store`] (buckets) < [`kernels`] (fused
//! CPU ops, the GEMM) < [`select`] (which tokens a step trains on) <
//! [`model`] (the decoder and its per-token loss) and [`text`] (text files
//! become token windows) < [`scores`] (score sets, written by `scorer` and
//! memory-mapped or range-read by `trainer`) < [`reader`] (the training
//! order and its batches); [`process`] sets the binaries up. The
//! reference loss and the live loss are computed by the same code.
//!
//! Where a new thing goes: a selection rule in `select/mod.rs`, an input format in `text/corpus.rs`, a model
//! family in `model/config.rs` + `model/decoder.rs`, a checkpoint format in
//! `model/checkpoint.rs`, a fused CPU op in `kernels/`, a shard column in `scores/shards.rs` (and the
//! format version in `scores/format.rs`).

pub mod error; // the library's typed errors, each naming a file and a record
pub mod kernels; // fused CPU kernels with their own backward, the GEMM, threads
pub mod metrics; // the lines of a run's metrics.jsonl, typed
pub mod model; // config, decoder, per-token loss, checkpoints
pub mod process;
pub mod reader; // the training reader: shuffled order, prefetching, batches by cursor // the binaries' main: allocator, threads, panic hook, exit status
pub mod scores; // score sets: token shards, manifest, side tables, the reader
pub mod select;
pub mod store; // score sets in buckets: object_store from plain threads, credentials redacted // token selection: the paper's rule and its variants, the noise filter, the masked mean
pub mod text; // corpus files -> documents -> token ids -> windows
pub mod util; // infrastructure: atomic files, hashing, RNG, progress, device, Parquet hygiene

pub use error::{Error, Result};
