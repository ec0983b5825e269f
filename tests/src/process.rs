//! What the tests that run `markledger` as a process (stream, run with metrics, logs)
//! repeated: a fresh scratch directory, a free loopback port, an orderly stop by SIGTERM
//! that must succeed within a bound, a scrape of the metrics endpoint, and waiting for a
//! condition while the process must stay alive.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// How long a stream has to stop after SIGTERM (it finishes what is before the watermark,
/// commits and writes its summary).
pub const STOP_WITHIN: Duration = Duration::from_secs(60);

/// An empty directory `markledger-PREFIX-PID-NAME` under the system's temporary directory
/// (emptied first if an earlier run left it).
pub fn temp_dir(prefix: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("markledger-{prefix}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A loopback port nothing listens on (the OS's pick, released at once).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("a free port")
        .local_addr()
        .expect("address")
        .port()
}

/// Sends SIGTERM to `child` (the orderly stop).
pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -TERM {}", child.id());
}

/// Stops `child` with SIGTERM and asserts it exits successfully within [`STOP_WITHIN`].
pub fn terminate(mut child: Child) {
    sigterm(&child);
    let deadline = Instant::now() + STOP_WITHIN;
    loop {
        if let Some(status) = child.try_wait().expect("child") {
            assert!(status.success(), "the process exited with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "the process did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One scrape of `http://127.0.0.1:PORT/metrics`: every sample line, `name{labels}` →
/// value. None when nothing answers or the answer is not 200 (a server stopping as the
/// run ends answers 500).
pub fn scrape(port: u16) -> Option<BTreeMap<String, f64>> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(
        body.lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect(),
    )
}

/// One metric of a scrape (None: no answer, or no such sample).
pub fn scrape_one(port: u16, name: &str) -> Option<f64> {
    scrape(port)?.get(name).copied()
}

/// Polls `done` every 300 ms until it holds; panics naming `what` if `child` exits first
/// or `within` passes.
pub fn wait_for(what: &str, within: Duration, child: &mut Child, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return;
        }
        assert!(
            child.try_wait().expect("child").is_none(),
            "the process exited before {what}"
        );
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}
