//! `trainer demo` with tiny settings: a rerun reuses what the same settings
//! made, and refuses, naming each setting, a stage made by others.

use super::*;

/// `trainer demo` with tiny settings; `over` replaces some of them.
fn demo(work: &Path, over: &[&str]) -> std::process::Output {
    bin("scorer"); // the demo runs the scorer beside it
    let data_dir = repo().join("data");
    let mut flags = vec![
        ("--work", s(work)),
        ("--vocab-size", "300"),
        ("--seq-len", "32"),
        ("--model-size", "debug"),
        ("--ref-steps", "4"),
        ("--steps", "4"),
        ("--batch-size", "4"),
        ("--eval-every", "2"),
        ("--data-dir", s(&data_dir)),
    ];
    for pair in over.chunks(2) {
        match flags.iter_mut().find(|f| f.0 == pair[0]) {
            Some(f) => f.1 = pair[1],
            None => flags.push((pair[0], pair[1])),
        }
    }
    let mut args = vec!["demo"];
    args.extend(flags.iter().flat_map(|(k, v)| [*k, *v]));
    run(TRAINER, &args)
}

#[test]
fn demo_rerun_reuses_its_stages_and_refuses_ones_made_by_other_settings() {
    let work = scratch("demo_rerun");
    let first = demo(&work, &[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let report = std::fs::read_to_string(work.join("report.md")).unwrap();
    assert!(report.contains("vocabulary 300"), "{report}");

    // The same settings: every stage reused.
    let again = demo(&work, &[]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{err}");
    assert!(err.contains("tokenizer.json exists, reusing it"), "{err}");
    assert!(
        !err.contains("$ trainer train"),
        "a stage was redone: {err}"
    );

    // Another seed: the reference and the sets are reused, new runs are made.
    let seed = demo(&work, &["--seed", "1"]);
    let err = String::from_utf8_lossy(&seed.stderr);
    assert!(seed.status.success(), "{err}");
    assert!(work.join("runs/clm-seed1/final").is_dir());

    // Another vocabulary: refused, naming it, and the report left as it was.
    let other = demo(&work, &["--vocab-size", "400"]);
    let err = String::from_utf8_lossy(&other.stderr);
    assert_eq!(other.status.code(), Some(1), "{err}");
    assert!(err.contains("vocab_size: 300 -> 400"), "{err}");
    let report_after = std::fs::read_to_string(work.join("report.md")).unwrap();
    assert!(report_after.contains("vocabulary 300"));

    // Another step count for the targets: refused naming it.
    let other = demo(&work, &["--steps", "6"]);
    let err = String::from_utf8_lossy(&other.stderr);
    assert_eq!(other.status.code(), Some(1), "{err}");
    assert!(err.contains("steps: 4 -> 6"), "{err}");
}
