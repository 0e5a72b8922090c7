//! Turns: a sender's batches that are in flight together apply in
//! sequence order.
//!
//! A node may send its next batch before the receipt for the last one has
//! come back, so that the transfer, decoding and peppering of one batch
//! overlap with the apply of the one before. Requests decoded on different
//! tasks can reach the engine in either order, and the engine applies only
//! the batch after the last one applied (anything else is refused as out of
//! order). So a batch first takes a [`Turn`], and before it applies it waits
//! until its predecessor's outcome is known:
//!
//! - it goes at once when the batch before it has been decided (applied or
//!   refused) or when it is not ahead of the last one decided;
//! - it waits while the batch before it is in flight, however long that
//!   takes;
//! - it waits at most a grace period for a predecessor that has not arrived
//!   (a retry on its way), and never for one more than [`WINDOW`] batches
//!   back.
//!
//! Whatever the wait, the engine's sequence check still decides: a batch
//! that goes too early is refused as out of order, as it was before this
//! existed. A turn is decided when it is dropped, whether its batch was
//! applied or refused, so a refused batch releases its successor at once
//! (to be refused in turn); a batch that went ahead of an undecided
//! predecessor releases nothing.
use std::collections::{BTreeSet, HashMap};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How many batches ahead of the last one decided a batch may wait.
pub const WINDOW: u64 = 4;

#[derive(Default)]
struct Sender {
    /// The highest sequence decided since start (or the store's last).
    decided: u64,
    in_flight: BTreeSet<u64>,
}

/// The turns of every sender.
#[derive(Default)]
pub struct Turns {
    senders: Mutex<HashMap<String, Sender>>,
    changed: Condvar,
}

/// One batch's turn; its outcome is known when this is dropped.
pub struct Turn<'a> {
    turns: &'a Turns,
    caller: String,
    sequence: u64,
}

impl Turns {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Sender>> {
        self.senders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers batch `sequence` of `caller` as in flight. `last` gives the
    /// last sequence applied for `caller` in the store, read each time: a
    /// coordinator that was standby for a while, or whose store another
    /// applied to, must not judge by what it saw itself.
    pub fn enter<E>(&self, caller: &str, sequence: u64, last: impl FnOnce() -> Result<u64, E>) -> Result<Turn<'_>, E> {
        let stored = last()?;
        let mut senders = self.lock();
        let s = senders.entry(caller.to_string()).or_default();
        s.decided = s.decided.max(stored);
        s.in_flight.insert(sequence);
        Ok(Turn { turns: self, caller: caller.to_string(), sequence })
    }
}

impl Turn<'_> {
    /// Blocks until this batch's predecessor is decided, or while it is in
    /// flight, or for at most `grace` while it has not arrived.
    pub fn wait(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let mut senders = self.turns.lock();
        loop {
            let Some(s) = senders.get(&self.caller) else { return };
            let before = self.sequence.saturating_sub(1);
            if s.decided >= before || self.sequence > s.decided + WINDOW {
                return;
            }
            let timeout = if s.in_flight.contains(&before) {
                Duration::from_secs(1)
            } else {
                let now = Instant::now();
                if now >= deadline {
                    return;
                }
                deadline - now
            };
            senders = match self.turns.changed.wait_timeout(senders, timeout) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut senders = self.turns.lock();
        if let Some(s) = senders.get_mut(&self.caller) {
            s.in_flight.remove(&self.sequence);
            // A batch that went ahead of an undecided predecessor was
            // refused as out of order: it decides nothing for its successors.
            if self.sequence <= s.decided + 1 {
                s.decided = s.decided.max(self.sequence);
            }
        }
        drop(senders);
        self.turns.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn none() -> Result<u64, ()> {
        Ok(0)
    }

    #[test]
    fn a_batch_that_arrives_first_waits_for_the_one_before_it() {
        let turns = Arc::new(Turns::default());
        let applied = Arc::new(Mutex::new(Vec::new()));
        // Batch 2 is in flight and waiting before batch 1 has even arrived.
        let second = {
            let (turns, applied) = (turns.clone(), applied.clone());
            let (tx, rx) = std::sync::mpsc::channel();
            let h = std::thread::spawn(move || {
                let t = turns.enter("source/pnc", 2, none).unwrap();
                tx.send(()).unwrap();
                t.wait(Duration::from_secs(30));
                applied.lock().unwrap().push(2);
            });
            rx.recv().unwrap();
            h
        };
        {
            let t = turns.enter("source/pnc", 1, none).unwrap();
            t.wait(Duration::from_secs(30));
            applied.lock().unwrap().push(1);
        }
        second.join().unwrap();
        assert_eq!(*applied.lock().unwrap(), vec![1, 2]);
    }

    #[test]
    fn the_next_batch_a_retry_and_a_store_moved_on_go_at_once() {
        let turns = Turns::default();
        let started = Instant::now();
        let t = turns.enter("source/pnc", 8, || Ok::<_, ()>(7)).unwrap();
        t.wait(Duration::from_secs(30));
        drop(t);
        // A retry of batch 8, already decided, does not wait either.
        turns.enter("source/pnc", 8, || Ok::<_, ()>(8)).unwrap().wait(Duration::from_secs(30));
        // Another coordinator applied up to 40 meanwhile (this one was
        // standby, its own view stopped at 8): 41 and then 42 go at once.
        let t41 = turns.enter("source/pnc", 41, || Ok::<_, ()>(40)).unwrap();
        t41.wait(Duration::from_secs(30));
        drop(t41);
        turns.enter("source/pnc", 42, || Ok::<_, ()>(40)).unwrap().wait(Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(5));
        // The store is read each time; its failure is the caller's.
        assert!(turns.enter("source/pnc", 43, || Err(())).is_err());
    }

    #[test]
    fn a_missing_predecessor_is_waited_for_only_the_grace_and_far_ahead_not_at_all() {
        let turns = Turns::default();
        let started = Instant::now();
        turns.enter("source/pnc", 3, none).unwrap().wait(Duration::from_millis(50));
        assert!(started.elapsed() >= Duration::from_millis(50));
        let started = Instant::now();
        turns.enter("source/pnc", 3 + WINDOW + 1, none).unwrap().wait(Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(5), "no wait for a batch beyond the window");
    }

    #[test]
    fn a_batch_far_ahead_does_not_release_the_batches_before_it() {
        let turns = Arc::new(Turns::default());
        // A stray batch 50 is refused; batches 1 and 2 still apply in order.
        drop(turns.enter("source/pnc", 50, none).unwrap());
        let applied = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let second = {
            let (turns, applied) = (turns.clone(), applied.clone());
            std::thread::spawn(move || {
                let t = turns.enter("source/pnc", 2, none).unwrap();
                tx.send(()).unwrap();
                t.wait(Duration::from_secs(30));
                applied.lock().unwrap().push(2);
            })
        };
        rx.recv().unwrap();
        let first = turns.enter("source/pnc", 1, none).unwrap();
        first.wait(Duration::from_secs(30));
        applied.lock().unwrap().push(1);
        drop(first);
        second.join().unwrap();
        assert_eq!(*applied.lock().unwrap(), vec![1, 2]);
    }

    #[test]
    fn a_refused_batch_releases_its_successor_and_senders_do_not_wait_for_each_other() {
        let turns = Arc::new(Turns::default());
        let order = Arc::new(AtomicU64::new(0));
        let first = turns.enter("source/pnc", 1, none).unwrap();
        let other = turns.enter("source/pnd", 1, none).unwrap();
        other.wait(Duration::from_secs(30));
        drop(other);
        let h = {
            let (turns, order) = (turns.clone(), order.clone());
            std::thread::spawn(move || {
                let t = turns.enter("source/pnc", 2, none).unwrap();
                t.wait(Duration::from_secs(30));
                order.store(2, Ordering::SeqCst);
            })
        };
        // Refused: dropped without applying; the successor goes on.
        order.store(1, Ordering::SeqCst);
        drop(first);
        h.join().unwrap();
        assert_eq!(order.load(Ordering::SeqCst), 2);
    }
}
