//! A failure ends the process, promptly, with one line that says where (STYLE.md; issue 15).
//!
//! A panic in one timely worker used to leave the others waiting for its progress forever:
//! a hang, the worst failure a billing pipeline can have. Two mechanisms make that
//! impossible:
//! - **The binary** installs [`exit_on_panic`]: any thread's panic prints one line naming the
//!   thread, the stage and the event it was processing (from
//!   `markledger_operators::failure`), tells the registered [`on_failure`] callback (stream
//!   mode records poison pills there), and exits with status [`EXIT_FAILURE_CODE`] at once,
//!   before anything else can be committed. On a cluster, a process that ends makes its
//!   peers' timely TCP threads panic ("timely communication error"): they end the same way,
//!   with a line saying another process went away ([`peer_lost`]), so no process hangs.
//! - **The library** ([`crate::dataflow::run_dataflow`]) catches a worker's panic, raises a
//!   flag the other workers poll between steps, and returns a [`WorkerFailure`], so an
//!   in-process run (the tests) ends too.

use markledger_operators::failure::{self, panic_message};
use std::io::Write;
use std::sync::{Mutex, OnceLock};

/// The exit status of a process that ended on a failure (EX_SOFTWARE).
pub const EXIT_FAILURE_CODE: i32 = 70;

/// Where and how a worker failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerFailure {
    /// The thread (`timely:work-1`, `main`, …).
    pub thread: String,
    /// The stage it was running, if any.
    pub stage: Option<String>,
    /// The event it was processing, if any.
    pub event: Option<String>,
    /// The panic's message, on one line.
    pub message: String,
    /// Source location of the panic, when known.
    pub location: Option<String>,
}

impl WorkerFailure {
    /// The failure of this thread now, from a panic's payload.
    pub fn here(message: &str, location: Option<String>) -> WorkerFailure {
        let doing = failure::current();
        WorkerFailure {
            thread: std::thread::current().name().unwrap_or("unnamed").to_string(),
            stage: doing.stage,
            event: doing.event,
            message: message.split_whitespace().collect::<Vec<_>>().join(" "),
            location,
        }
    }
}

impl std::fmt::Display for WorkerFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed", self.thread)?;
        if let Some(stage) = &self.stage {
            write!(f, " in stage \"{stage}\"")?;
        }
        if let Some(event) = &self.event {
            write!(f, " while processing event \"{event}\"")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(location) = &self.location {
            write!(f, " (at {location})")?;
        }
        Ok(())
    }
}

impl std::error::Error for WorkerFailure {}

type Callback = Box<dyn Fn(&WorkerFailure) + Send>;

fn callback() -> &'static Mutex<Option<Callback>> {
    static CALLBACK: OnceLock<Mutex<Option<Callback>>> = OnceLock::new();
    CALLBACK.get_or_init(|| Mutex::new(None))
}

/// Registers what to do with a failure before the process exits (one callback; a later
/// call replaces it). Stream mode records the failing event for its poison-pill rule.
pub fn on_failure(action: impl Fn(&WorkerFailure) + Send + 'static) {
    if let Ok(mut slot) = callback().lock() {
        *slot = Some(Box::new(action));
    }
}

/// Makes every panic of the process end it at once: one line on stderr (`markledger:
/// fatal: …`, a closed stderr is ignored), the registered callback, exit status
/// [`EXIT_FAILURE_CODE`]. For the binary only: a library caller keeps Rust's default.
pub fn exit_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        // One line per process: when workers fail together (a full disk reaches each of
        // them), the first ends the process and the others wait for it to.
        static ENDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if ENDING.swap(true, std::sync::atomic::Ordering::SeqCst) {
            loop {
                std::thread::park();
            }
        }
        let message = panic_message(info.payload());
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
        let failure = WorkerFailure::here(&message, location);
        let _ = if is_peer_lost(&message) {
            writeln!(std::io::stderr(), "markledger: fatal: {}", peer_lost(&failure))
        } else {
            writeln!(
                std::io::stderr(),
                "markledger: fatal: {failure}; the process stops (a bug: please report it with this line)"
            )
        };
        // A panic inside the callback must not recurse into this hook's lock.
        if let Ok(slot) = callback().try_lock() {
            if let Some(action) = slot.as_ref() {
                action(&failure);
            }
        }
        std::process::exit(EXIT_FAILURE_CODE);
    }));
}

/// Whether a panic is timely's TCP thread losing another process of a cluster: it panics
/// with a message that starts so (timely_communication's `tcp_panic`).
pub fn is_peer_lost(message: &str) -> bool {
    message.starts_with("timely communication error")
}

/// What a process says when another process of its cluster went away (it failed, was
/// killed, or its machine or network did): this one stops too, since a timely cluster does
/// not survive the loss of a process.
pub fn peer_lost(failure: &WorkerFailure) -> String {
    format!(
        "lost the connection to another process of the cluster ({}: {}); it stopped or failed \
         (see its own messages), so this process stops too: restart every process of the run",
        failure.thread, failure.message
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_reads_as_one_line_naming_stage_and_event() {
        // The Display of a failure with and without stage and event.
        let failure = WorkerFailure {
            thread: "timely:work-1".into(),
            stage: Some("Accounts: lifecycle, balance, FIFO".into()),
            event: Some("p-9".into()),
            message: "money out of its exact range".into(),
            location: Some("operators/src/money.rs:98".into()),
        };
        assert_eq!(
            failure.to_string(),
            "timely:work-1 failed in stage \"Accounts: lifecycle, balance, FIFO\" while processing event \"p-9\": \
             money out of its exact range (at operators/src/money.rs:98)"
        );
        let bare = WorkerFailure {
            stage: None,
            event: None,
            location: None,
            ..failure
        };
        assert_eq!(bare.to_string(), "timely:work-1 failed: money out of its exact range");
        let here = WorkerFailure::here("two\nlines", None);
        assert_eq!(here.message, "two lines");
        // A lost peer is told as such, not as a bug.
        let lost = WorkerFailure {
            thread: "timely:recv-1".into(),
            message: "timely communication error: reading data: socket closed".into(),
            ..bare
        };
        assert!(is_peer_lost(&lost.message));
        assert!(peer_lost(&lost).starts_with("lost the connection to another process of the cluster (timely:recv-1:"));
    }
}
