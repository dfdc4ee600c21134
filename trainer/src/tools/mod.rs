//! Tools around the training core: none of the core modules imports these.

pub mod bench; // `trainer bench`: CLM and SLM step times side by side
pub mod demo; // `trainer demo`: the whole pipeline on the embedded corpus
pub mod demo_stages; // what made each stage of a demo work directory
pub mod plot; // dependency-free SVG line charts
pub mod read_bench; // `trainer read-bench`: the training reader alone, one epoch
pub mod report; // `trainer report`: seed-grouped tables and plots of runs
pub mod selection; // `trainer selection`: what a rule keeps, by document label
