//! `rho1`, the Python package: score sets opened by the shared crate's
//! reader, batches in the trainer's order and split over ranks as the
//! trainer splits them, the trainer's selection rules on numpy arrays. No
//! Python reimplementation: every call lands in the code the CLIs run.

mod batches; // ScoreSet.batches: the trainer's windows, step by step, as numpy arrays
mod scoreset; // rho1.ScoreSet: a complete set (directory or bucket URL)
mod select; // rho1.select: the trainer's selection rules

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    _rho1,
    ScoreSetError,
    PyException,
    "A score set the Rust reader refuses; the message names the file and record, as the CLIs print it."
);

/// The Rust reader's error as the Python exception, with the same text the
/// CLIs print after "error: ".
fn set_error(e: shared::Error) -> PyErr {
    ScoreSetError::new_err(e.to_string())
}

#[pymodule]
fn _rho1(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<scoreset::ScoreSet>()?;
    m.add_class::<batches::Batches>()?;
    m.add_function(wrap_pyfunction!(select::select, m)?)?;
    m.add_function(wrap_pyfunction!(batches::rank_rows, m)?)?;
    m.add("ScoreSetError", m.py().get_type::<ScoreSetError>())?;
    m.add("DEFAULT_RATIO", shared::select::DEFAULT_RATIO)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
