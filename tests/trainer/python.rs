//! The Python package (python/): its pytest suite against this build's
//! trainer and scorer. The suite compares `rho1.ScoreSet.batches` and
//! `rho1.select` with what `trainer train` reads and keeps (RHO1_TRACE_STEPS),
//! window for window and bit for bit, and the errors of bad sets with what
//! the CLI prints. Needs a Python with the rho1 wheel and pytest
//! (RHO1_PYTHON; .ci/run builds the wheel into .venv).

use std::process::Command;

use crate::util::*;
use crate::TRAINER;

/// RHO1_PYTHON when it imports rho1 and pytest; None (skipped, said) outside CI.
fn python_with_rho1() -> Option<String> {
    let python = std::env::var("RHO1_PYTHON").ok();
    let ok = python.as_ref().is_some_and(|p| {
        Command::new(p)
            .args(["-c", "import rho1, pytest"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if ok {
        return python;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must provide the rho1 package: RHO1_PYTHON={python:?} cannot import rho1 and pytest (.ci/run installs them)"
    );
    eprintln!("SKIPPED: no python with rho1 and pytest (set RHO1_PYTHON; README \"From Python\" builds it)");
    None
}

#[test]
fn python_package_reads_and_selects_as_the_trainer_does() {
    let Some(python) = python_with_rho1() else {
        return;
    };
    // under timeout: the suite starts trainers and (with torch) gloo ranks
    let out = Command::new("timeout")
        .args([
            "900",
            &python,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
        ])
        .arg(repo().join("python/tests"))
        .env("RHO1_TRAINER", TRAINER)
        .env("RHO1_SCORER", bin("scorer"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run pytest");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pytest failed:\n{text}");
    assert!(text.contains(" passed"), "{text}");
}
