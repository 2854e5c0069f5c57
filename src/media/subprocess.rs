//! Child processes under a timeout: runs an external tool to completion
//! within a wall-clock limit, kills it when the limit passes, and captures
//! its output up to a cap, so that a tool fed a hostile file can neither hang
//! nor flood this process.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{MediaError, Result};

/// A finished tool's exit status and (capped) output.
pub(super) struct ToolOutput {
    pub(super) status: ExitStatus,
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: Vec<u8>,
}

/// How often `run_tool` checks whether the child has exited. Short enough to
/// add no noticeable latency, long enough to cost nothing.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Upper bound on the stderr we keep (diagnostics only).
const MAX_STDERR_BYTES: u64 = 64 * 1024;

/// Runs `cmd` to completion within `timeout`, capturing stdout (at most
/// `max_stdout` bytes) and stderr. On timeout the child is killed. Output
/// beyond the cap is refused as `TooLarge`.
///
/// The pipes are drained on their own threads while this thread polls for
/// exit: a child that fills a pipe nobody reads would block forever and turn
/// every large output into a timeout.
pub(super) fn run_tool(
    mut cmd: Command,
    tool: &'static str,
    path: &Path,
    timeout: Duration,
    max_stdout: u64,
) -> Result<ToolOutput> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| MediaError::Tool {
        path: path.to_owned(),
        tool,
        message: format!("cannot start {tool} (is poppler-utils installed?): {e}"),
    })?;
    let stdout = drain(child.stdout.take(), max_stdout);
    let stderr = drain(child.stderr.take(), MAX_STDERR_BYTES);
    let status = wait_with_timeout(&mut child, timeout).map_err(|e| MediaError::Tool {
        path: path.to_owned(),
        tool,
        message: format!("waiting for {tool} failed: {e}"),
    })?;
    let stdout = join_drain(stdout);
    let stderr = join_drain(stderr);
    let Some(status) = status else {
        return Err(MediaError::Timeout {
            path: path.to_owned(),
            tool,
            seconds: timeout.as_secs_f64(),
        });
    };
    let (stdout, stdout_overflow) = stdout;
    if stdout_overflow {
        return Err(MediaError::TooLarge {
            path: path.to_owned(),
            what: "tool output in bytes",
            actual: max_stdout + 1,
            limit: max_stdout,
        });
    }
    Ok(ToolOutput {
        status,
        stdout,
        stderr: stderr.0,
    })
}

/// Reads a pipe to its end on a thread, keeping at most `cap` bytes. If the
/// child writes more, the read end is dropped, so its next write fails
/// (EPIPE / SIGPIPE) and it exits instead of producing gigabytes.
fn drain<R: Read + Send + 'static>(
    pipe: Option<R>,
    cap: u64,
) -> Option<JoinHandle<(Vec<u8>, bool)>> {
    let pipe = pipe?;
    Some(std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut limited = pipe.take(cap + 1);
        // A read error mid-way leaves what was read so far; the exit status
        // tells whether the tool succeeded.
        let _ = limited.read_to_end(&mut buf);
        let overflow = buf.len() as u64 > cap;
        buf.truncate(cap as usize);
        (buf, overflow)
    }))
}

fn join_drain(handle: Option<JoinHandle<(Vec<u8>, bool)>>) -> (Vec<u8>, bool) {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

/// Waits for `child` until `timeout`; kills and reaps it on timeout and
/// returns `None`.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            // kill() fails only if the child already exited; wait() reaps
            // it either way so no zombie is left.
            let _ = child.kill();
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// A path as a command-line argument that cannot be mistaken for an option.
pub(super) fn tool_path_arg(path: &Path) -> PathBuf {
    if path.as_os_str().to_string_lossy().starts_with('-') {
        Path::new(".").join(path)
    } else {
        path.to_owned()
    }
}
