//! Printing that a closed pipe cannot break: a progress line or a summary written to a
//! closed stdout or stderr (`markledger run … | head`, a supervisor that closed its end) is
//! dropped, never a panic that would lose the run's outputs (issue 15). Rust's own
//! `println!` and `eprintln!` panic on a write error; use these instead.

/// Like `println!`, but a failed write (EPIPE) is ignored.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Like `eprintln!`, but a failed write (EPIPE) is ignored.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// Writes `text` as is to stdout (a rendered summary), ignoring a failed write.
pub fn say_text(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
