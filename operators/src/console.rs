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

/// Like `eprintln!`, but a failed write (EPIPE) is ignored; once the binary has installed
/// a log subscriber ([`use_tracing`]), an info event of target `markledger` instead, so
/// `--log-format json` and `RUST_LOG` apply to every line.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {{
        $crate::console::note_line(format_args!($($arg)*));
    }};
}

static TRACING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on `note!` lines are tracing events (the binary calls this after installing
/// its subscriber).
pub fn use_tracing() {
    TRACING.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// What `note!` does.
pub fn note_line(line: std::fmt::Arguments<'_>) {
    if TRACING.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::info!(target: "markledger", "{line}");
    } else {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

/// An error line (the binary's last words): a tracing error event once tracing is in use.
pub fn error_line(line: std::fmt::Arguments<'_>) {
    if TRACING.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::error!(target: "markledger", "{line}");
    } else {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

/// Writes `text` as is to stdout (a rendered summary), ignoring a failed write.
pub fn say_text(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
