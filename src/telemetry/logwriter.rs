//! Log output that can neither block nor fail the process: lines go through a bounded queue
//! to one thread that writes them to stderr; lines are dropped (and counted) while stderr
//! is slower than the logs, and a closed stderr (a pipe whose reader is gone) is ignored.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Lines held for a slow stderr before new ones are dropped.
const QUEUE_LINES: usize = 4096;

enum Message {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
}

/// A handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct LogWriter {
    tx: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

/// The process-wide writer to stderr (its thread starts on first use).
pub fn stderr() -> LogWriter {
    static STDERR: OnceLock<LogWriter> = OnceLock::new();
    STDERR
        .get_or_init(|| LogWriter::spawn(std::io::stderr(), QUEUE_LINES))
        .clone()
}

impl LogWriter {
    /// A writer to `out` holding up to `capacity` lines.
    pub fn spawn(out: impl Write + Send + 'static, capacity: usize) -> Self {
        let (tx, rx) = mpsc::sync_channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        // A thread, not a task: it must keep draining when the async runtime is busy or gone.
        // Without a thread the receiver is gone and lines are dropped: nothing better to do.
        let _ = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || drain(rx, out, &counter));
        Self { tx, dropped }
    }

    /// Queues one line (or several); never blocks.
    pub fn line(&self, bytes: &[u8]) {
        match self.tx.try_send(Message::Line(bytes.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits until the lines queued so far are written, or `timeout` passed; true if done.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (ack, done) = mpsc::sync_channel(1);
        let mut message = Message::Flush(ack);
        loop {
            match self.tx.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    message = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TrySendError::Full(_)) => return false,
            }
        }
        done.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

fn drain(rx: Receiver<Message>, mut out: impl Write, dropped: &AtomicU64) {
    let mut closed = false;
    for message in rx {
        match message {
            Message::Line(bytes) if !closed => {
                let lost = dropped.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    let note = format!("[{lost} log lines dropped: stderr was too slow]\n");
                    closed |= is_closed(out.write_all(note.as_bytes()));
                }
                closed |= is_closed(out.write_all(&bytes));
            }
            Message::Line(_) => {}
            Message::Flush(ack) => {
                let _ = out.flush();
                let _ = ack.try_send(());
            }
        }
    }
}

/// A reader that went away never comes back; other errors may pass (e.g. EINTR, EAGAIN).
fn is_closed(result: std::io::Result<()>) -> bool {
    matches!(result, Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Blocks every write until `release` is dropped.
    struct Stuck(Mutex<Receiver<()>>);
    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.lock().unwrap().recv();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct BrokenPipe;
    impl Write for BrokenPipe {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn lines_arrive_in_order() {
        let sink = Sink::default();
        let mut w = LogWriter::spawn(sink.clone(), 16);
        writeln!(w, "one").unwrap();
        writeln!(w, "two").unwrap();
        assert!(w.flush(Duration::from_secs(5)));
        assert_eq!(
            String::from_utf8(sink.0.lock().unwrap().clone()).unwrap(),
            "one\ntwo\n"
        );
    }

    #[test]
    fn a_stuck_stderr_never_blocks_the_logger() {
        let (release, blocked) = mpsc::channel();
        let mut w = LogWriter::spawn(Stuck(Mutex::new(blocked)), 4);
        let start = Instant::now();
        for i in 0..1000 {
            writeln!(w, "line {i}").unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(w.dropped.load(Ordering::Relaxed) > 0);
        assert!(!w.flush(Duration::from_millis(50)), "flush gives up");
        drop(release);
    }

    #[test]
    fn a_closed_stderr_is_ignored() {
        let mut w = LogWriter::spawn(BrokenPipe, 4);
        for i in 0..100 {
            writeln!(w, "line {i}").unwrap();
        }
        assert!(w.flush(Duration::from_secs(5)));
    }
}
