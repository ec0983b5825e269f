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
//! Security (issue 19): [`Broker::start_with_scram`] starts tansu with `--authentication`
//! and one SCRAM-SHA-512 user made by tansu's own `tansu user create` (on SQLite storage:
//! the user is created before authentication is turned on, since tansu refuses an
//! unauthenticated `user create` once it is); [`Broker::start_advertising`] advertises
//! another port, where a [`TlsTerminator`] (socat with OpenSSL, in front of tansu, whose
//! 0.6.0 accepts `--cert/--key` but serves plain TCP) takes TLS connections with a
//! certificate from [`Certificates::make`] (the `openssl` CLI).
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
    /// The port advertised in metadata (a TLS terminator's), when not `port`.
    advertised: Option<u16>,
    /// A SCRAM user (name, password) when started with `--authentication`.
    scram: Option<(String, String)>,
}

impl Broker {
    /// Starts a broker on a free loopback port and waits until it answers metadata
    /// requests. Panics (with the broker's log tail) if it does not within 20 s, or with
    /// installation instructions if tansu is not installed.
    pub fn start(storage: Storage) -> Broker {
        let mut broker = Broker::unstarted(storage);
        broker.spawn_and_wait();
        broker
    }

    /// Starts a broker (memory storage) that tells clients to connect to `advertised`
    /// (a TLS terminator's port in front of it) rather than to itself.
    pub fn start_advertising(advertised: u16) -> Broker {
        let mut broker = Broker::unstarted(Storage::Memory);
        broker.advertised = Some(advertised);
        broker.spawn_and_wait();
        broker
    }

    /// Starts a broker with `--authentication` (SASL/SCRAM) on SQLite storage that knows
    /// one SCRAM-SHA-512 user, created with `tansu user create` first.
    pub fn start_with_scram(user: &str, password: &str) -> Broker {
        let mut broker = Broker::unstarted(Storage::Sqlite(PathBuf::new()));
        broker.storage = Storage::Sqlite(broker.dir.join("broker.db"));
        broker.spawn_and_wait();
        let created = Command::new(&broker.binary)
            .args(["user", "create", "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", broker.port))
            .args(["--mechanism", "scram512", user, password])
            .output()
            .expect("tansu user create");
        assert!(
            created.status.success(),
            "tansu user create failed: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        broker.stop();
        broker.scram = Some((user.to_string(), password.to_string()));
        broker.spawn_and_wait();
        broker
    }

    /// The librdkafka properties a client needs for this broker's SCRAM user (none
    /// without authentication).
    pub fn scram_properties(&self) -> Vec<(String, String)> {
        match &self.scram {
            Some((user, password)) => vec![
                ("security.protocol".into(), "sasl_plaintext".into()),
                ("sasl.mechanisms".into(), "SCRAM-SHA-512".into()),
                ("sasl.username".into(), user.clone()),
                ("sasl.password".into(), password.clone()),
            ],
            None => Vec::new(),
        }
    }

    fn unstarted(storage: Storage) -> Broker {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "markledger-tansu-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("broker temporary directory");
        let port = free_port();
        Broker {
            binary: tansu_binary(),
            storage,
            port,
            log: dir.join("tansu.log"),
            dir,
            child: None,
            starts: 0,
            advertised: None,
            scram: None,
        }
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
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised.unwrap_or(self.port));
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
            .arg(&advertised)
            .arg("--storage-engine")
            .arg(&storage_url)
            .args(self.scram.as_ref().map(|_| "--authentication"))
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
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.brokers())
            .set("socket.timeout.ms", "1000")
            .set("reconnect.backoff.ms", "50");
        for (key, value) in self.scram_properties() {
            config.set(key, value);
        }
        let consumer: BaseConsumer = match config.create() {
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

/// A CA and a server certificate for `127.0.0.1` made with the `openssl` CLI, plus a second,
/// unrelated CA (a client trusting only it must refuse the server).
#[derive(Debug)]
pub struct Certificates {
    /// The CA that signed the server's certificate (PEM).
    pub ca: PathBuf,
    /// Another CA that signed nothing here (PEM).
    pub other_ca: PathBuf,
    /// The server's certificate (PEM), for `127.0.0.1` (subjectAltName IP).
    pub server_certificate: PathBuf,
    /// The server's private key (PEM).
    pub server_key: PathBuf,
}

impl Certificates {
    /// Makes them in `dir`.
    pub fn make(dir: &Path) -> Certificates {
        fs::create_dir_all(dir).expect("certificate directory");
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("the openssl CLI (apt-get install openssl)");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        for (name, subject) in [("ca", "/CN=markledger test CA"), ("other-ca", "/CN=another CA")] {
            openssl(&[
                "req",
                "-x509",
                "-new",
                "-nodes",
                "-newkey",
                "rsa:2048",
                "-sha256",
                "-days",
                "2",
                "-subj",
                subject,
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
            ]);
        }
        fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").expect("extensions file");
        openssl(&[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-sha256",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-sha256",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        Certificates {
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other-ca.pem"),
            server_certificate: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        }
    }
}

/// A TLS terminator on a loopback port: `socat` (Debian's, with OpenSSL) takes TLS
/// connections with the server certificate and forwards the plain bytes to a broker.
/// Killed when dropped.
#[derive(Debug)]
pub struct TlsTerminator {
    child: Child,
    port: u16,
}

impl TlsTerminator {
    /// A free loopback port for a terminator (to advertise before the broker starts).
    pub fn free_port() -> u16 {
        free_port()
    }

    /// Starts socat on `port`, forwarding to `127.0.0.1:broker_port`; waits until it
    /// listens.
    pub fn start(port: u16, broker_port: u16, certificates: &Certificates) -> TlsTerminator {
        let listen = format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={},key={}",
            certificates.server_certificate.display(),
            certificates.server_key.display()
        );
        let child = Command::new("socat")
            .arg(listen)
            .arg(format!("TCP:127.0.0.1:{broker_port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat (apt-get install socat; .ci/run installs it)");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        while TcpStream::connect_timeout(&address, PROBE_TIMEOUT).is_err() {
            assert!(Instant::now() < deadline, "socat did not listen on {port}");
            thread::sleep(Duration::from_millis(50));
        }
        TlsTerminator { child, port }
    }

    /// The bootstrap address, `127.0.0.1:PORT`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
