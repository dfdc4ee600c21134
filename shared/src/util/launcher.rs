//! The rank a parallel launcher started this process as, read from the
//! environment it sets: Open MPI's mpirun (`OMPI_COMM_WORLD_RANK`/`_SIZE`),
//! MPICH / Intel MPI and Slurm's PMI (`PMI_RANK`/`PMI_SIZE`), PMIx under
//! Slurm (`PMIX_RANK` with `SLURM_STEP_NUM_TASKS`). Slurm's own
//! `SLURM_PROCID` alone is not taken: a batch script's shell has it too.

/// This process's place among the processes of one launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranks {
    pub rank: usize,
    pub world: usize,
}

fn var(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// The launch this process is part of; None when no launcher started it.
pub fn ranks() -> Option<Ranks> {
    [
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
        ("PMI_RANK", "PMI_SIZE"),
        ("PMIX_RANK", "SLURM_STEP_NUM_TASKS"),
    ]
    .iter()
    .find_map(|(r, w)| {
        let (rank, world) = (var(r)?, var(w)?);
        (rank < world).then_some(Ranks { rank, world })
    })
}
