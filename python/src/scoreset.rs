//! `rho1.ScoreSet`: a complete score set, opened and checked by the shared
//! crate (manifest, shard footers, schema), with its manifest and counts.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use shared::store::cache::Cache;

use crate::batches::{Batches, Plan};
use crate::{set_error, ScoreSetError};

/// A complete score set: a directory written by `scorer score` or `scorer
/// pack`, or a bucket URL (s3://, gs://, az://) read by range requests.
///
/// `cache`: for a set in a bucket, a directory where its shards are kept
/// whole (SHA-256 checked), at most `cache_gb` GB, as `trainer train --cache`.
#[pyclass(frozen, module = "rho1")]
pub struct ScoreSet {
    pub(crate) path: PathBuf,
    pub(crate) cache: Option<Arc<Cache>>,
    set: shared::scores::scoreset::ScoreSet,
}

#[pymethods]
impl ScoreSet {
    #[new]
    #[pyo3(signature = (path, *, cache=None, cache_gb=50.0))]
    fn new(py: Python<'_>, path: PathBuf, cache: Option<PathBuf>, cache_gb: f64) -> PyResult<Self> {
        let cache = match cache {
            Some(dir) => Some(Arc::new(
                Cache::open(&dir, (cache_gb * 1e9) as u64).map_err(set_error)?,
            )),
            None => None,
        };
        let set = py
            .detach(|| shared::scores::scoreset::ScoreSet::open_cached(&path, cache.clone()))
            .map_err(set_error)?;
        Ok(ScoreSet { path, cache, set })
    }

    /// manifest.json as a dict.
    #[getter]
    fn manifest<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = serde_json::to_string(self.set.manifest())
            .map_err(|e| ScoreSetError::new_err(e.to_string()))?;
        py.import("json")?.call_method1("loads", (text,))
    }

    /// The path or URL the set was opened from.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    #[getter]
    fn num_windows(&self) -> u64 {
        self.set.num_windows()
    }

    #[getter]
    fn num_tokens(&self) -> u64 {
        self.set.manifest().num_tokens
    }

    #[getter]
    fn num_documents(&self) -> u64 {
        self.set.manifest().num_documents
    }

    #[getter]
    fn seq_len(&self) -> usize {
        self.set.seq_len()
    }

    /// Whether the set holds reference losses (`scorer score`), not only
    /// tokens (`scorer pack`).
    #[getter]
    fn scored(&self) -> bool {
        self.set.scored()
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.set.manifest().job.tokenizer.vocab_size
    }

    /// Fingerprint of the job that wrote the set (inputs, tokenizer, model,
    /// layout): two sets with the same one hold the same windows.
    #[getter]
    fn job_fingerprint(&self) -> String {
        self.set.manifest().job_fingerprint.clone()
    }

    #[getter]
    fn tokenizer_fingerprint(&self) -> String {
        self.set.manifest().job.tokenizer.fingerprint.clone()
    }

    /// Fingerprint of the reference model's weights; None for a packed set.
    #[getter]
    fn reference_fingerprint(&self) -> Option<String> {
        let m = self.set.manifest();
        m.job
            .reference_model
            .as_ref()
            .map(|r| r.fingerprint.clone())
    }

    /// Hashes every shard against the manifest (SHA-256), as `scorer
    /// verify` does first; raises ScoreSetError naming the first that differs.
    fn check_hashes(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.set.check_hashes(|_| {}))
            .map_err(set_error)
    }

    /// The batches the trainer reads, step by step: for each optimizer step
    /// of `batch_size` windows (the global batch: `trainer train
    /// --batch-size` times `--grad-accum`), this rank's rows as a dict of
    /// numpy arrays: `tokens` (b, T) int64, `ref_loss` (b, T) float32 (NaN
    /// at position 0 of each window; None for a packed set), `doc_ids` (b,
    /// T) uint64, `windows` (b,) uint64 (each window's index in the set),
    /// `step` (0-based).
    ///
    /// `seed` is `trainer train --seed`: the same seed reads the same
    /// windows in the same order. `start_step` resumes (the same batches as
    /// skipping that many); `epochs` sets the number of steps as the trainer
    /// does (ceil(epochs * windows / batch_size), the last one completed
    /// from the next epoch's order), `steps` sets it directly. `rank` of
    /// `world` takes its share of each global batch (rho1.rank_rows: the
    /// split multi-process training uses). `worker` of `num_workers` yields
    /// only the steps start_step + worker, + num_workers, ... (one reader
    /// per DataLoader worker). `read_threads` decode ahead, without the GIL.
    #[pyo3(signature = (batch_size, seed=0, *, rank=0, world=1, start_step=0, epochs=1, steps=None, worker=0, num_workers=1, read_threads=1))]
    #[allow(clippy::too_many_arguments)]
    fn batches(
        &self,
        py: Python<'_>,
        batch_size: usize,
        seed: u64,
        rank: usize,
        world: usize,
        start_step: u64,
        epochs: u64,
        steps: Option<u64>,
        worker: u64,
        num_workers: u64,
        read_threads: usize,
    ) -> PyResult<Batches> {
        if batch_size == 0
            || world == 0
            || rank >= world
            || num_workers == 0
            || worker >= num_workers
        {
            return Err(PyValueError::new_err(format!(
                "need batch_size >= 1, 0 <= rank < world and 0 <= worker < num_workers (got batch_size={batch_size}, rank={rank}, world={world}, worker={worker}, num_workers={num_workers})"
            )));
        }
        let steps = steps.unwrap_or_else(|| {
            shared::reader::steps_for_epochs(epochs, self.set.num_windows(), batch_size as u64)
        });
        let plan = Plan {
            batch_size,
            rank,
            world,
            next_step: start_step + worker,
            stride: num_workers,
            end_step: steps,
        };
        Batches::open(py, self, seed, read_threads.max(1), plan)
    }

    fn __len__(&self) -> usize {
        self.set.num_windows() as usize
    }

    fn __repr__(&self) -> String {
        format!(
            "rho1.ScoreSet({:?}: {} windows of {}, {})",
            self.path.display().to_string(),
            self.set.num_windows(),
            self.set.seq_len(),
            if self.set.scored() {
                "scored"
            } else {
                "packed"
            }
        )
    }
}
