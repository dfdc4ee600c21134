//! README's "The pipeline, step by step" runs as written, top to bottom,
//! with tiny sizes substituted (each substitution must find its text, so the
//! test notices when the README changes).

use super::*;

#[test]
fn readme_step_by_step_runs_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("## The pipeline, step by step")
        .nth(1)
        .expect("README has the step-by-step section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("the section starts with a sh block");
    let scorer = bin("scorer");
    let mut script = block.to_string();
    for (from, to) in [
        (
            "S=./target/release/scorer; T=./target/release/trainer",
            format!("S={scorer}; T={TRAINER}"),
        ),
        ("--vocab-size 32000", "--vocab-size 400".into()),
        ("--seq-len 1024", "--seq-len 32".into()),
        ("--model-size small", "--model-size debug".into()),
        ("--max-steps 2000", "--max-steps 3".into()),
        ("--max-steps 10000", "--max-steps 3".into()),
    ] {
        assert!(
            script.contains(from),
            "README's step-by-step no longer says {from:?}"
        );
        script = script.replace(from, &to);
    }
    let dir = scratch("readme_step_by_step");
    for (sub, file) in [
        ("clean", "clean_train.jsonl.zst"),
        ("heldout", "clean_heldout.jsonl.zst"),
        ("web", "noisy_web.jsonl.zst"),
    ] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        std::fs::copy(data(file), dir.join(sub).join(file)).unwrap();
    }
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the step-by-step failed:\n{err}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("runs/ref/final") && table.contains("runs/slm/final"),
        "{table}"
    );
    assert!(dir.join("runs/slm/final/model.safetensors").is_file());
}

/// docs/reliability.md lists every bad-input test of both binaries (the
/// table `scripts/bad_input_table.py` prints), so the page and the tests
/// cannot drift apart.
#[test]
fn reliability_page_lists_every_bad_input_test() {
    let page = std::fs::read_to_string(repo().join("docs/reliability.md")).unwrap();
    let mut names = Vec::new();
    for file in ["tests/scorer/bad_input.rs", "tests/trainer/bad_input.rs"] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            // A case of the bad_input! macro: `    name(d, tok) =>`.
            if let Some((name, _)) = line.strip_prefix("    ").and_then(|l| {
                l.split_once("(d, tok) =>")
                    .or_else(|| l.split_once("(d, _tok) =>"))
            }) {
                names.push(name.to_string());
            }
            // A test function: `#[test]` then `fn name(`.
            if line.trim() == "#[test]" {
                if let Some(name) = lines
                    .get(i + 1)
                    .and_then(|l| l.strip_prefix("fn "))
                    .and_then(|l| l.split_once('('))
                {
                    names.push(name.0.to_string());
                }
            }
        }
    }
    assert!(
        names.len() >= 60,
        "only {} bad-input tests found",
        names.len()
    );
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !page.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/reliability.md lacks these bad-input tests (python3 scripts/bad_input_table.py): {missing:?}"
    );
}
