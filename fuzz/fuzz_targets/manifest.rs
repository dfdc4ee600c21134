//! Any bytes as manifest.json: parsed or refused, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Panics the readers catch and turn into errors stay quiet; any other
    // panic still reaches libFuzzer's hook and is a finding.
    shared::util::guard::install_panic_hook();
    let dir = std::env::temp_dir().join(format!("rho1-fuzz-manifest-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    if std::fs::write(dir.join("manifest.json"), data).is_err() {
        return;
    }
    if let Ok(m) = shared::scores::manifest::Manifest::load(&dir) {
        let _ = m.shard_paths(&dir);
    }
    let _ = shared::scores::scoreset::ScoreSet::open(&dir);
});
