//! A Tansu broker process for one test: free loopback port, memory storage, output to a
//! log file, killed by PID (and reaped) when dropped — also when the test panics.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

pub struct Tansu {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
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

impl Tansu {
    /// Starts a memory-storage broker and waits (at most 20 s) until it answers metadata.
    pub fn start() -> Tansu {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("tansu.log");
        let port = super::free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("tansu.err")).unwrap())
            .spawn()
            .expect("spawn tansu");
        let broker = Tansu {
            child,
            port,
            log,
            _dir: dir,
        };
        broker.wait_ready(Duration::from_secs(20));
        broker
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

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
