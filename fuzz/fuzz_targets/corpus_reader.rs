//! Any bytes as a corpus file (the first byte picks the format): the reader
//! returns documents or an error, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Panics the readers catch and turn into errors stay quiet; any other
    // panic still reaches libFuzzer's hook and is a finding.
    shared::util::guard::install_panic_hook();
    let Some((&kind, body)) = data.split_first() else { return };
    let ext = ["jsonl", "jsonl.zst", "parquet", "txt"][kind as usize % 4];
    let dir = std::env::temp_dir().join(format!("rho1-fuzz-corpus-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("input.{ext}"));
    if std::fs::write(&path, body).is_err() {
        return;
    }
    let corpus = shared::text::corpus::Corpus::new(vec![path], "text");
    for doc in corpus.take(10_000) {
        if doc.is_err() {
            break;
        }
    }
});
