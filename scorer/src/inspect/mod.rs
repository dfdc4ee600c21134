//! Tools that read finished score sets; none of them writes into one.

pub mod dynamics; // `scorer dynamics`: per-token loss trajectories across checkpoints
pub mod export; // `scorer export`: a selection as a keep-mask column
pub mod info; // `scorer info`: the manifest's summary
pub mod verify; // `scorer verify`: shards against the manifest
pub mod view; // `scorer view`: the HTML token viewer
