//! `ScoreSet.batches`: the trainer's reader (shared::reader) step by step,
//! each step's rows for one rank (shared::reader::rank_rows), handed to
//! Python as numpy arrays that own the decoded buffers (no copy after
//! decoding). Decoding runs on the reader's background threads and the
//! calling thread lets go of the GIL while it waits.

use std::sync::Mutex;

use numpy::ndarray::{Array1, Array2};
use numpy::IntoPyArray;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use shared::reader::Reader;

use crate::scoreset::ScoreSet;
use crate::set_error;

/// Which steps an iterator yields and which rows of each.
pub struct Plan {
    /// Windows of a global batch (one optimizer step).
    pub batch_size: usize,
    pub rank: usize,
    pub world: usize,
    /// The next step to yield (0-based).
    pub next_step: u64,
    /// Steps between two yielded (DataLoader workers).
    pub stride: u64,
    /// One past the last step.
    pub end_step: u64,
}

/// An iterator of batches (see `ScoreSet.batches`).
#[pyclass(frozen, module = "rho1")]
pub struct Batches {
    state: Mutex<(Reader, Plan)>,
    seq_len: usize,
}

/// One step's rows, decoded, before they become numpy arrays.
struct Decoded {
    step: u64,
    rows: usize,
    windows: Vec<u64>,
    tokens: Vec<i64>,
    doc_ids: Vec<u64>,
    ref_loss: Option<Vec<f32>>,
}

impl Batches {
    pub fn open(
        py: Python<'_>,
        set: &ScoreSet,
        seed: u64,
        threads: usize,
        plan: Plan,
    ) -> PyResult<Self> {
        let dirs = [set.path.clone()];
        let cache = set.cache.clone();
        let reader = py
            .detach(|| Reader::open_with(&dirs, seed, threads, cache))
            .map_err(set_error)?;
        Ok(Batches {
            seq_len: reader.seq_len(),
            state: Mutex::new((reader, plan)),
        })
    }

    /// The next step's rows for this rank, or None after the last step.
    fn decode_next(reader: &mut Reader, plan: &mut Plan) -> shared::Result<Option<Decoded>> {
        if plan.next_step >= plan.end_step {
            return Ok(None);
        }
        let step = plan.next_step;
        let rows = shared::reader::rank_rows(plan.batch_size, plan.rank, plan.world);
        let cursor = step * plan.batch_size as u64 + rows.start as u64;
        let b = reader.batch(cursor, rows.len())?;
        plan.next_step += plan.stride;
        Ok(Some(Decoded {
            step,
            rows: b.rows,
            windows: b.windows,
            tokens: b.tokens.into_iter().map(i64::from).collect(),
            doc_ids: b.doc_ids,
            ref_loss: b.ref_loss,
        }))
    }
}

fn shaped<T: numpy::Element>(
    py: Python<'_>,
    v: Vec<T>,
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'_, numpy::PyArray2<T>>> {
    let a = Array2::from_shape_vec((rows, cols), v)
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    Ok(a.into_pyarray(py))
}

#[pymethods]
impl Batches {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let decoded = py
            .detach(|| {
                let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let (reader, plan) = &mut *guard;
                Self::decode_next(reader, plan)
            })
            .map_err(set_error)?;
        let Some(d) = decoded else {
            return Ok(None);
        };
        let t = self.seq_len;
        let out = PyDict::new(py);
        out.set_item("step", d.step)?;
        out.set_item("windows", Array1::from_vec(d.windows).into_pyarray(py))?;
        out.set_item("tokens", shaped(py, d.tokens, d.rows, t)?)?;
        out.set_item("doc_ids", shaped(py, d.doc_ids, d.rows, t)?)?;
        match d.ref_loss {
            Some(r) => out.set_item("ref_loss", shaped(py, r, d.rows, t)?)?,
            None => out.set_item("ref_loss", py.None())?,
        }
        Ok(Some(out))
    }

    /// Steps this iterator has still to yield.
    fn __len__(&self) -> usize {
        let guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let plan = &guard.1;
        plan.end_step
            .saturating_sub(plan.next_step)
            .div_ceil(plan.stride) as usize
    }

    /// Rows decoded per row handed out so far (1.0: every row group decoded
    /// once and used whole).
    #[getter]
    fn amplification(&self) -> f64 {
        let guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.amplification()
    }
}

/// The rows `start, stop` of a global batch of `batch` windows that rank
/// `rank` of `world` reads: contiguous, balanced, their union the batch
/// (shared::reader::rank_rows, the split multi-process training uses).
#[pyfunction]
pub fn rank_rows(batch: usize, rank: usize, world: usize) -> (usize, usize) {
    let r = shared::reader::rank_rows(batch, rank, world);
    (r.start, r.end)
}
