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
pub struct Captured(Arc<Mutex<Vec<u8>>>, bool);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        if self.1 {
            std::io::stdout().write_all(buf)?;
        }
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

/// The saga lifecycle lines (`crate::lifecycle`) of every service in this test process, as the
/// test subscriber (`init_test_telemetry`) writes them: a test finds its own by order id.
pub fn lifecycle_lines() -> &'static Captured {
    static LINES: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LINES.get_or_init(Captured::default)
}

impl Captured {
    /// The same sink, also writing every line to stdout (`TEST_LOG`).
    pub fn echoed(&self) -> Self {
        Self(self.0.clone(), true)
    }

    /// The lines whose `event` field is `code` and `order_id` is `order_id`.
    pub fn of_order(&self, code: &str, order_id: uuid::Uuid) -> Vec<Value> {
        let order_id = order_id.to_string();
        self.events(code)
            .into_iter()
            .filter(|line| line["order_id"] == order_id.as_str())
            .collect()
    }

    /// Every line written so far, parsed.
    pub fn lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .filter_map(|line| serde_json::from_str(line).ok())
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
