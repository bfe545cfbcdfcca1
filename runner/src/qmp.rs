//! A small QMP client (QEMU Machine Protocol) over the VM's unix socket.
//!
//! QEMU serves one QMP client at a time, so every user connects, does its business and
//! disconnects: the runner, `hotkernel status` and `hotkernel stop` never hold the
//! socket between commands.
//!
//! Protocol: QEMU greets with `{"QMP": …}`; the client sends `qmp_capabilities`; then
//! each `{"execute": …}` gets one `{"return": …}` or `{"error": …}`, with asynchronous
//! `{"event": …}` lines possibly in between (skipped here).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{Error, Result};

/// How long one QMP reply may take before the client gives up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// A connected, negotiated QMP session.
pub struct Qmp {
    socket: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

/// The VM's run state (`query-status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunState {
    /// QEMU's run state: `running`, `paused`, `shutdown`, `internal-error`, …
    pub status: String,
    pub running: bool,
}

impl Qmp {
    /// Connects to `socket` (retrying while QEMU is still creating it, up to `timeout`)
    /// and negotiates capabilities.
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Self> {
        let stream = connect_retrying(socket, timeout, &mut || Ok(())).map_err(|e| Error::Qmp {
            socket: socket.to_path_buf(),
            message: format!("cannot connect ({e}); is the VM running?"),
        })?;
        let fail = |message: String| Error::Qmp {
            socket: socket.to_path_buf(),
            message,
        };
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(|e| fail(e.to_string()))?;
        let writer = stream.try_clone().map_err(|e| fail(e.to_string()))?;
        let mut qmp = Qmp {
            socket: socket.to_path_buf(),
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(qmp.error(format!("expected QMP greeting, got {greeting}")));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs a command; returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let mut request = json!({ "execute": command });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut line = request.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(|e| self.error(format!("sending `{command}`: {e}")))?;
        loop {
            let reply = self.read_message()?;
            if let Some(value) = reply.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = reply.get("error") {
                let desc = error
                    .get("desc")
                    .and_then(Value::as_str)
                    .unwrap_or("no description");
                return Err(self.error(format!("`{command}` failed: {desc}")));
            }
            // An event: not the reply.
        }
    }

    /// `query-status`.
    pub fn query_status(&mut self) -> Result<RunState> {
        let value = self.execute("query-status", None)?;
        let status = value.get("status").and_then(Value::as_str);
        let running = value.get("running").and_then(Value::as_bool);
        match (status, running) {
            (Some(status), Some(running)) => Ok(RunState {
                status: status.to_owned(),
                running,
            }),
            _ => Err(self.error(format!("unexpected query-status reply {value}"))),
        }
    }

    /// `quit`: QEMU ends the VM and exits with status 0. QEMU may close the socket
    /// before its reply arrives; that counts as done.
    pub fn quit(mut self) -> Result<()> {
        match self.execute("quit", None) {
            Ok(_) => Ok(()),
            Err(_) if self.peer_closed() => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn peer_closed(&mut self) -> bool {
        matches!(self.reader.fill_buf(), Ok([]))
    }

    fn read_message(&mut self) -> Result<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(self.error("QEMU closed the connection".to_owned())),
            Ok(_) => serde_json::from_str(&line)
                .map_err(|e| self.error(format!("bad JSON {line:?}: {e}"))),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(self.error(format!(
                    "no reply within {}s (is another QMP client connected?)",
                    REPLY_TIMEOUT.as_secs()
                )))
            }
            Err(e) => Err(self.error(e.to_string())),
        }
    }

    fn error(&self, message: String) -> Error {
        Error::Qmp {
            socket: self.socket.clone(),
            message,
        }
    }
}

/// Connects to a unix socket that a starting QEMU is about to create: retries while
/// the socket is missing or refuses, until `timeout`; `still_starting` is asked between
/// tries and aborts the wait with its error (e.g. QEMU has exited).
pub(crate) fn connect_retrying(
    socket: &Path,
    timeout: Duration,
    still_starting: &mut dyn FnMut() -> Result<()>,
) -> Result<UnixStream> {
    let deadline = Instant::now() + timeout;
    loop {
        match UnixStream::connect(socket) {
            Ok(stream) => return Ok(stream),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) && Instant::now() < deadline =>
            {
                still_starting()?;
                // QEMU creates its sockets within milliseconds of starting; poll gently.
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(Error::io(format!("connect to {}", socket.display()), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake QEMU: greets, answers each command from `replies` (events first when a
    /// reply is an array), records what it was sent.
    fn fake_qemu(replies: Vec<Vec<Value>>) -> (PathBuf, std::thread::JoinHandle<Vec<String>>) {
        let dir = std::env::temp_dir().join(format!(
            "hotkernel-qmp-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("qmp.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut out = stream.try_clone().unwrap();
            let mut input = BufReader::new(stream);
            writeln!(out, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            let mut received = Vec::new();
            for reply in replies {
                let mut line = String::new();
                if input.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                received.push(line.trim().to_owned());
                for message in reply {
                    writeln!(out, "{message}").unwrap();
                }
            }
            received
        });
        (path, server)
    }

    #[test]
    fn negotiates_skips_events_and_reads_status() {
        let (path, server) = fake_qemu(vec![
            vec![json!({"return": {}})],
            vec![
                json!({"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 2}}),
                json!({"return": {"status": "running", "singlestep": false, "running": true}}),
            ],
            vec![json!({"error": {"class": "GenericError", "desc": "no such thing"}})],
        ]);
        let mut qmp = Qmp::connect(&path, Duration::from_secs(10)).unwrap();
        let state = qmp.query_status().unwrap();
        assert_eq!(
            state,
            RunState {
                status: "running".into(),
                running: true
            }
        );
        let err = qmp
            .execute("bogus", Some(json!({"x": 1})))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`bogus` failed: no such thing"), "{err}");
        drop(qmp);
        let sent = server.join().unwrap();
        assert_eq!(sent[0], r#"{"execute":"qmp_capabilities"}"#);
        assert_eq!(sent[1], r#"{"execute":"query-status"}"#);
        assert_eq!(sent[2], r#"{"arguments":{"x":1},"execute":"bogus"}"#);
    }

    #[test]
    fn quit_accepts_a_closed_connection() {
        // The fake answers capabilities, then closes without answering `quit`.
        let (path, server) = fake_qemu(vec![vec![json!({"return": {}})], vec![]]);
        let qmp = Qmp::connect(&path, Duration::from_secs(10)).unwrap();
        qmp.quit().unwrap();
        assert_eq!(server.join().unwrap()[1], r#"{"execute":"quit"}"#);
    }

    #[test]
    fn a_missing_socket_is_reported() {
        let err = Qmp::connect(
            Path::new("/nonexistent/hotkernel/qmp.sock"),
            Duration::from_millis(20),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("is the VM running?"), "{err}");
    }
}
