//! Progress bars and log lines on one terminal. While a bar is shown (`run --once` on a TTY), a
//! log line written straight to stderr would land in the middle of the bar and leave a torn copy
//! of it behind; [`LogWriter`] writes through [`indicatif::ProgressBar::suspend`] instead, which
//! clears the bar, writes the line and draws the bar again below it.

use std::io::{self, Write};
use std::sync::Mutex;

use indicatif::ProgressBar;

static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Keeps `bar` registered for log lines until dropped.
pub struct Shown(());

/// Registers `bar` as the one log lines must step around (the last one shown wins).
pub fn show(bar: &ProgressBar) -> Shown {
    if let Ok(mut active) = ACTIVE.lock() {
        *active = Some(bar.clone());
    }
    Shown(())
}

impl Drop for Shown {
    fn drop(&mut self) {
        if let Ok(mut active) = ACTIVE.lock() {
            *active = None;
        }
    }
}

/// stderr for `tracing`, stepping around the active bar.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let bar = ACTIVE.lock().ok().and_then(|a| a.clone());
        match bar {
            Some(bar) => bar.suspend(|| io::stderr().lock().write_all(buf))?,
            None => io::stderr().lock().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// `tracing_subscriber`'s writer factory for [`LogWriter`].
pub fn log_writer() -> LogWriter {
    LogWriter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_ends_with_the_guard() {
        let bar = ProgressBar::hidden();
        {
            let _shown = show(&bar);
            assert!(ACTIVE.lock().unwrap().is_some());
            LogWriter.write_all(b"").unwrap();
        }
        assert!(ACTIVE.lock().unwrap().is_none());
    }
}
