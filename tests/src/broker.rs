//! A real Kafka broker for tests: a `tansu` child process on a free loopback port.
//!
//! [`Broker::start`] spawns `tansu broker` with memory or SQLite storage in a temporary
//! directory, waits until it answers a Kafka metadata request, and hands out its address
//! ([`Broker::brokers`]). [`Broker::stop`] / [`Broker::kill`] / [`Broker::restart`] drive
//! broker-outage tests: a restart reuses the same port and storage (with SQLite, topics,
//! records and committed offsets survive it). The child is killed when the fixture drops.
//! Its stdout and stderr go to a log file whose tail is printed when the broker fails to
//! come up, and by [`Broker::log_tail`] for a test's own failure messages.
//!
//! The binary is found through `MARKLEDGER_TANSU`, else
//! `$HOME/.local/markledger-tools/bin/tansu`, else `tansu` on `PATH`; install it with
//! `scripts/kafka/install-tansu.sh` (TOOLCHAIN.md: tansu 0.6.0 with `dynostore,libsql`).

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How long a starting broker has to answer a metadata request.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long one metadata probe waits.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

/// Bytes of the broker's log shown when it fails.
const LOG_TAIL_BYTES: usize = 4000;

/// How long a stopped broker has to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the broker keeps its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storage {
    /// In memory: lost when the process ends (`memory://tansu/`). tansu 0.6.0 serves a
    /// fetch from memory storage only from batch boundaries: a consumer resuming at an
    /// offset inside a produced batch misses the rest of that batch. Use
    /// [`Storage::Sqlite`] for tests that resume from committed offsets.
    Memory,
    /// A SQLite file (`sqlite://…`): survives restarts.
    Sqlite(PathBuf),
}

/// A running (or stopped) tansu broker owned by a test.
#[derive(Debug)]
pub struct Broker {
    binary: PathBuf,
    storage: Storage,
    port: u16,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Broker {
    /// Starts a broker on a free loopback port and waits until it answers metadata
    /// requests. Panics (with the broker's log tail) if it does not within 20 s, or with
    /// installation instructions if tansu is not installed.
    pub fn start(storage: Storage) -> Broker {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "markledger-tansu-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("broker temporary directory");
        let port = free_port();
        let mut broker = Broker {
            binary: tansu_binary(),
            storage,
            port,
            log: dir.join("tansu.log"),
            dir,
            child: None,
            starts: 0,
        };
        broker.spawn_and_wait();
        broker
    }

    /// The bootstrap address, `127.0.0.1:PORT`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the broker process is running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stops the broker: SIGTERM, then SIGKILL if it has not exited within 5 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let terminated = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .is_ok_and(|status| status.success());
        if terminated {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    self.wait_port_free();
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        self.wait_port_free();
    }

    /// Kills the broker at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.wait_port_free();
        }
    }

    /// Stops the broker if it runs, then starts it again on the same port with the same
    /// storage and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn_and_wait();
    }

    /// The storage it was started with.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The last few kilobytes of the broker's stdout and stderr.
    pub fn log_tail(&self) -> String {
        let bytes = fs::read(&self.log).unwrap_or_default();
        let start = bytes.len().saturating_sub(LOG_TAIL_BYTES);
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    fn spawn_and_wait(&mut self) {
        assert!(self.child.is_none(), "the broker is already running");
        self.starts += 1;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("broker log file");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let (storage_url, cwd) = match &self.storage {
            Storage::Memory => ("memory://tansu/".to_string(), self.dir.clone()),
            // tansu resolves `sqlite://NAME` against its working directory
            // (tansu-storage lite.rs), so run it where the file is.
            Storage::Sqlite(path) => {
                let path = if path.is_absolute() {
                    path.clone()
                } else {
                    std::env::current_dir().expect("current directory").join(path)
                };
                let parent = path.parent().expect("the SQLite file's directory").to_path_buf();
                fs::create_dir_all(&parent).expect("the SQLite file's directory");
                let name = path
                    .file_name()
                    .expect("a SQLite file name")
                    .to_string_lossy()
                    .into_owned();
                (format!("sqlite://{name}"), parent)
            }
        };
        let child = Command::new(&self.binary)
            .arg("broker")
            .arg("--listener-url")
            .arg(&url)
            .arg("--advertised-listener-url")
            .arg(&url)
            .arg("--storage-engine")
            .arg(&storage_url)
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("broker log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("spawning {}: {error}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if !self.is_running() {
                panic!(
                    "tansu exited during start {} ({}); its log:\n{}",
                    self.starts,
                    self.binary.display(),
                    self.log_tail()
                );
            }
            if self.answers_metadata() {
                return;
            }
            if Instant::now() >= deadline {
                let tail = self.log_tail();
                self.kill();
                panic!("tansu did not answer a metadata request within {STARTUP_TIMEOUT:?}; its log:\n{tail}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn answers_metadata(&self) -> bool {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        if TcpStream::connect_timeout(&address, PROBE_TIMEOUT).is_err() {
            return false;
        }
        let consumer: BaseConsumer = match ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("socket.timeout.ms", "1000")
            .set("reconnect.backoff.ms", "50")
            .create()
        {
            Ok(consumer) => consumer,
            Err(_) => return false,
        };
        consumer
            .fetch_metadata(None, PROBE_TIMEOUT)
            .is_ok_and(|metadata| !metadata.brokers().is_empty())
    }

    fn wait_port_free(&self) {
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if TcpListener::bind((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "tansu broker on port {} (log kept in {}); its log tail:\n{}",
                self.port,
                self.log.display(),
                self.log_tail()
            );
        }
    }
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a free loopback port");
    listener.local_addr().expect("bound address").port()
}

/// The tansu binary: `MARKLEDGER_TANSU`, else `$HOME/.local/markledger-tools/bin/tansu`,
/// else `tansu` on `PATH`.
pub fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MARKLEDGER_TANSU") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "MARKLEDGER_TANSU={} is not a file; run scripts/kafka/install-tansu.sh",
            path.display()
        );
        return path;
    }
    if let Some(home) = std::env::var_os("HOME") {
        let path = Path::new(&home).join(".local/markledger-tools/bin/tansu");
        if path.is_file() {
            return path;
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let path = dir.join("tansu");
            if path.is_file() {
                return path;
            }
        }
    }
    panic!(
        "the tansu Kafka broker is not installed: run scripts/kafka/install-tansu.sh \
         (or point MARKLEDGER_TANSU at a tansu 0.6.0 binary built with dynostore,libsql)"
    );
}
