//! Log and output lines that never end a run: `println!` and `eprintln!`
//! panic when the stream is closed (`trainer train 2>&1 | head -2`); these
//! drop the line instead, and the work goes on.

/// A line on stderr (logs, progress, warnings); dropped if stderr is closed.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
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
