//! Log lines captured for a test: the process's real JSON subscriber (bunyan, as
//! `telemetry::subscriber` builds it) writing into memory, installed for one closure or one
//! future only, so tests in one process do not see each other's lines.

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::fmt::MakeWriter;

/// Where captured lines go.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    /// Every line written so far, parsed.
    pub fn lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The lines whose `event` field is `code`.
    pub fn events(&self, code: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|line| line["event"] == code)
            .collect()
    }
}

/// Runs `f` with the JSON subscriber at `info` writing into the returned [`Captured`].
pub fn capture_lines<T>(f: impl FnOnce() -> T) -> (T, Captured) {
    let sink = Captured::default();
    let subscriber = crate::telemetry::subscriber("test", "info", sink.clone());
    let value = tracing::subscriber::with_default(subscriber, || {
        settle();
        f()
    });
    (value, sink)
}

/// Runs `future` with the JSON subscriber at `info` writing into the returned [`Captured`]
/// (tasks it spawns keep their own subscriber).
pub async fn capture_lines_async<T>(future: impl Future<Output = T>) -> (T, Captured) {
    let sink = Captured::default();
    let subscriber = crate::telemetry::subscriber("test", "info", sink.clone());
    let value = async {
        settle();
        future.await
    }
    .with_subscriber(subscriber)
    .await;
    (value, sink)
}

/// Recomputes every callsite's interest and the global maximum level with this subscriber
/// counted: tests on other threads install and drop theirs at the same time, and a callsite
/// first met while none was live would otherwise stay disabled for this one.
fn settle() {
    tracing::callsite::rebuild_interest_cache();
}
