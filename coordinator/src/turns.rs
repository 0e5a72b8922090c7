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
//! - it goes at once when the batch before it has been applied (in memory:
//!   that batch's commit is then written while this one applies,
//!   `crate::inflight`), or when it is not ahead of the last one applied;
//! - it waits while the batch before it is in flight, and, when that batch
//!   leaves without being applied on an answer the node retries (the
//!   coordinator stepping down, a commit that failed), for its retry;
//! - it waits at most a grace period for a predecessor it has not seen in
//!   flight (a retry on its way, or a send that is slower to decode), and
//!   never for one more than [`WINDOW`] batches back;
//! - it goes at once when the batch before it was refused for good (a
//!   refusal the node does not retry) in the last [`REFUSED_FRESH`]: the
//!   node's run has failed, and its successor need not wait out the grace
//!   to be refused in turn.
//!
//! Whatever the wait, the engine's sequence check still decides: a batch
//! that goes too early is refused as out of order, as it was before this
//! existed. Only batches applied move the mark: a refused batch may be sent
//! again under the same number, by a later run (which clears its refusal).
//! A batch applied in memory whose commit then failed moves the mark back
//! to what the store holds ([`Turn::not_written`]): the engine is rebuilt
//! from the store, and the batch and those applied on top of it come again.
use std::collections::{BTreeMap, HashMap};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How many batches ahead of the last one decided a batch may wait.
pub const WINDOW: u64 = 4;

/// How long a refusal for good releases the refused batch's successor at
/// once: long enough for the batch the node had in flight behind it, short
/// of a later run (which starts anew, and re-sends the refused batch).
pub const REFUSED_FRESH: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Sender {
    /// The highest sequence applied (the store's, or seen applied since).
    applied: u64,
    /// Batches in flight, with how many copies of each (a retry can arrive
    /// while the first copy still waits).
    in_flight: BTreeMap<u64, u32>,
    /// The last batch refused for good, and when.
    refused: Option<(u64, Instant)>,
}

/// The turns of every sender.
#[derive(Default)]
pub struct Turns {
    senders: Mutex<HashMap<String, Sender>>,
    changed: Condvar,
}

/// One batch's turn, held until its outcome is known.
pub struct Turn<'a> {
    turns: &'a Turns,
    caller: String,
    sequence: u64,
    applied: bool,
    refused: bool,
    /// It went because the mark said its predecessor was applied.
    went_on_mark: bool,
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
        s.applied = s.applied.max(stored);
        *s.in_flight.entry(sequence).or_default() += 1;
        if s.refused.is_some_and(|(n, _)| n == sequence) {
            s.refused = None;
        }
        Ok(Turn {
            turns: self,
            caller: caller.to_string(),
            sequence,
            applied: false,
            refused: false,
            went_on_mark: false,
        })
    }
}

impl Turn<'_> {
    /// Blocks until this batch's predecessor is applied, or was refused for
    /// good, or for at most `grace` while it is not in flight (not yet
    /// arrived, or gone to be sent again).
    pub fn wait(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let before = self.sequence.saturating_sub(1);
        let mut senders = self.turns.lock();
        loop {
            let Some(s) = senders.get(&self.caller) else { return };
            if s.applied >= before {
                self.went_on_mark = true;
                return;
            }
            if self.sequence > s.applied + WINDOW {
                return;
            }
            if s.refused.is_some_and(|(n, at)| n == before && at.elapsed() < REFUSED_FRESH) {
                return;
            }
            let timeout = if s.in_flight.contains_key(&before) {
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

    /// Marks the batch applied (a fresh apply, in memory with its commit
    /// next in order, or a replayed receipt): its successor goes now, while
    /// this batch's commit is written.
    pub fn applied(&mut self) {
        self.applied = true;
        let mut senders = self.turns.lock();
        if let Some(s) = senders.get_mut(&self.caller) {
            s.applied = s.applied.max(self.sequence);
        }
        drop(senders);
        self.turns.changed.notify_all();
    }

    /// The batch was applied in memory, but its commit (or one before it)
    /// failed, so the store does not hold it: the mark goes back to what
    /// the store holds (`stored`, read now; nothing when it cannot be read),
    /// so that a successor sent again waits for this batch's retry instead
    /// of going at once to be refused as out of order. Nothing to do for a
    /// batch that was not applied.
    pub fn not_written(&mut self, stored: impl FnOnce() -> Option<u64>) {
        if !std::mem::take(&mut self.applied) {
            return;
        }
        self.mark_back_to(stored().unwrap_or(0));
    }

    /// Whether the engine's refusal of this batch as out of order comes of a
    /// predecessor lost after it let this one go: applied in memory, so the
    /// mark let this batch go, but its commit (or one before it) failed and
    /// the engine was rebuilt from the store without it (`stored`, read
    /// now, is before the predecessor). The predecessor comes again, so
    /// this batch must too (the node is told to send it again, not that its
    /// run is over); the mark goes back to what the store holds, so that
    /// the retry waits for the predecessor's.
    pub fn predecessor_lost(&mut self, stored: impl FnOnce() -> Option<u64>) -> bool {
        if !self.went_on_mark {
            return false;
        }
        // Only a store without the predecessor: a batch the store already
        // holds under this number with other content is another matter.
        let Some(stored) = stored().filter(|&st| st + 1 < self.sequence) else { return false };
        self.mark_back_to(stored);
        true
    }

    /// Takes the sender's mark back to `stored` (never forward), and wakes
    /// the batches waiting on it.
    fn mark_back_to(&self, stored: u64) {
        let mut senders = self.turns.lock();
        if let Some(s) = senders.get_mut(&self.caller) {
            s.applied = s.applied.min(stored);
        }
        drop(senders);
        self.turns.changed.notify_all();
    }

    /// Marks the batch refused for good: the answer is one the node does
    /// not retry, so its successor goes at once (to be refused in turn).
    pub fn refused(&mut self) {
        self.refused = true;
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut senders = self.turns.lock();
        if let Some(s) = senders.get_mut(&self.caller) {
            if let Some(n) = s.in_flight.get_mut(&self.sequence) {
                *n -= 1;
                if *n == 0 {
                    s.in_flight.remove(&self.sequence);
                }
            }
            if self.applied {
                s.applied = s.applied.max(self.sequence);
            } else if self.refused {
                s.refused = Some((self.sequence, Instant::now()));
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

    fn none() -> Result<u64, ()> {
        Ok(0)
    }

    /// Enters `sequence` on another thread, waits its turn (at most
    /// `grace` for a predecessor not seen in flight), then records it in
    /// `order` and marks it applied if `apply`.
    fn later(
        turns: &Arc<Turns>,
        (sequence, grace): (u64, Duration),
        apply: bool,
        order: &Arc<Mutex<Vec<u64>>>,
    ) -> std::thread::JoinHandle<()> {
        let (turns, order) = (turns.clone(), order.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let h = std::thread::spawn(move || {
            let mut t = turns.enter("source/pnc", sequence, none).unwrap();
            tx.send(()).unwrap();
            t.wait(grace);
            order.lock().unwrap().push(sequence);
            if apply {
                t.applied();
            }
        });
        rx.recv().unwrap();
        h
    }

    #[test]
    fn a_batch_that_arrives_first_waits_for_the_one_before_it() {
        let turns = Arc::new(Turns::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        // Batch 2 is waiting before batch 1 has even arrived.
        let second = later(&turns, (2, Duration::from_secs(30)), true, &order);
        {
            let mut t = turns.enter("source/pnc", 1, none).unwrap();
            t.wait(Duration::from_secs(30));
            order.lock().unwrap().push(1);
            t.applied();
        }
        second.join().unwrap();
        assert_eq!(*order.lock().unwrap(), vec![1, 2]);
    }

    #[test]
    fn the_next_batch_a_retry_and_a_store_moved_on_go_at_once() {
        let turns = Turns::default();
        let started = Instant::now();
        let mut t = turns.enter("source/pnc", 8, || Ok::<_, ()>(7)).unwrap();
        t.wait(Duration::from_secs(30));
        t.applied();
        drop(t);
        // A retry of batch 8, already applied, does not wait either.
        turns.enter("source/pnc", 8, || Ok::<_, ()>(8)).unwrap().wait(Duration::from_secs(30));
        // Another coordinator applied up to 40 meanwhile (this one was
        // standby, its own view stopped at 8): 41 goes at once.
        turns.enter("source/pnc", 41, || Ok::<_, ()>(40)).unwrap().wait(Duration::from_secs(30));
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
    fn a_predecessor_that_leaves_unapplied_is_waited_for_and_a_later_run_goes_in_order() {
        let turns = Arc::new(Turns::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        // Run 1: batch 1 in flight, batch 2 waiting; 1 leaves unapplied on
        // an answer the node retries, so 2 waits out its grace for the
        // retry, which does not come (the run gave up), and goes on to be
        // refused by the engine in turn.
        let first = turns.enter("source/pnc", 1, none).unwrap();
        let second = later(&turns, (2, Duration::from_secs(1)), false, &order);
        drop(first);
        second.join().unwrap();
        // Run 2 sends 1 and 2 again, 2 arriving first: 2 waits for 1.
        let second = later(&turns, (2, Duration::from_secs(30)), true, &order);
        let mut first = turns.enter("source/pnc", 1, none).unwrap();
        first.wait(Duration::from_secs(30));
        order.lock().unwrap().push(1);
        first.applied();
        drop(first);
        second.join().unwrap();
        assert_eq!(*order.lock().unwrap(), vec![2, 1, 2]);
    }

    #[test]
    fn a_batch_refused_for_good_releases_its_successor_at_once_until_it_is_sent_again() {
        let turns = Turns::default();
        // Batch 5 is refused for good (invalid, say) and gone before 6
        // arrives: 6 does not wait out its grace.
        let mut first = turns.enter("source/pnc", 5, || Ok::<_, ()>(4)).unwrap();
        first.refused();
        drop(first);
        let started = Instant::now();
        turns.enter("source/pnc", 6, || Ok::<_, ()>(4)).unwrap().wait(Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(5));
        // A later run sends 5 again: the refusal no longer counts, and 6
        // waits for the new 5 (here, out its grace while 5 is not seen).
        let again = turns.enter("source/pnc", 5, || Ok::<_, ()>(4)).unwrap();
        drop(again);
        let started = Instant::now();
        turns.enter("source/pnc", 6, || Ok::<_, ()>(4)).unwrap().wait(Duration::from_millis(300));
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[test]
    fn senders_do_not_wait_for_each_other() {
        let turns = Turns::default();
        let _pnc = turns.enter("source/pnc", 1, none).unwrap();
        let started = Instant::now();
        let mut pnd = turns.enter("source/pnd", 1, none).unwrap();
        pnd.wait(Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    #[test]
    fn a_batch_applied_but_not_written_holds_its_successor_back_again() {
        let turns = Arc::new(Turns::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let stored = || Ok::<_, ()>(6);
        // Batch 7 applies in memory; 8 goes at once, applies on top of it,
        // and both commits fail (the database connection cut).
        let mut seven = turns.enter("source/pnc", 7, stored).unwrap();
        seven.wait(Duration::from_secs(30));
        seven.applied();
        let mut eight = turns.enter("source/pnc", 8, stored).unwrap();
        let started = Instant::now();
        eight.wait(Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(5));
        eight.applied();
        eight.not_written(|| Some(6));
        drop(eight);
        seven.not_written(|| Some(6));
        drop(seven);
        // 8 is sent again before 7: it waits for 7's retry, not going at
        // once on the mark 7 left, to be refused as out of order.
        let again = later(&turns, (8, Duration::from_secs(30)), true, &order);
        let mut seven = turns.enter("source/pnc", 7, stored).unwrap();
        seven.wait(Duration::from_secs(30));
        order.lock().unwrap().push(7);
        seven.applied();
        drop(seven);
        again.join().unwrap();
        assert_eq!(*order.lock().unwrap(), vec![7, 8]);
    }

    #[test]
    fn a_batch_let_go_by_a_predecessor_since_lost_is_to_be_sent_again() {
        let turns = Turns::default();
        let stored = || Ok::<_, ()>(7);
        let mut eight = turns.enter("source/pnc", 8, stored).unwrap();
        eight.wait(Duration::from_secs(30));
        eight.applied();
        // 9 goes on the mark 8 left; then 8's commit fails, and the
        // engine, rebuilt without 8, refuses 9 as out of order.
        let mut nine = turns.enter("source/pnc", 9, stored).unwrap();
        nine.wait(Duration::from_secs(30));
        eight.not_written(|| Some(7));
        drop(eight);
        assert!(nine.predecessor_lost(|| Some(7)), "9 is to be sent again");
        drop(nine);
        // Sent again before 8, it now waits for it (here, out its grace).
        let started = Instant::now();
        let mut again = turns.enter("source/pnc", 9, stored).unwrap();
        again.wait(Duration::from_millis(300));
        assert!(started.elapsed() >= Duration::from_millis(300));
        // Not when it went without the mark (its grace ran out), nor when
        // the store holds a batch 9 already (another process's, say).
        assert!(!again.predecessor_lost(|| Some(7)));
        let mut ten = turns.enter("source/pnc", 10, || Ok::<_, ()>(9)).unwrap();
        ten.wait(Duration::from_secs(30));
        assert!(!ten.predecessor_lost(|| Some(10)));
    }
}
