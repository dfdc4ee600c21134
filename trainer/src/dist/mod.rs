//! Data-parallel training across processes: the collectives a step needs
//! behind one small trait, [`Comm`], with one process ([`Solo`]) and MPI
//! (`mpi`, the cargo feature of the same name: `mpirun -np N trainer train
//! ...`, or `srun --mpi=pmix`). Each rank reads its rows of every global
//! batch ([`layout`]), the selection runs on the global batch's values
//! (all-gathered), the gradients are summed over ranks before the
//! optimizer step, so every rank holds the same model after every step.

pub mod grads; // the gradients of a step summed over the ranks
pub mod layout; // each rank's rows in the global batch
#[cfg(feature = "mpi")]
mod mpi; // the MPI backend
#[cfg(feature = "mpi")]
mod watchdog;
pub mod zero; // ZeRO stage 1: the optimizer state sharded over the ranks // a bound on waiting for a hung rank

use anyhow::{bail, Result};
use shared::util::launcher::ranks;

/// The collectives of a data-parallel step. Every rank calls the same ones
/// in the same order.
pub trait Comm {
    fn rank(&self) -> usize;
    fn world(&self) -> usize;
    /// Element-wise sum over the ranks, in place.
    fn sum_f32(&self, buf: &mut [f32]) -> Result<()>;
    /// Element-wise sum over the ranks, in place.
    fn sum_f64(&self, buf: &mut [f64]) -> Result<()>;
    /// Every rank's `local`, in rank order (lengths may differ).
    fn gather_f32(&self, local: &[f32]) -> Result<Vec<Vec<f32>>>;
    /// Every rank's `local`, in rank order (lengths may differ).
    fn gather_u64(&self, local: &[u64]) -> Result<Vec<Vec<u64>>>;
    /// Rank `root`'s `buf` into every rank's `buf`.
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()>;
    /// Every rank's `local` on rank 0 (None on the others).
    fn gather_f32_at_root(&self, local: &[f32]) -> Result<Option<Vec<Vec<f32>>>>;
    /// Which backend, for the start-up line.
    fn name(&self) -> &'static str;
    /// Time and bytes spent in collectives so far.
    fn usage(&self) -> Usage {
        Usage::default()
    }
}

/// What the collectives of a run cost this rank.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub calls: u64,
    /// Wall time inside collectives (waiting for slower ranks included).
    pub seconds: f64,
    /// Bytes this rank contributed to sums (the gradients, mostly).
    pub summed_bytes: u64,
    /// Bytes this rank received from gathers (the selection's inputs).
    pub gathered_bytes: u64,
}

impl Usage {
    /// The line rank 0 prints at the end of a run of `steps` steps.
    pub fn line(&self, steps: u64) -> String {
        format!(
            "collectives: {} calls, {:.2} s ({:.1} ms a step), {:.1} MB summed, {:.1} MB gathered",
            self.calls,
            self.seconds,
            self.seconds * 1e3 / steps.max(1) as f64,
            self.summed_bytes as f64 / 1e6,
            self.gathered_bytes as f64 / 1e6
        )
    }
}

/// One process: every collective is the identity.
pub struct Solo;

impl Comm for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn world(&self) -> usize {
        1
    }
    fn sum_f32(&self, _: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn sum_f64(&self, _: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn gather_f32(&self, local: &[f32]) -> Result<Vec<Vec<f32>>> {
        Ok(vec![local.to_vec()])
    }
    fn gather_u64(&self, local: &[u64]) -> Result<Vec<Vec<u64>>> {
        Ok(vec![local.to_vec()])
    }
    fn gather_f32_at_root(&self, local: &[f32]) -> Result<Option<Vec<Vec<f32>>>> {
        Ok(Some(vec![local.to_vec()]))
    }
    fn broadcast_f32(&self, _: &mut [f32], _: usize) -> Result<()> {
        Ok(())
    }
    fn name(&self) -> &'static str {
        "one process"
    }
}

/// The communicator this process trains with: MPI when a launcher started
/// it (and the binary has the `mpi` feature), else one process. A binary
/// without the feature started as several ranks refuses, rather than
/// running N copies of one run into the same directory.
pub fn connect() -> Result<Box<dyn Comm>> {
    let launched = ranks();
    #[cfg(feature = "mpi")]
    if launched.is_some() {
        return Ok(Box::new(mpi::Mpi::init()?));
    }
    if let Some(r) = launched.filter(|r| r.world > 1) {
        bail!(
            "this trainer was started as one of {} ranks (by mpirun or srun) but was built without MPI: build it with `cargo build --release --features trainer/mpi` (docs/distributed.md)",
            r.world
        );
    }
    Ok(Box::new(Solo))
}

/// Refuses a command other than `train` started as several ranks: each rank
/// would do the whole job into the same files.
pub fn refuse_ranks(command: &str) -> Result<()> {
    if ranks().is_some_and(|r| r.world > 1) {
        bail!("`trainer {command}` runs as one process; only `trainer train` runs as several ranks (started by mpirun or srun)");
    }
    Ok(())
}

/// Refuses to start unless every rank runs the same configuration:
/// `fingerprint` hashes the settings that define the run and the data.
pub fn check_same_run(comm: &dyn Comm, fingerprint: u64) -> Result<()> {
    let all = comm.gather_u64(&[fingerprint])?;
    let differ: Vec<usize> = (0..all.len()).filter(|&r| all[r] != all[0]).collect();
    if !differ.is_empty() {
        bail!(
            "the ranks were started with different settings or data: rank(s) {differ:?} differ from rank 0 (every rank must run the same `trainer train` command on the same score sets)"
        );
    }
    Ok(())
}
