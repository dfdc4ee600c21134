//! Score sets: the versioned on-disk contract between `scorer` and
//! `trainer` (token shards, manifest, side tables) and the reader over them.

pub mod compat; // whether a model and token data belong together
pub mod format; // the format's names and numbers: version, file names
pub mod loss_range; // reference losses that cannot be a loss in nats
pub mod manifest; // job.json and manifest.json
pub mod scoreset; // a complete set, checked and memory-mapped
pub mod shards; // the token-row Parquet shards
pub mod source; // a shard's bytes: a memory map, or range requests to a bucket
pub mod tables; // vocab.parquet and documents.parquet
