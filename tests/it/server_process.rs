//! The real `tkr-embed serve` as a child process on a data directory, for
//! the tests that kill it, fill its disk or stop it with a signal.
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::model_parity::fixture_dir;

/// The server process; killed (SIGKILL) and reaped when dropped, so it never
/// outlives the test.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_server(data: &Path, log: &Path) -> Server {
    start_server_with(data, log, &[])
}

/// [`start_server`] with `TKR_*` settings in its environment.
pub fn start_server_with(data: &Path, log: &Path, env: &[(&str, &str)]) -> Server {
    let log_file = File::options().create(true).append(true).open(log).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tkr-embed"));
    command
        .arg("--model")
        .arg(fixture_dir().join("model"))
        .arg("--data-dir")
        .arg(data)
        .args(["--log-level", "warn", "serve", "--host", "127.0.0.1"])
        // A free port each start; the server prints the one it got.
        .args(["--port", "0"])
        // No ./config.yaml of the checkout, no TKR_* of the caller.
        .current_dir(data.parent().unwrap())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file));
    for (key, _) in std::env::vars() {
        if key.starts_with("TKR_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    let mut server = Server {
        child: command.spawn().unwrap(),
        url: String::new(),
    };
    let stdout = server.child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    // Reads stdout to its end (the process's end), so the child never blocks
    // on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while server.url.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(url) = line.strip_prefix("listening on ") {
                    server.url = url.trim().to_owned();
                }
            }
            Err(e) => panic!(
                "the server did not start ({e}); its log:\n{}",
                log_tail(log)
            ),
        }
    }
    server
}

pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

impl Server {
    /// Sends SIGTERM and waits up to `limit` for the process to end; its
    /// exit status, or `None` if it was still running (then it is killed).
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}
