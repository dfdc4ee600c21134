//! Log and output lines that never end a run: `println!` and `eprintln!`
//! panic when the stream is closed (`trainer train 2>&1 | head -2`); these
//! drop the line instead, and the work goes on.

use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Silences [`say!`] in this process (ranks other than 0 of a data-parallel
/// run: rank 0 speaks for all). Errors are still printed.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

pub fn is_quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// A line on stderr (logs, progress, warnings), written whole; dropped if
/// stderr is closed or the process is quiet ([`set_quiet`]).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if !$crate::util::say::is_quiet() {
            // one write a line: processes sharing a stderr (ranks under
            // mpirun) interleave whole lines, not pieces of them
            let line = format!("{}\n", format_args!($($arg)*));
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }};
}

/// A line on stdout (a command's result); dropped if stdout is closed.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
