//! The shard format across versions: a set written by format version 1
//! (tests/fixtures/scoreset-v1, see GOLDEN.md) still opens and holds what
//! the current scorer writes for the same input; `--loss-dtype f16` stores
//! every loss within the error its manifest states.

use super::*;

fn v1_fixture() -> PathBuf {
    fixture("scoreset-v1")
}

/// `scorer score` of the v1 fixture's corpus with its tokenizer, model and
/// layout, into `out`, storing ref_loss as `dtype`.
fn v1_score_args(out: &Path, dtype: &str) -> Vec<String> {
    let (model, tok) = (fixture("llama-gqa"), v1_fixture().join("tokenizer.json"));
    let corpus = fixture("scoreset-v1-corpus.jsonl");
    let args = [
        "score",
        "--model",
        s(&model),
        "--tokenizer",
        s(&tok),
        "--corpus",
        s(&corpus),
        "--out",
        s(out),
        "--seq-len",
        "32",
        "--shard-tokens",
        "2048",
        "--row-group-tokens",
        "512",
        "--loss-dtype",
        dtype,
    ];
    args.iter().map(|a| a.to_string()).collect()
}

fn rescore_v1_corpus(out: &Path, dtype: &str) {
    let args = v1_score_args(out, dtype);
    run_ok(SCORER, &args.iter().map(String::as_str).collect::<Vec<_>>());
}

fn set_bytes(dir: &Path) -> u64 {
    let set = ScoreSet::open(dir).unwrap();
    set.manifest().shards.iter().map(|e| e.bytes).sum()
}

#[test]
fn version_1_set_opens_and_holds_what_the_current_scorer_writes() {
    let old = ScoreSet::open(&v1_fixture()).unwrap();
    assert_eq!(old.manifest().job.format_version, 1);
    let dir = scratch("format_v1");
    let new_dir = dir.join("v2");
    rescore_v1_corpus(&new_dir, "f32");
    let new = ScoreSet::open(&new_dir).unwrap();
    assert_eq!(new.manifest().job.format_version, 2);
    let (a, b) = (old.read_all().unwrap(), new.read_all().unwrap());
    assert_eq!(a.seq_ids, b.seq_ids);
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(a.doc_ids, b.doc_ids);
    let (la, lb) = (a.ref_loss.unwrap(), b.ref_loss.unwrap());
    let diff = la
        .iter()
        .zip(&lb)
        .filter(|(x, _)| !x.is_nan())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-5, "v1 and v2 losses differ by {diff}");
    let (old_bytes, new_bytes) = (set_bytes(&v1_fixture()), set_bytes(&new_dir));
    assert!(
        new_bytes < old_bytes,
        "version 2 ({new_bytes} B) is not smaller than version 1 ({old_bytes} B)"
    );
}

#[test]
fn f16_losses_are_the_f32_ones_rounded_within_the_stated_error() {
    let dir = scratch("format_f16");
    let (f32_dir, f16_dir) = (dir.join("f32"), dir.join("f16"));
    rescore_v1_corpus(&f32_dir, "f32");
    rescore_v1_corpus(&f16_dir, "f16");
    let half = ScoreSet::open(&f16_dir).unwrap();
    let stated = half.manifest().ref_loss_rounding.unwrap();
    let exact = ScoreSet::open(&f32_dir).unwrap().read_all().unwrap();
    let rounded = half.read_all().unwrap();
    let (le, lr) = (exact.ref_loss.unwrap(), rounded.ref_loss.unwrap());
    let mut max_abs = 0f64;
    for (x, y) in le.iter().zip(&lr).filter(|(x, _)| !x.is_nan()) {
        assert_eq!(*y, half::f16::from_f32(*x).to_f32(), "not the nearest f16");
        max_abs = max_abs.max((*y as f64 - *x as f64).abs());
    }
    assert_eq!(
        max_abs, stated.max_abs_error,
        "the manifest states another error"
    );
    assert!(max_abs > 0.0, "nothing was rounded: not an f16 column?");
    assert!(stated.max_rel_error <= 2f64.powi(-11), "{stated:?}");
    assert!(set_bytes(&f16_dir) < set_bytes(&f32_dir));
}

#[test]
fn rerun_with_another_loss_dtype_is_refused() {
    let dir = scratch("format_rerun_dtype");
    let out = dir.join("set");
    rescore_v1_corpus(&out, "f32");
    let args = v1_score_args(&out, "f16");
    let res = run(SCORER, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success());
    assert!(
        err.contains("ref_loss dtype: this run has f16, the directory has f32"),
        "{err}"
    );
}
