//! The application core: one engine behind a lock, the store, and the
//! published log view. A batch is applied under the engine lock; its
//! commit is written once the lock is let go, in apply order, while the
//! next batch applies ([`crate::inflight`]), and then staged (its new
//! leaves and checkpoint, in commit order). A batch's receipt waits for its
//! own commit. Staged leaves are published, and subscribers told, only when
//! the server's publisher calls [`Core::publish_staged`], on a schedule
//! (`[audit] publish_interval_ms`): whoever reads checkpoints sees the log
//! grow by ticks that merge every batch in between, not batch by batch.
//! A core whose store's lease another coordinator holds is the standby: it
//! refuses every request ([`CoreError::Standby`]) and holds nothing until
//! [`Core::lease_turn`] finds the lease free and takes over. If a commit
//! fails, the commits in flight after it are refused unwritten and the
//! engine is rebuilt from the store before it is used again, so memory is
//! ahead of disk only by commits in flight, whose answers wait for them; if
//! the rebuild fails too (or the first load at start), the core refuses
//! further work until a turn of the lease rebuilds it. No
//! RPC types here: the RPC layer (`service`) converts requests to domain
//! types and [`CoreError`] to status codes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;
use tokio::sync::watch;
use vigil_common::clock::now_ms;
use vigil_proto::tlog::{Hash, Signer};
use vigil_proto::v1::{BatchReceipt, Disclosure};

use crate::engine::{ApplicantIn, Applied, CheckMeta, Checked, Engine, EngineError, LogView, Settings};
use crate::inflight::{CommitError, InFlight, Overlay};
use crate::metrics;
use crate::store::{Lease, Store, StoreError, StoreRead};

/// Why the core could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The engine could not be (re)built from the store: requests are
    /// refused until a turn of the lease rebuilds it.
    #[error("the coordinator cannot read its store; it serves again once the store answers")]
    Broken,
    /// A lock was poisoned by a panic elsewhere.
    #[error("internal lock poisoned")]
    Poisoned,
    /// A disclosure is not in the published log (it must wait).
    #[error("disclosure is not in the published log")]
    NotPublished,
    /// Another coordinator holds the store's lease: this one is the standby.
    #[error("this coordinator is the standby; another one is active (nodes given several addresses move to it)")]
    Standby,
    /// Another subscription for the same force started and ended this one.
    #[error(
        "another subscription for this force started, so this one is ended: run one watch per force; \
         if no other should be running, this force's certificate may be in other hands"
    )]
    Superseded,
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> CoreError {
        CoreError::Engine(EngineError::Store(e))
    }
}

/// What commits have added to the log since the last publication.
#[derive(Default)]
struct Staged {
    leaves: Vec<Hash>,
    checkpoint: Option<String>,
    /// The forces with something new to receive.
    forces: std::collections::BTreeSet<String>,
    /// Disclosures and retractions created (counted at publication, so
    /// the metric moves by ticks, like the log, not batch by batch).
    disclosures: u64,
}

/// What publications have brought, by force: a delivery task wakes on
/// every change but reads the store only when its force's count (or the
/// count for everyone, moved when the engine is rebuilt) has moved, so one
/// force's disclosure does not send every subscription to the store.
#[derive(Debug, Default)]
pub struct Changes {
    everyone: u64,
    forces: std::collections::HashMap<String, u64>,
}

impl Changes {
    /// Where `force` stands: equal marks mean nothing new for it.
    pub fn mark(&self, force: &str) -> (u64, u64) {
        (self.everyone, self.forces.get(force).copied().unwrap_or(0))
    }
}

/// The engine, the store and the published log.
pub struct Core {
    engine: Mutex<Engine>,
    /// Commits of applied batches not yet written, in apply order.
    in_flight: InFlight,
    store: Arc<dyn Store>,
    view: RwLock<LogView>,
    /// Committed but not yet published, in commit order.
    staged: Mutex<Staged>,
    /// The published tree size.
    published: watch::Sender<u64>,
    changed: watch::Sender<Changes>,
    settings: Settings,
    /// The audit signing key's text, overwritten when the core is dropped.
    signer_key: zeroize::Zeroizing<String>,
    broken: AtomicBool,
    /// Whether another coordinator holds the store's lease.
    standby: AtomicBool,
    /// `true` while this coordinator is the active one.
    active: watch::Sender<bool>,
    /// The name this coordinator takes the lease under.
    holder: String,
    shutdown: watch::Receiver<bool>,
}

/// What a turn of the lease found ([`Core::lease_turn`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Active, and the engine usable.
    Serving,
    /// Active, but the engine could not be rebuilt from the store yet.
    Broken,
    /// Another coordinator is active.
    Standby,
}

impl Core {
    /// Takes the store's lease as `holder`; holding it, loads the engine
    /// from the store and applies its start-up commit. If another
    /// coordinator holds the lease, this one starts as the standby: it
    /// holds nothing and refuses every request until it takes over
    /// ([`Core::lease_turn`]). If the store fails while it is read (the
    /// database connection cut mid-load), the core starts broken, as after
    /// a failed rebuild: it refuses requests and [`Core::lease_turn`] loads
    /// it again once the store answers. Any other failure of the load (a
    /// log that does not check against its checkpoint) ends the start.
    pub fn open(
        store: Arc<dyn Store>,
        settings: Settings,
        signer_key: String,
        shutdown: watch::Receiver<bool>,
        holder: &str,
    ) -> Result<Arc<Core>, CoreError> {
        let signer =
            Signer::from_skey(&signer_key).map_err(|e| EngineError::Integrity(format!("audit signing key: {e}")))?;
        let standby = match store.take_lease(holder)? {
            Lease::Held(0) => false,
            Lease::Held(generation) => {
                tracing::info!(generation, "this coordinator holds the lease: it is the active one");
                false
            }
            Lease::Elsewhere(by) => {
                tracing::info!(active = %by, "standby: another coordinator holds the lease; taking over when it lets go");
                true
            }
        };
        let core = Arc::new(Core {
            engine: Mutex::new(Engine::idle(settings.clone(), signer)),
            in_flight: InFlight::default(),
            store,
            view: RwLock::new(LogView::default()),
            staged: Mutex::new(Staged::default()),
            published: watch::channel(0).0,
            changed: watch::channel(Changes::default()).0,
            settings,
            signer_key: zeroize::Zeroizing::new(signer_key),
            broken: AtomicBool::new(false),
            standby: AtomicBool::new(standby),
            active: watch::channel(!standby).0,
            holder: holder.to_string(),
            shutdown,
        });
        if !standby {
            let mut engine = core.engine()?;
            match core.rebuild(&mut engine) {
                Ok(()) => {}
                Err(CoreError::Engine(EngineError::Store(e))) => {
                    tracing::error!(
                        error = %e,
                        "cannot load the store; refusing requests (health NOT_SERVING) until it can be read"
                    );
                    core.broken.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(core)
    }

    /// Whether the engine could not be (re)built from the store, so that
    /// requests are refused until [`Core::lease_turn`] rebuilds it.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    /// Whether another coordinator is the active one.
    pub fn is_standby(&self) -> bool {
        self.standby.load(Ordering::SeqCst)
    }

    /// `true` while this coordinator is the active one, as it changes.
    pub fn active(&self) -> watch::Receiver<bool> {
        self.active.subscribe()
    }

    /// One turn of the lease, every second or so (blocking): a standby
    /// tries to take over; the active coordinator checks that it still
    /// holds the lease, and if not steps down (and tries to take it back,
    /// which succeeds when it was the database that went away, not the
    /// lease that went to another); a broken engine is rebuilt.
    pub fn lease_turn(&self) -> Turn {
        if !self.is_standby() && !self.store.holds_lease() {
            tracing::error!("the lease is lost: stepping down to standby");
            self.step_down();
        }
        if self.is_standby() && !self.take_over() {
            return Turn::Standby;
        }
        if self.store.meta("store_format").is_ok() && self.recover() { Turn::Serving } else { Turn::Broken }
    }

    /// Takes the lease if it is free, and loads the store into the engine.
    fn take_over(&self) -> bool {
        let generation = match self.store.take_lease(&self.holder) {
            Ok(Lease::Held(g)) => g,
            Ok(Lease::Elsewhere(_)) => return false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot try the lease");
                return false;
            }
        };
        let Ok(mut engine) = self.engine.lock() else { return false };
        tracing::info!(generation, "took the lease: loading the store to take over");
        let t = Instant::now();
        match self.rebuild(&mut engine) {
            Ok(()) => {
                self.broken.store(false, Ordering::SeqCst);
                self.standby.store(false, Ordering::SeqCst);
                self.active.send_replace(true);
                metrics::takeover();
                tracing::info!(secs = t.elapsed().as_secs_f64(), "took over: this coordinator is the active one");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot load the store to take over; letting the lease go");
                self.store.release_lease();
                false
            }
        }
    }

    /// Becomes the standby: refuses requests, drops what the engine holds
    /// and lets the lease go.
    fn step_down(&self) {
        self.standby.store(true, Ordering::SeqCst);
        self.active.send_replace(false);
        if let Ok(mut engine) = self.engine.lock()
            && let Ok(signer) = Signer::from_skey(&self.signer_key)
        {
            self.in_flight.failed_and_drained();
            *engine = Engine::idle(self.settings.clone(), signer);
        }
        if let Ok(mut s) = self.staged.lock() {
            *s = Staged::default();
        }
        if let Ok(mut v) = self.view.write() {
            *v = LogView::default();
        }
        self.store.release_lease();
    }

    /// Lets the lease go at shutdown, so that a standby takes over at once.
    pub fn release(&self) {
        if !self.is_standby() {
            self.standby.store(true, Ordering::SeqCst);
            self.store.release_lease();
        }
    }

    /// The settings the engine runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The store (delivery and log reads go to it directly).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Changes when a publication brings something for a force to receive
    /// ([`Changes::mark`] says for which).
    pub fn changes(&self) -> watch::Receiver<Changes> {
        self.changed.subscribe()
    }

    /// The published tree size, as it changes.
    pub fn published(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// Becomes `true` when the server stops.
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// Tries once to rebuild a broken core from the store (say, the
    /// database is reachable again); returns whether the core is usable.
    pub fn recover(&self) -> bool {
        if !self.broken.load(Ordering::Relaxed) {
            return true;
        }
        let Ok(mut engine) = self.engine.lock() else { return false };
        // `reload` clears `broken` only once the engine is rebuilt, so no
        // request runs on the engine the failed rebuild left behind.
        self.reload(&mut engine);
        let ok = !self.broken.load(Ordering::Relaxed);
        if ok {
            tracing::info!("the engine was rebuilt from the store; serving again");
        }
        ok
    }

    /// Refuses work on the standby and once the core is broken.
    pub fn usable(&self) -> Result<(), CoreError> {
        if self.is_standby() {
            Err(CoreError::Standby)
        } else if self.broken.load(Ordering::Relaxed) {
            Err(CoreError::Broken)
        } else {
            Ok(())
        }
    }

    /// Makes every acknowledgement durable (they may lag commits); called
    /// every second and when the server stops.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.store.flush()
    }

    fn engine(&self) -> Result<MutexGuard<'_, Engine>, CoreError> {
        self.engine.lock().map_err(|_| CoreError::Poisoned)
    }

    /// Runs `f` against the engine, commits what it returns, stages it for
    /// publication. Blocking: call it off the async executor.
    pub fn apply(
        &self,
        f: impl FnOnce(&mut Engine, &dyn StoreRead) -> Result<Applied, EngineError>,
    ) -> Result<BatchReceipt, CoreError> {
        self.apply_then(f, || {})
    }

    /// [`Core::apply`], calling `applied` once the batch is applied in
    /// memory and has its place in the commit order, before its commit is
    /// written: the next batch may apply then, while this one's commit is
    /// written (`inflight`). The receipt still comes back only once the
    /// commit is durable, and a batch refused or failed never calls
    /// `applied`.
    pub fn apply_then(
        &self,
        f: impl FnOnce(&mut Engine, &dyn StoreRead) -> Result<Applied, EngineError>,
        applied: impl FnOnce(),
    ) -> Result<BatchReceipt, CoreError> {
        self.usable()?;
        let mut engine = self.engine()?;
        if self.in_flight.failed() {
            self.drain(&mut engine)?;
        }
        let reads = self.in_flight.reads();
        let t0 = Instant::now();
        let result = f(&mut engine, &Overlay::new(&*self.store, &reads));
        let apply_ms = t0.elapsed().as_secs_f64() * 1e3;
        drop(reads);
        match result {
            // A replay is answered once what it replays is durable.
            Ok(Applied::Replayed(r)) => match self.drain(&mut engine)? {
                false => {
                    applied();
                    Ok(r)
                }
                true => Err(StoreError::from(CommitError::Earlier).into()),
            },
            Ok(Applied::Fresh { receipt, commit, leaves, forces }) => {
                let tokens = engine.token_counts();
                let ticket = self.in_flight.issue(commit);
                drop(engine);
                // A ticket issued must be committed, or every later commit
                // waits for it for ever: a panic in `applied` goes on only
                // after the commit.
                let callback = std::panic::catch_unwind(std::panic::AssertUnwindSafe(applied));
                let t1 = Instant::now();
                let written = self.in_flight.commit(ticket, |c| {
                    let t2 = Instant::now();
                    self.store.commit(c)?;
                    tracing::debug!(
                        apply_ms,
                        wait_ms = (t2 - t1).as_secs_f64() * 1e3,
                        commit_ms = t2.elapsed().as_secs_f64() * 1e3,
                        "batch applied and committed"
                    );
                    metrics::batch_committed();
                    // Staged in commit order: tickets commit one at a time.
                    self.stage(leaves, c.checkpoint.as_ref().map(|x| x.1.clone()), forces, c.disclosures.len());
                    Ok(())
                });
                if let Err(p) = callback {
                    std::panic::resume_unwind(p);
                }
                match written {
                    Ok(()) => {
                        metrics::set_tokens(tokens.0, tokens.1);
                        Ok(receipt)
                    }
                    Err(e) => {
                        // The engine is ahead of the store: rebuild it now
                        // (or whoever takes the lock first does).
                        if let Ok(mut engine) = self.engine() {
                            let _ = self.drain(&mut engine);
                        }
                        Err(StoreError::from(e).into())
                    }
                }
            }
            Err(e @ (EngineError::Limit(_) | EngineError::Invalid(_) | EngineError::Sequence(_))) => Err(e.into()),
            Err(e) => {
                self.reload(&mut engine);
                Err(e.into())
            }
        }
    }

    /// Waits until every commit in flight is written. If one failed, the
    /// engine (locked by the caller) is ahead of the store: it is rebuilt
    /// from the store, and `true` returned. Every use of the engine other
    /// than applying a batch drains first.
    fn drain(&self, engine: &mut Engine) -> Result<bool, CoreError> {
        if !self.in_flight.failed_and_drained() {
            return Ok(false);
        }
        self.reload(engine);
        self.usable()?;
        Ok(true)
    }

    /// A pre-employment check: matched, logged (counts only), committed and
    /// staged. Blocking. Its audit proof is added by [`Core::check_proof`]
    /// once its entry is published.
    pub fn check(&self, force: &str, meta: CheckMeta, applicants: Vec<ApplicantIn>) -> Result<Checked, CoreError> {
        self.usable()?;
        let mut engine = self.engine()?;
        self.drain(&mut engine)?;
        let checked = match engine.check(&*self.store, force, meta, applicants, now_ms()) {
            Ok(c) => c,
            Err(e) => {
                self.reload(&mut engine);
                return Err(e.into());
            }
        };
        if let Err(e) = self.store.commit(&checked.commit) {
            self.reload(&mut engine);
            return Err(e.into());
        }
        self.stage(checked.leaves.clone(), checked.commit.checkpoint.as_ref().map(|c| c.1.clone()), Vec::new(), 0);
        Ok(checked)
    }

    /// Waits until a check's entry is published, then adds its inclusion
    /// proof and the checkpoint it is proven against.
    pub async fn check_proof(&self, checked: &mut Checked) -> Result<(), CoreError> {
        let mut published = self.published();
        let mut shutdown = self.shutdown();
        let mut active = self.active();
        tokio::select! {
            r = published.wait_for(|size| *size > checked.log_index) => { r.map_err(|_| CoreError::NotPublished)?; }
            _ = shutdown.wait_for(|stop| *stop) => return Err(CoreError::NotPublished),
            _ = active.wait_for(|a| !*a) => return Err(CoreError::Standby),
        }
        let mut proof = vigil_proto::v1::AuditProof {
            entry: checked.entry.clone().into(),
            leaf_index: checked.log_index,
            ..Default::default()
        };
        self.view(|v| {
            let p = v.tree.inclusion_proof(checked.log_index, v.tree.size()).ok_or(CoreError::NotPublished)?;
            proof.inclusion = p.into_iter().map(|h| h.to_vec().into()).collect();
            proof.checkpoint = v.checkpoint.clone();
            Ok::<_, CoreError>(())
        })??;
        checked.audit = Some(proof);
        Ok(())
    }

    /// Signs, commits and stages a fresh checkpoint of the log as it
    /// stands, so that parties see a current time on a quiet log. Blocking.
    pub fn refresh_checkpoint(&self) -> Result<(), CoreError> {
        if self.is_standby() {
            return Ok(()); // the active coordinator signs them
        }
        self.usable()?;
        let mut engine = self.engine()?;
        self.drain(&mut engine)?;
        let commit = engine.refresh_checkpoint(now_ms())?;
        self.store.commit(&commit)?;
        self.stage(Vec::new(), commit.checkpoint.map(|c| c.1), Vec::new(), 0);
        Ok(())
    }

    /// A caller's total (read from the engine by `total`) and its last
    /// batch sequence. Blocking.
    pub fn status(&self, caller: &str, total: impl FnOnce(&Engine) -> u64) -> Result<(u64, u64), CoreError> {
        self.usable()?;
        let mut engine = self.engine()?;
        self.drain(&mut engine)?;
        let total = total(&engine);
        Ok((total, Engine::last_sequence(&*self.store, caller)?))
    }

    /// Queues a commit's leaves and checkpoint for the next publication.
    /// Called right after the commit, in commit order (under the engine
    /// lock, or in a batch's turn to commit: `inflight`).
    fn stage(&self, leaves: Vec<Hash>, checkpoint: Option<String>, forces: Vec<String>, disclosures: usize) {
        if let Ok(mut s) = self.staged.lock() {
            s.disclosures += disclosures as u64;
            s.leaves.extend(leaves);
            if checkpoint.is_some() {
                s.checkpoint = checkpoint;
            }
            s.forces.extend(forces);
        }
    }

    /// Publishes everything staged: the leaves, and the latest checkpoint
    /// (which covers them all). Tells subscribers if a force has something
    /// new. The server calls it every `[audit] publish_interval_ms`.
    pub fn publish_staged(&self) -> Result<(), CoreError> {
        let staged = {
            let mut s = self.staged.lock().map_err(|_| CoreError::Poisoned)?;
            if s.leaves.is_empty() && s.checkpoint.is_none() {
                return Ok(());
            }
            std::mem::take(&mut *s)
        };
        let size = {
            let mut v = self.view.write().map_err(|_| CoreError::Poisoned)?;
            for l in staged.leaves {
                v.tree.push(l);
            }
            if let Some(c) = staged.checkpoint {
                v.checkpoint = c;
            }
            v.tree.size()
        };
        self.published.send_replace(size);
        metrics::disclosures_published(staged.disclosures);
        if !staged.forces.is_empty() {
            self.changed.send_modify(|c| {
                for f in staged.forces {
                    *c.forces.entry(f).or_default() += 1;
                }
            });
        }
        Ok(())
    }

    /// Loads the engine from the store (applying its start-up commit) and
    /// installs it with its log view.
    fn rebuild(&self, engine: &mut Engine) -> Result<(), CoreError> {
        let signer = Signer::from_skey(&self.signer_key).map_err(|e| EngineError::Integrity(e.to_string()))?;
        let (e, view, commit) = Engine::load(&*self.store, self.settings.clone(), signer, now_ms())?;
        if !commit.is_empty() {
            self.store.commit(&commit)?;
        }
        *engine = e;
        let (nat, ros) = engine.token_counts();
        metrics::set_tokens(nat, ros);
        // Whatever was staged is in the rebuilt view, if committed.
        if let Ok(mut s) = self.staged.lock() {
            *s = Staged::default();
        }
        let size = view.tree.size();
        if let Ok(mut v) = self.view.write() {
            *v = view;
        }
        self.published.send_replace(size);
        self.changed.send_modify(|c| c.everyone += 1);
        Ok(())
    }

    /// Rebuilds the engine from the store after a failure mid-batch.
    fn reload(&self, engine: &mut Engine) {
        tracing::warn!("rebuilding the engine from the store");
        // Commits in flight were applied on top of the engine being
        // replaced: let them finish (or be refused) first.
        self.in_flight.failed_and_drained();
        match self.rebuild(engine) {
            Ok(()) => self.broken.store(false, Ordering::Relaxed),
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "cannot rebuild the engine; refusing requests (health NOT_SERVING) until the store can be read again"
                );
                self.broken.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Reads the published log view.
    pub fn view<T>(&self, f: impl FnOnce(&LogView) -> T) -> Result<T, CoreError> {
        let v = self.view.read().map_err(|_| CoreError::Poisoned)?;
        Ok(f(&v))
    }

    /// The disclosure with its inclusion proof in the published log and the
    /// latest checkpoint.
    pub fn with_proof(&self, mut d: Disclosure) -> Result<Disclosure, CoreError> {
        self.view(|v| {
            let size = v.tree.size();
            if let Some(a) = d.audit.as_mut() {
                let proof = v.tree.inclusion_proof(a.leaf_index, size).ok_or(CoreError::NotPublished)?;
                a.inclusion = proof.into_iter().map(|h| h.to_vec().into()).collect();
                a.checkpoint = v.checkpoint.clone();
            }
            Ok(d)
        })?
    }
}

#[cfg(test)]
mod tests;
