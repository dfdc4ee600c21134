//! Any bytes as a shard file: opened and every row group decoded, or refused
//! with an error; never a panic or an out-of-bounds read.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Panics the readers catch and turn into errors stay quiet; any other
    // panic still reaches libFuzzer's hook and is a finding.
    shared::util::guard::install_panic_hook();
    let dir = std::env::temp_dir().join(format!("rho1-fuzz-shard-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("part-00000.parquet");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(r) = shared::scores::shards::ShardReader::open(&path) {
        for g in 0..r.num_row_groups().min(64) {
            let _ = r.read_row_group(g);
        }
    }
});
