//! The runner's terminal: everything the runner prints goes through here, so that a
//! closed stdout or stderr (a `| tee` that Ctrl-C ended, a terminal that went away)
//! never panics the runner or stops what it is doing.
//!
//! - [`outln!`] and [`out!`] (stdout), [`errln!`] and [`err!`] (stderr) write at once
//!   and return nothing. A write that fails marks its stream gone; later writes to it
//!   are skipped. (`println!` panics on the first broken pipe instead: Rust ignores
//!   SIGPIPE, so the write returns `EPIPE`.)
//! - [`Echo`] copies the guest's console to stdout on a thread of its own, through a
//!   bounded queue: a terminal that stops reading (a paused pager) delays only the
//!   echo, never the capture of the console, and what does not fit the queue is
//!   dropped and counted. The VM's console log (`crate::vm::console`) keeps every byte.
//!
//! What this does not do: a stream whose reader is alive but not reading blocks a
//! message, as it blocks any program, until it reads or closes. The runner stops a VM
//! before it prints that it does, so such a write never keeps a VM running.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Console bytes the echo queue holds before it drops what comes next.
const ECHO_QUEUE_BYTES: usize = 4 << 20;

static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

/// One of the runner's two output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn gone_flag(self) -> &'static AtomicBool {
        match self {
            Stream::Stdout => &STDOUT_GONE,
            Stream::Stderr => &STDERR_GONE,
        }
    }

    /// Whether a write to this stream has failed (it is not written to any more).
    pub fn is_gone(self) -> bool {
        self.gone_flag().load(Ordering::Relaxed)
    }

    /// Writes `bytes` whole, or marks the stream gone. Returns whether they were written.
    pub fn write(self, bytes: &[u8]) -> bool {
        if self.is_gone() {
            return false;
        }
        let written = match self {
            Stream::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes).and_then(|()| out.flush())
            }
            Stream::Stderr => io::stderr().lock().write_all(bytes),
        };
        if written.is_err() {
            self.gone_flag().store(true, Ordering::Relaxed);
        }
        written.is_ok()
    }

    /// Writes formatted text (see [`Stream::write`]).
    pub fn print(self, args: fmt::Arguments<'_>) -> bool {
        match args.as_str() {
            Some(text) => self.write(text.as_bytes()),
            None => self.write(args.to_string().as_bytes()),
        }
    }
}

/// `println!` that tolerates a closed stdout.
macro_rules! outln {
    () => {{
        $crate::term::Stream::Stdout.write(b"\n");
    }};
    ($($arg:tt)*) => {{
        $crate::term::Stream::Stdout.print(format_args!("{}\n", format_args!($($arg)*)));
    }};
}

/// `print!` that tolerates a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => {{
        $crate::term::Stream::Stdout.print(format_args!($($arg)*));
    }};
}

/// `eprintln!` that tolerates a closed stderr.
macro_rules! errln {
    () => {{
        $crate::term::Stream::Stderr.write(b"\n");
    }};
    ($($arg:tt)*) => {{
        $crate::term::Stream::Stderr.print(format_args!("{}\n", format_args!($($arg)*)));
    }};
}

/// `eprint!` that tolerates a closed stderr.
macro_rules! err {
    ($($arg:tt)*) => {{
        $crate::term::Stream::Stderr.print(format_args!($($arg)*));
    }};
}

pub(crate) use {err, errln, out, outln};

#[derive(Default)]
struct EchoQueue {
    chunks: VecDeque<Vec<u8>>,
    queued: usize,
    dropped: u64,
    /// The writer thread is writing a chunk it took from the queue.
    writing: bool,
}

#[derive(Default)]
struct EchoShared {
    queue: Mutex<EchoQueue>,
    changed: Condvar,
}

impl EchoShared {
    fn lock(&self) -> MutexGuard<'_, EchoQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The guest's console copied to stdout by a thread of its own (see the module doc).
/// Clones share the queue; the thread ends with the process.
#[derive(Clone)]
pub struct Echo(Arc<EchoShared>);

impl Echo {
    /// Starts the writer thread.
    pub fn start() -> io::Result<Echo> {
        let shared = Arc::new(EchoShared::default());
        let echo = Echo(shared.clone());
        std::thread::Builder::new()
            .name("echo".to_owned())
            .spawn(move || loop {
                let mut queue = shared.lock();
                let chunk = loop {
                    if let Some(chunk) = queue.chunks.pop_front() {
                        break chunk;
                    }
                    queue.writing = false;
                    shared.changed.notify_all();
                    queue = shared
                        .changed
                        .wait(queue)
                        .unwrap_or_else(|e| e.into_inner());
                };
                queue.queued -= chunk.len();
                queue.writing = true;
                drop(queue);
                Stream::Stdout.write(&chunk);
            })?;
        Ok(echo)
    }

    /// Queues `bytes` for stdout; drops them (counted) when the queue is full. Never
    /// blocks on the terminal.
    pub fn send(&self, bytes: &[u8]) {
        if Stream::Stdout.is_gone() {
            return;
        }
        let mut queue = self.0.lock();
        if queue.queued + bytes.len() > ECHO_QUEUE_BYTES {
            queue.dropped += bytes.len() as u64;
            return;
        }
        queue.queued += bytes.len();
        queue.chunks.push_back(bytes.to_vec());
        drop(queue);
        self.0.changed.notify_all();
    }

    /// Waits up to `timeout` for everything queued to be written (or the stream to be
    /// found gone). Returns whether it was.
    pub fn drain(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut queue = self.0.lock();
        loop {
            if (queue.chunks.is_empty() && !queue.writing) || Stream::Stdout.is_gone() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            queue = self
                .0
                .changed
                .wait_timeout(queue, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Bytes dropped because the terminal did not keep up.
    pub fn dropped(&self) -> u64 {
        self.0.lock().dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        // No writer thread: nothing leaves the queue.
        let echo = Echo(Arc::new(EchoShared::default()));
        let chunk = vec![b'x'; ECHO_QUEUE_BYTES / 2];
        echo.send(&chunk);
        echo.send(&chunk);
        assert_eq!(echo.dropped(), 0);
        echo.send(b"one more");
        assert_eq!(echo.dropped(), 8);
        assert!(
            !echo.drain(Duration::from_millis(1)),
            "nothing was written: the drain times out"
        );
    }

    #[test]
    fn the_writer_empties_the_queue() {
        let echo = Echo::start().unwrap();
        echo.send(b"");
        assert!(echo.drain(Duration::from_secs(30)));
        assert_eq!(echo.dropped(), 0);
    }
}
