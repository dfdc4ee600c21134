//! `rho1.select`: the trainer's selection rules (shared::select::select,
//! the function the trainer's step calls) on numpy arrays of one global
//! batch's predicted tokens. The Python wrapper (rho1/select.py) casts and
//! aligns the arrays; here they are (rows, cols) float32 and uint64.

use clap::ValueEnum;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use shared::select::noise::NoiseFilter;
use shared::select::{Method, Params, Tokens};

fn method(name: &str) -> PyResult<Method> {
    Method::from_str(name, false).map_err(|_| {
        let names: Vec<String> = Method::value_variants()
            .iter()
            .filter_map(|m| m.to_possible_value().map(|v| v.get_name().to_string()))
            .collect();
        PyValueError::new_err(format!(
            "unknown selection method {name:?}: one of {}",
            names.join(", ")
        ))
    })
}

/// The weights the trainer's rule gives each token: 0/1 for the hard rules,
/// softmax weights of mean 1 for "weighted". `ce`, `ref_loss` and
/// `doc_ids` are (rows, cols) over the same predicted tokens; `doc_ids`
/// is needed by the noise filter only. `seed` and `step` give "random" the
/// stream the trainer's step `step` of a run with `--seed seed` draws from.
#[pyfunction]
#[pyo3(signature = (ce, ref_loss, method_name, ratio, threshold, temperature, doc_ids, noise_cap, noise_span, seed, step))]
#[allow(clippy::too_many_arguments)]
pub fn select<'py>(
    py: Python<'py>,
    ce: PyReadonlyArray2<'py, f32>,
    ref_loss: PyReadonlyArray2<'py, f32>,
    method_name: &str,
    ratio: f64,
    threshold: f32,
    temperature: f32,
    doc_ids: Option<PyReadonlyArray2<'py, u64>>,
    noise_cap: Option<f32>,
    noise_span: usize,
    seed: u64,
    step: u64,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let method = method(method_name)?;
    shared::util::ratio::check_ratio("ratio", ratio).map_err(PyValueError::new_err)?;
    let (rows, cols) = (ce.shape()[0], ce.shape()[1]);
    if ref_loss.shape() != ce.shape() || doc_ids.as_ref().is_some_and(|d| d.shape() != ce.shape()) {
        return Err(PyValueError::new_err(format!(
            "ce, ref_loss and doc_ids must have one shape: got {:?}, {:?}, {:?}",
            ce.shape(),
            ref_loss.shape(),
            doc_ids.as_ref().map(|d| d.shape().to_vec())
        )));
    }
    if noise_cap.is_some() && doc_ids.is_none() {
        return Err(PyValueError::new_err(
            "the noise filter (noise_cap) needs doc_ids: it never averages across documents",
        ));
    }
    let contiguous = |e: numpy::AsSliceError| PyValueError::new_err(e.to_string());
    let ce = ce.as_slice().map_err(contiguous)?;
    let ref_loss = ref_loss.as_slice().map_err(contiguous)?;
    let doc_ids = match &doc_ids {
        Some(d) => Some(d.as_slice().map_err(contiguous)?),
        None => None,
    };
    let params = Params {
        method,
        ratio,
        threshold,
        temperature,
        noise: noise_cap.map(|cap| NoiseFilter {
            span: noise_span,
            cap,
        }),
    };
    let weights = py.detach(|| {
        let tokens = Tokens {
            ce,
            ref_loss,
            doc_ids,
            rows,
            cols,
        };
        shared::select::select(&params, &tokens, &mut shared::select::step_rng(seed, step)).weights
    });
    let w = Array2::from_shape_vec((rows, cols), weights)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(w.into_pyarray(py))
}
