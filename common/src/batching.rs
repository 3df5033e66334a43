//! Batches taken from a stream: whatever has already arrived, and, under load, what arrives
//! within a short linger. The order intake batches `POST /api/orders` requests with it, and
//! every consumer its deliveries.
//!
//! A quiet stream's item goes the moment it arrives (a batch of one); once the stream is busy
//! (its last batch held more than one item), a batch not yet full waits `linger`, because a
//! batch's fixed costs (a transaction, a commit, a publish and its confirm) are most of what a
//! small one costs. The linger is slept through rather than waited on the stream, so the task is
//! woken once, not by every item; the price is that a batch filling early still waits it out.

use std::time::Duration;

use futures_util::{FutureExt, Stream, StreamExt};

/// A stream's items, taken a batch at a time.
pub struct Batches<S> {
    stream: S,
    size: usize,
    linger: Duration,
    /// The size of the last batch: more than one means the stream is busy.
    last: usize,
    /// The stream has ended: it is not polled again (some streams panic, others answer `None`
    /// once and then never again).
    ended: bool,
}

impl<S: Stream + Unpin> Batches<S> {
    /// Batches of at most `size` (at least one) items; once the stream is busy, a batch not yet
    /// full waits `linger` for more.
    pub fn new(stream: S, size: usize, linger: Duration) -> Self {
        Self {
            stream,
            size: size.max(1),
            linger,
            last: 0,
            ended: false,
        }
    }

    /// The next batch: at least one item, `None` once the stream has ended and nothing is left.
    pub async fn next_batch(&mut self) -> Option<Vec<S::Item>> {
        if self.ended {
            return None;
        }
        let Some(first) = self.stream.next().await else {
            self.ended = true;
            return None;
        };
        let mut batch = Vec::with_capacity(self.size);
        batch.push(first);
        self.take_ready(&mut batch);
        if self.last > 1 && !self.linger.is_zero() && !self.ended && batch.len() < self.size {
            // `take_ready` left the stream polled with a waker that does nothing, so what
            // arrives during the sleep does not wake this task (see the module docs).
            tokio::time::sleep(self.linger).await;
            self.take_ready(&mut batch);
        }
        self.last = batch.len();
        Some(batch)
    }

    /// Adds what has already arrived, without waiting, up to the batch's size.
    fn take_ready(&mut self, batch: &mut Vec<S::Item>) {
        while batch.len() < self.size {
            match self.stream.next().now_or_never() {
                Some(Some(item)) => batch.push(item),
                Some(None) => {
                    self.ended = true;
                    return;
                }
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    use futures_util::stream;
    use tokio::sync::mpsc;
    use tokio::time::Instant;

    use super::*;

    /// A channel's receiving end as a stream that must not be polled once it has ended
    /// (`unfold` panics if it is).
    fn receiving(receiver: mpsc::Receiver<u32>) -> impl Stream<Item = u32> + Unpin {
        Box::pin(stream::unfold(receiver, |mut receiver| async move {
            let item = receiver.recv().await?;
            Some((item, receiver))
        }))
    }

    /// A future that counts how often it is polled: once per wake-up of the task awaiting it.
    struct Polls<F> {
        future: Pin<Box<F>>,
        count: Arc<AtomicUsize>,
    }

    impl<F: Future> Future for Polls<F> {
        type Output = F::Output;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            self.count.fetch_add(1, Ordering::Relaxed);
            self.future.as_mut().poll(cx)
        }
    }

    /// Makes `batches` busy: one batch of two, taken from what `sender` sends now.
    async fn busy(
        batches: &mut Batches<impl Stream<Item = u32> + Unpin>,
        sender: &mpsc::Sender<u32>,
    ) {
        assert!(sender.send(100).await.is_ok() && sender.send(101).await.is_ok());
        assert_eq!(batches.next_batch().await, Some(vec![100, 101]));
    }

    /// A busy stream with `linger`, one item (1) waiting, and the moment its batch was asked for.
    async fn busy_with_one_waiting(
        linger: Duration,
    ) -> (
        Batches<impl Stream<Item = u32> + Unpin>,
        mpsc::Sender<u32>,
        Instant,
    ) {
        let (sender, receiver) = mpsc::channel(16);
        let mut batches = Batches::new(receiving(receiver), 64, linger);
        busy(&mut batches, &sender).await;
        assert!(sender.send(1).await.is_ok());
        (batches, sender, Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_stream_hands_over_its_item_at_once_whatever_the_linger() {
        let (sender, receiver) = mpsc::channel(16);
        let mut batches = Batches::new(receiving(receiver), 64, Duration::from_secs(600));
        assert!(sender.send(1).await.is_ok());
        let started = Instant::now();
        assert_eq!(batches.next_batch().await, Some(vec![1]));
        // The clock is paused: any sleep would have moved it.
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_stream_waits_its_linger_and_takes_what_arrived_meanwhile() {
        let linger = Duration::from_millis(100);
        let (mut batches, sender, started) = busy_with_one_waiting(linger).await;
        let late = sender.clone();
        tokio::spawn(async move {
            for (at, item) in [(10, 2), (60, 3), (150, 4)] {
                tokio::time::sleep_until(started + Duration::from_millis(at)).await;
                if late.send(item).await.is_err() {
                    return;
                }
            }
        });
        assert_eq!(batches.next_batch().await, Some(vec![1, 2, 3]));
        assert_eq!(started.elapsed(), linger);
        // The one sent after the linger starts the next batch.
        assert_eq!(batches.next_batch().await, Some(vec![4]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_stream_is_woken_by_its_linger_not_by_each_arrival() {
        let (sender, receiver) = mpsc::channel(128);
        let mut batches = Batches::new(receiving(receiver), 128, Duration::from_millis(100));
        busy(&mut batches, &sender).await;
        assert!(sender.send(0).await.is_ok());
        let started = Instant::now();
        tokio::spawn(async move {
            for item in 1..=50 {
                tokio::time::sleep_until(started + Duration::from_millis(item)).await;
                if sender.send(item as u32).await.is_err() {
                    return;
                }
            }
        });
        let count = Arc::new(AtomicUsize::new(0));
        let batch = Polls {
            future: Box::pin(batches.next_batch()),
            count: count.clone(),
        }
        .await;
        assert_eq!(batch.map(|b| b.len()), Some(51));
        // Polled when first awaited and when the timer fires; 50 arrivals woke it not once.
        assert!(count.load(Ordering::Relaxed) <= 2, "polled {count:?} times");
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_already_full_does_not_wait() {
        let (sender, receiver) = mpsc::channel(16);
        let mut batches = Batches::new(receiving(receiver), 2, Duration::from_secs(600));
        busy(&mut batches, &sender).await;
        for item in [1, 2, 3] {
            assert!(sender.send(item).await.is_ok());
        }
        let started = Instant::now();
        assert_eq!(batches.next_batch().await, Some(vec![1, 2]));
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_stream_hands_over_what_is_left_then_ends_without_being_polled_again() {
        let (sender, receiver) = mpsc::channel(16);
        let mut batches = Batches::new(receiving(receiver), 64, Duration::from_millis(100));
        busy(&mut batches, &sender).await;
        assert!(sender.send(1).await.is_ok() && sender.send(2).await.is_ok());
        drop(sender);
        assert_eq!(batches.next_batch().await, Some(vec![1, 2]));
        // `unfold` would panic if polled after its end.
        assert_eq!(batches.next_batch().await, None);
        assert_eq!(batches.next_batch().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_ends_during_the_linger_hands_over_its_batch_then_ends() {
        let linger = Duration::from_millis(100);
        let (mut batches, sender, started) = busy_with_one_waiting(linger).await;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let _ = sender.send(2).await;
            // Dropped here: the stream ends 10 ms into the linger.
        });
        assert_eq!(batches.next_batch().await, Some(vec![1, 2]));
        // Noticed at the linger's end, not before: the sleep is not woken by the stream.
        assert_eq!(started.elapsed(), linger);
        assert_eq!(batches.next_batch().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_ends_while_waited_on_ends_the_batches() {
        let (sender, receiver) = mpsc::channel::<u32>(16);
        let mut batches = Batches::new(receiving(receiver), 64, Duration::from_millis(100));
        drop(sender);
        assert_eq!(batches.next_batch().await, None);
        // Not polled again: `unfold` would panic.
        assert_eq!(batches.next_batch().await, None);
    }
}
