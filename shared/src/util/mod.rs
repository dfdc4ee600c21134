//! Small infrastructure that every layer uses; nothing here knows about
//! tokens, models or score sets.

pub mod atomic; // files and directories that appear whole or not at all
pub mod device; // `--device cpu|cuda[:N]` and CPU thread settings
pub mod fault; // fault injection points for the crash tests
pub mod gguf; // the GGUF container: metadata look-ups, tensors dequantized
pub mod guard; // decoder panics caught and turned into errors
pub mod hash; // SHA-256 fingerprints
pub mod interrupt; // SIGTERM / SIGINT as a request to stop between steps
pub mod launcher; // the rank and world size mpirun or srun started this process as
pub mod location; // local paths only: URLs refused by scheme, file:// made a path
pub mod lock; // a directory claimed by one process, the holder named to the next
pub mod outdir; // an --out that is new, empty or ours; never inside an input
pub mod parquet; // checks every Parquet reader runs before decoding untrusted files
pub mod progress; // progress bars and log lines for long jobs
pub mod ratio; // the (0, 1] check of every keep-ratio flag
pub mod rng; // the seeded SplitMix64 generator and permutations
pub mod say; // say! and out!: lines that a closed pipe cannot turn into a panic
