//! A session's outbox: the bounded queue between whoever sends a session
//! an event and the door task that writes it.
//!
//! Many writers push without waiting (a full outbox is the caller's policy
//! decision, see `SessionHandle::queue`); one reader, the door, pops. An
//! idle outbox holds no buffer: its queue grows with what is queued (up to
//! the bound) and gives large buffers back once drained, where a channel
//! would allocate its first block of slots for every connection up front.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// Why an item could not be pushed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError<T> {
    /// The outbox holds its bound.
    Full(T),
    /// The reader is gone.
    Closed(T),
}

/// A drained queue keeps at most this many slots of spare room.
const KEPT_SLOTS: usize = 16;

/// A bounded multi-writer, single-reader queue: at most `capacity` items
/// and at most `max_bytes` of them as `weigh` counts (one item is always
/// let in, whatever it weighs: a single message is bounded by the message
/// size limit).
#[derive(Debug)]
pub(crate) struct Outbox<T> {
    queue: Mutex<Queue<T>>,
    capacity: usize,
    max_bytes: usize,
    weigh: fn(&T) -> usize,
    reader: AtomicWaker,
    closed: AtomicBool,
}

/// The items and what they weigh together.
#[derive(Debug)]
struct Queue<T> {
    items: VecDeque<T>,
    bytes: usize,
}

impl<T> Outbox<T> {
    /// An empty outbox holding at most `capacity` (at least one) items.
    pub(crate) fn new(capacity: usize) -> Self {
        Outbox::with_byte_bound(capacity, usize::MAX, |_| 0)
    }

    /// An empty outbox holding at most `capacity` (at least one) items
    /// weighing at most `max_bytes` together.
    pub(crate) fn with_byte_bound(
        capacity: usize,
        max_bytes: usize,
        weigh: fn(&T) -> usize,
    ) -> Self {
        Outbox {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                bytes: 0,
            }),
            capacity: capacity.max(1),
            max_bytes,
            weigh,
            reader: AtomicWaker::new(),
            closed: AtomicBool::new(false),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue<T>> {
        // Each critical section is one queue operation.
        crate::sync::lock(&self.queue)
    }

    /// Queues `item` and wakes the reader.
    pub(crate) fn push(&self, item: T) -> Result<(), PushError<T>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(PushError::Closed(item));
        }
        {
            let weight = (self.weigh)(&item);
            let mut queue = self.queue();
            let too_heavy =
                !queue.items.is_empty() && queue.bytes.saturating_add(weight) > self.max_bytes;
            if queue.items.len() >= self.capacity || too_heavy {
                return Err(PushError::Full(item));
            }
            queue.bytes += weight;
            super::push_back_sparing(&mut queue.items, item);
        }
        self.reader.wake();
        Ok(())
    }

    /// Queues `item` even past the bounds (unless the reader is gone), and
    /// wakes the reader: for the one item that ends a stream, which must
    /// not be lost to a full queue.
    pub(crate) fn push_last(&self, item: T) -> Result<(), T> {
        if self.closed.load(Ordering::Acquire) {
            return Err(item);
        }
        let weight = (self.weigh)(&item);
        {
            let mut queue = self.queue();
            queue.bytes += weight;
            super::push_back_sparing(&mut queue.items, item);
        }
        self.reader.wake();
        Ok(())
    }

    /// The oldest item, once there is one.
    pub(crate) async fn pop(&self) -> T {
        std::future::poll_fn(|cx| self.poll_pop(cx)).await
    }

    /// The oldest item, if any.
    pub(crate) fn try_pop(&self) -> Option<T> {
        let mut queue = self.queue();
        let item = queue.items.pop_front();
        if let Some(item) = &item {
            queue.bytes -= (self.weigh)(item);
        }
        if queue.items.is_empty() && queue.items.capacity() > KEPT_SLOTS {
            queue.items.shrink_to(KEPT_SLOTS);
        }
        item
    }

    /// The oldest item, or `Pending` with the reader's waker registered.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<T> {
        if let Some(item) = self.try_pop() {
            return Poll::Ready(item);
        }
        self.reader.register(cx.waker());
        // A push between the first look and the registration woke nobody.
        match self.try_pop() {
            Some(item) => Poll::Ready(item),
            None => Poll::Pending,
        }
    }

    /// Wakes the reader without queueing anything: for what it must read
    /// from elsewhere first (a resumed connection's preface).
    pub(crate) fn wake_reader(&self) {
        self.reader.wake();
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue().items.is_empty()
    }

    /// The reader is gone: refuses further pushes and drops what is queued.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // Taken out under the lock, dropped after it: dropping events can
        // run arbitrary destructors.
        let drained = {
            let mut queue = self.queue();
            queue.bytes = 0;
            std::mem::take(&mut queue.items)
        };
        drop(drained);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn bounded_in_order_and_closable() {
        let outbox = Outbox::new(2);
        assert_eq!(outbox.push(1), Ok(()));
        assert_eq!(outbox.push(2), Ok(()));
        assert_eq!(outbox.push(3), Err(PushError::Full(3)));
        assert_eq!(outbox.try_pop(), Some(1));
        assert_eq!(outbox.push(3), Ok(()));
        assert_eq!(outbox.try_pop(), Some(2));
        assert_eq!(outbox.try_pop(), Some(3));
        assert!(outbox.is_empty());
        outbox.close();
        assert_eq!(outbox.push(4), Err(PushError::Closed(4)));
        assert_eq!(outbox.push_last(4), Err(4));
    }

    #[test]
    fn the_last_item_goes_past_the_bound_in_order() {
        let outbox = Outbox::new(1);
        assert_eq!(outbox.push(1), Ok(()));
        assert_eq!(outbox.push(2), Err(PushError::Full(2)));
        assert_eq!(outbox.push_last(3), Ok(()));
        assert_eq!(outbox.try_pop(), Some(1));
        assert_eq!(outbox.try_pop(), Some(3));
        assert_eq!(outbox.try_pop(), None);
    }

    #[test]
    fn drained_queues_give_back_large_buffers() {
        let outbox = Outbox::new(1000);
        for n in 0..500 {
            assert_eq!(outbox.push(n), Ok(()));
        }
        while outbox.try_pop().is_some() {}
        assert!(outbox.queue().items.capacity() <= KEPT_SLOTS);
    }

    #[test]
    fn bounded_in_bytes_too_but_one_item_always_fits() {
        let outbox: Outbox<Vec<u8>> = Outbox::with_byte_bound(100, 10, Vec::len);
        assert_eq!(outbox.push(vec![0; 50]), Ok(()), "one item always fits");
        assert_eq!(outbox.push(vec![1]), Err(PushError::Full(vec![1])));
        assert_eq!(outbox.try_pop(), Some(vec![0; 50]));
        assert_eq!(outbox.push(vec![2; 6]), Ok(()));
        assert_eq!(outbox.push(vec![3; 4]), Ok(()));
        assert_eq!(outbox.push(vec![4]), Err(PushError::Full(vec![4])));
        assert_eq!(outbox.push_last(vec![5; 3]), Ok(()), "the last item passes");
        assert_eq!(outbox.try_pop(), Some(vec![2; 6]));
        assert_eq!(outbox.try_pop(), Some(vec![3; 4]));
        assert_eq!(outbox.try_pop(), Some(vec![5; 3]));
        assert_eq!(outbox.queue().bytes, 0);
    }

    #[tokio::test]
    async fn a_push_wakes_the_waiting_reader() {
        let outbox = Arc::new(Outbox::new(4));
        let reader = tokio::spawn({
            let outbox = Arc::clone(&outbox);
            async move { std::future::poll_fn(|cx| outbox.poll_pop(cx)).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(outbox.push(7), Ok(()));
        let popped = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
            .await
            .expect("woken")
            .expect("joined");
        assert_eq!(popped, 7);
    }
}
