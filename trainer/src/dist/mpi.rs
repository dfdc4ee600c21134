//! The MPI backend (the `mpi` crate over the system's MPI, Open MPI here):
//! sums by MPI_Allreduce, variable-length gathers by MPI_Allgatherv.
//! Buffers over 2^31 - 1 elements (MPI's int counts) go in pieces.

use anyhow::{anyhow, Result};
use mpi::collective::SystemOperation;
use mpi::datatype::{Equivalence, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::watchdog::Watchdog;
use super::{Comm, Usage};

/// Elements per MPI call (counts are C ints).
const PIECE: usize = 1 << 30;

pub struct Mpi {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    watchdog: Watchdog,
    calls: AtomicU64,
    nanos: AtomicU64,
    summed: AtomicU64,
    gathered: AtomicU64,
    /// MPI_Finalize when dropped, after the communicator.
    _universe: Universe,
}

impl Mpi {
    pub fn init() -> Result<Self> {
        let universe = mpi::initialize()
            .ok_or_else(|| anyhow!("MPI was already initialised in this process"))?;
        let world = universe.world();
        let rank = world.rank() as usize;
        Ok(Mpi {
            rank,
            size: world.size() as usize,
            watchdog: Watchdog::start(rank),
            calls: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
            summed: AtomicU64::new(0),
            gathered: AtomicU64::new(0),
            world,
            _universe: universe,
        })
    }

    /// Runs the collective `f` under the watchdog, counting its time.
    fn timed<R>(&self, f: impl FnOnce() -> R) -> R {
        let t0 = Instant::now();
        let out = self.watchdog.watch(f);
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.nanos
            .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        out
    }

    fn sum<T: Equivalence + Copy>(&self, buf: &mut [T]) -> Result<()> {
        self.summed
            .fetch_add(std::mem::size_of_val(buf) as u64, Ordering::Relaxed);
        for piece in buf.chunks_mut(PIECE) {
            let send = piece.to_vec();
            self.timed(|| {
                self.world
                    .all_reduce_into(&send[..], piece, SystemOperation::sum())
            });
        }
        Ok(())
    }

    fn gather<T: Equivalence + Copy + Default>(&self, local: &[T]) -> Result<Vec<Vec<T>>> {
        let (counts, displs) = self.layout(local.len())?;
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        self.gathered
            .fetch_add((total * std::mem::size_of::<T>()) as u64, Ordering::Relaxed);
        let mut all = vec![T::default(); total];
        {
            let mut part = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
            self.timed(|| self.world.all_gather_varcount_into(local, &mut part));
        }
        Ok(displs
            .iter()
            .zip(&counts)
            .map(|(&d, &c)| all[d as usize..(d + c) as usize].to_vec())
            .collect())
    }
}

impl Mpi {
    /// The counts and offsets of every rank's `n` values.
    fn layout(&self, n: usize) -> Result<(Vec<i32>, Vec<i32>)> {
        let mut counts = vec![0i32; self.size];
        let n = i32::try_from(n)
            .map_err(|_| anyhow!("{n} values to gather from one rank: over MPI's limit"))?;
        self.timed(|| self.world.all_gather_into(&n, &mut counts[..]));
        let displs = counts
            .iter()
            .scan(0i32, |at, &c| {
                let d = *at;
                *at += c;
                Some(d)
            })
            .collect();
        Ok((counts, displs))
    }

    fn gather_at_root<T: Equivalence + Copy + Default>(
        &self,
        local: &[T],
    ) -> Result<Option<Vec<Vec<T>>>> {
        let (counts, displs) = self.layout(local.len())?;
        let root = self.world.process_at_rank(0);
        if self.rank != 0 {
            self.timed(|| root.gather_varcount_into(local));
            return Ok(None);
        }
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        self.gathered
            .fetch_add((total * std::mem::size_of::<T>()) as u64, Ordering::Relaxed);
        let mut all = vec![T::default(); total];
        {
            let mut part = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
            self.timed(|| root.gather_varcount_into_root(local, &mut part));
        }
        Ok(Some(
            displs
                .iter()
                .zip(&counts)
                .map(|(&d, &c)| all[d as usize..(d + c) as usize].to_vec())
                .collect(),
        ))
    }
}

impl Comm for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world(&self) -> usize {
        self.size
    }
    fn sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        self.sum(buf)
    }
    fn sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.sum(buf)
    }
    fn gather_f32(&self, local: &[f32]) -> Result<Vec<Vec<f32>>> {
        self.gather(local)
    }
    fn gather_u64(&self, local: &[u64]) -> Result<Vec<Vec<u64>>> {
        self.gather(local)
    }
    fn gather_f32_at_root(&self, local: &[f32]) -> Result<Option<Vec<Vec<f32>>>> {
        self.gather_at_root(local)
    }
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()> {
        self.summed
            .fetch_add(std::mem::size_of_val(buf) as u64, Ordering::Relaxed);
        let root = self.world.process_at_rank(root as i32);
        for piece in buf.chunks_mut(PIECE) {
            self.timed(|| root.broadcast_into(piece));
        }
        Ok(())
    }
    fn name(&self) -> &'static str {
        "MPI"
    }
    fn usage(&self) -> Usage {
        Usage {
            calls: self.calls.load(Ordering::Relaxed),
            seconds: self.nanos.load(Ordering::Relaxed) as f64 / 1e9,
            summed_bytes: self.summed.load(Ordering::Relaxed),
            gathered_bytes: self.gathered.load(Ordering::Relaxed),
        }
    }
}
