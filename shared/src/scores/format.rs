//! The score-set format's names and numbers, in one place: what a set
//! directory holds, what its shards are called, the format version this
//! build writes and the versions it reads (docs/score-sets.md).

/// `manifest.json`'s `format` field.
pub const FORMAT_NAME: &str = "rho1-score-set";
/// Version of the shard and manifest layout this build writes.
pub const FORMAT_VERSION: u32 = 2;
/// Versions this build reads: 1 (dictionary + PLAIN, f32 losses) and 2.
pub const READABLE_VERSIONS: [u32; 2] = [1, 2];
/// The shard footer's key/value entry that describes the shard.
pub const SHARD_META_KEY: &str = "rho1.shard";

/// What a job was asked to do (written first, checked on every rerun).
pub const JOB_FILE: &str = "job.json";
/// The finished set's description (written last).
pub const MANIFEST_FILE: &str = "manifest.json";
pub const VOCAB_FILE: &str = "vocab.parquet";
pub const DOCUMENTS_FILE: &str = "documents.parquet";

/// The file name of shard `shard`.
pub fn shard_file_name(shard: usize) -> String {
    format!("part-{shard:05}.parquet")
}
