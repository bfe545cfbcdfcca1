//! The guest's serial console (COM1): a reader thread that records every line with the
//! host time it arrived at and hands the bytes on (to the VM's console log and, when
//! asked, the terminal's echo: `crate::vm`).
//!
//! Lines are kept as the guest wrote them, without the line ending. A line's time is
//! when its newline was read from the socket, so it is an upper bound of when the guest
//! printed it (plus the socket's latency, microseconds).

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

/// One line the guest printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialLine {
    /// Position in the log: the first line is 0.
    pub index: usize,
    /// The text, without `\r\n` / `\n` (invalid UTF-8 replaced).
    pub text: String,
    /// When the runner read the line's end.
    pub at: Instant,
}

/// What a wait for a line ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineWait {
    Found(SerialLine),
    /// The console closed (QEMU ended) without such a line.
    Closed,
    /// The deadline passed.
    TimedOut,
}

#[derive(Default)]
struct LogState {
    lines: Vec<SerialLine>,
    partial: Vec<u8>,
    closed: bool,
}

/// Every line the guest printed, shared between the reader thread and waiters.
#[derive(Default)]
pub struct SerialLog {
    state: Mutex<LogState>,
    changed: Condvar,
}

impl SerialLog {
    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds bytes read at `at`: every completed line is recorded.
    pub fn push_bytes(&self, bytes: &[u8], at: Instant) {
        let mut state = self.lock();
        let mut added = false;
        for &byte in bytes {
            if byte == b'\n' {
                let mut raw = std::mem::take(&mut state.partial);
                if raw.last() == Some(&b'\r') {
                    raw.pop();
                }
                let index = state.lines.len();
                state.lines.push(SerialLine {
                    index,
                    text: String::from_utf8_lossy(&raw).into_owned(),
                    at,
                });
                added = true;
            } else {
                state.partial.push(byte);
            }
        }
        drop(state);
        if added {
            self.changed.notify_all();
        }
    }

    /// Marks the console closed; an unfinished last line becomes a line.
    pub fn close(&self, at: Instant) {
        let mut state = self.lock();
        if !state.partial.is_empty() {
            let raw = std::mem::take(&mut state.partial);
            let index = state.lines.len();
            state.lines.push(SerialLine {
                index,
                text: String::from_utf8_lossy(&raw).into_owned(),
                at,
            });
        }
        state.closed = true;
        drop(state);
        self.changed.notify_all();
    }

    /// Whether the console has closed.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Waits for the first line at index `from` or later that satisfies `matches`.
    pub fn wait_for(
        &self,
        from: usize,
        deadline: Instant,
        matches: impl Fn(&str) -> bool,
    ) -> LineWait {
        let mut state = self.lock();
        let mut next = from;
        loop {
            if let Some(line) = state.lines.iter().skip(next).find(|l| matches(&l.text)) {
                return LineWait::Found(line.clone());
            }
            next = next.max(state.lines.len());
            if state.closed {
                return LineWait::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return LineWait::TimedOut;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Every complete line so far.
    pub fn lines(&self) -> Vec<SerialLine> {
        self.lock().lines.clone()
    }

    /// The whole console output so far, one `\n`-terminated line each, plus an
    /// unfinished last line.
    pub fn text(&self) -> String {
        let state = self.lock();
        let mut text = String::new();
        for line in &state.lines {
            text.push_str(&line.text);
            text.push('\n');
        }
        text.push_str(&String::from_utf8_lossy(&state.partial));
        text
    }

    /// The last `n` lines (and an unfinished one), for error messages.
    pub fn tail(&self, n: usize) -> String {
        let state = self.lock();
        let start = state.lines.len().saturating_sub(n);
        let mut text: Vec<String> = state.lines[start..]
            .iter()
            .map(|l| format!("  | {}", l.text))
            .collect();
        if !state.partial.is_empty() {
            text.push(format!("  | {}", String::from_utf8_lossy(&state.partial)));
        }
        text.join("\n")
    }
}

/// Starts the thread that reads the console until QEMU closes it: bytes go to
/// `on_bytes` and then to `log` as they arrive (`on_bytes` must not block: it runs
/// before waiters see the lines). `on_close` runs on the thread once the console has
/// closed (QEMU is ending).
pub fn spawn_reader(
    mut stream: UnixStream,
    log: Arc<SerialLog>,
    mut on_bytes: impl FnMut(&[u8]) + Send + 'static,
    on_close: impl FnOnce() + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("serial".to_owned())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let at = Instant::now();
                        on_bytes(&buf[..n]);
                        log.push_bytes(&buf[..n], at);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            log.close(Instant::now());
            on_close();
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    #[test]
    fn splits_lines_across_reads_and_strips_endings() {
        let log = SerialLog::default();
        let t0 = Instant::now();
        log.push_bytes(b"hello fr", t0);
        assert!(log.lines().is_empty());
        let t1 = t0 + Duration::from_millis(1);
        log.push_bytes(b"om kernel\r\nsecond\nthi", t1);
        let lines = log.lines();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (lines[0].index, lines[0].text.as_str(), lines[0].at),
            (0, "hello from kernel", t1)
        );
        assert_eq!((lines[1].index, lines[1].text.as_str()), (1, "second"));
        assert_eq!(log.text(), "hello from kernel\nsecond\nthi");
        assert_eq!(log.tail(1), "  | second\n  | thi");
        log.close(t1);
        assert_eq!(log.lines().len(), 3, "the unfinished line is kept on close");
        assert!(log.is_closed());
    }

    #[test]
    fn waits_from_an_index_and_reports_close_and_timeout() {
        let log = Arc::new(SerialLog::default());
        let soon = || Instant::now() + Duration::from_secs(30);
        log.push_bytes(b"tick 1\ntick 2\n", Instant::now());
        let LineWait::Found(first) = log.wait_for(0, soon(), |l| l.starts_with("tick")) else {
            panic!()
        };
        assert_eq!(first.text, "tick 1");
        let LineWait::Found(second) =
            log.wait_for(first.index + 1, soon(), |l| l.starts_with("tick"))
        else {
            panic!()
        };
        assert_eq!(second.text, "tick 2");
        assert_eq!(
            log.wait_for(0, Instant::now(), |l| l == "never"),
            LineWait::TimedOut
        );

        let writer = {
            let log = log.clone();
            std::thread::spawn(move || {
                log.push_bytes(b"late line\n", Instant::now());
                log.close(Instant::now());
            })
        };
        let LineWait::Found(late) = log.wait_for(2, soon(), |l| l.contains("late")) else {
            panic!()
        };
        assert_eq!(late.index, 2);
        writer.join().unwrap();
        assert_eq!(log.wait_for(0, soon(), |l| l == "never"), LineWait::Closed);
    }

    #[test]
    fn reader_records_what_arrives_on_the_socket() {
        let (mut guest, host) = UnixStream::pair().unwrap();
        let log = Arc::new(SerialLog::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let copied = Arc::new(Mutex::new(Vec::new()));
        let copy = copied.clone();
        let on_bytes = move |bytes: &[u8]| copy.lock().unwrap().extend_from_slice(bytes);
        let reader =
            spawn_reader(host, log.clone(), on_bytes, move || tx.send(()).unwrap()).unwrap();
        guest
            .write_all(b"[    0.000001][cpu0][INFO  kernel] up\npartial")
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        assert!(matches!(
            log.wait_for(0, deadline, |l| l.ends_with("up")),
            LineWait::Found(_)
        ));
        drop(guest);
        rx.recv_timeout(Duration::from_secs(30))
            .expect("on_close ran");
        reader.join().unwrap();
        assert_eq!(
            log.text(),
            "[    0.000001][cpu0][INFO  kernel] up\npartial\n"
        );
        assert_eq!(
            *copied.lock().unwrap(),
            b"[    0.000001][cpu0][INFO  kernel] up\npartial",
            "every byte is handed on as read"
        );
    }
}
