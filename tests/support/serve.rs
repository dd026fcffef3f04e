//! `kugetsu serve` as a child process, for tests that kill it with SIGKILL.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct ServeProcess {
    child: Child,
    addr: String,
    pub log: PathBuf,
}

impl ServeProcess {
    /// Starts `kugetsu serve`; with `crash_at`, it kills itself at that point.
    pub fn spawn(config: &Path, vars: &[(String, String)], crash_at: Option<&str>, log: PathBuf) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kugetsu"));
        cmd.arg("--config").arg(config).arg("serve").env("KUGETSU_LOG", "info,kugetsu=debug");
        cmd.envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(point) = crash_at {
            cmd.env("KUGETSU_CRASH_AT", point);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kugetsu serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let log_path = log.clone();
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("log file");
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                // `addr=…` in text logs, `"addr":"…"` in JSON ones.
                let found = line.find("addr=").map(|at| at + 5).or_else(|| line.find("\"addr\":\"").map(|at| at + 8));
                if let Some(at) = found {
                    let addr = line[at..].split(|c: char| c.is_whitespace() || c == '"').next().unwrap_or_default();
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
            panic!("kugetsu serve did not start: {}", std::fs::read_to_string(&log).unwrap_or_default())
        });
        Self { child, addr, log }
    }

    pub fn url(&self, instance: &str) -> String {
        format!("http://{}/webhooks/{instance}", self.addr)
    }

    /// Waits for the process to end on its own (a crash point); true if it did.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
