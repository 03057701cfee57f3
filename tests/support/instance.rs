//! A `scorestream run` child process for tests that kill and restart it: its stderr
//! captured, SIGKILL or SIGTERM by PID, reaped on drop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `scorestream run` child with its log captured.
pub struct Instance {
    pub child: Child,
    log: Arc<Mutex<String>>,
}

impl Instance {
    pub fn start(config: &Path, state_dir: &Path) -> Instance {
        Self::start_with_env(config, state_dir, &[])
    }

    /// [`start`](Self::start) with extra environment variables (e.g. a fixed HTTP address).
    pub fn start_with_env(config: &Path, state_dir: &Path, env: &[(&str, &str)]) -> Instance {
        let mut child = Command::new(env!("CARGO_BIN_EXE_scorestream"))
            .args(["run", "--config", config.to_str().unwrap()])
            .env("SCORESTREAM_STATE_DIR", state_dir)
            .env("SCORESTREAM_HTTP_ADDR", "127.0.0.1:0")
            // `SCORESTREAM_TEST_INSTANCE_LOG` (e.g. `info,scorestream::runtime=debug`) to
            // see more of what an instance did.
            .env(
                "RUST_LOG",
                std::env::var("SCORESTREAM_TEST_INSTANCE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn scorestream");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Instance { child, log }
    }

    /// [`start`](Self::start) with its HTTP listener on 127.0.0.1:`port`.
    pub fn start_on_port(config: &Path, state_dir: &Path, port: u16) -> Instance {
        let addr = format!("127.0.0.1:{port}");
        Self::start_with_env(config, state_dir, &[("SCORESTREAM_HTTP_ADDR", &addr)])
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "scorestream exited ({status}) waiting for '{needle}':\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn kill9(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log()
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                let log = self.log();
                assert!(s.success(), "exit {s}:\n{log}");
                return log;
            }
            if Instant::now() > deadline {
                return self.kill9() + "\n(did not stop within 60 s of SIGTERM)";
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `scorestream state dump --store <store>` against `config`: the committed entries as JSON
/// values, rebuilt from the changelogs.
pub fn dump_store(config: &Path, store: &str, timeout: &str) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_scorestream"))
        .args([
            "state",
            "dump",
            "--config",
            config.to_str().unwrap(),
            "--store",
            store,
            "--timeout",
            timeout,
        ])
        .output()
        .expect("run state dump");
    assert!(
        out.status.success(),
        "state dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
