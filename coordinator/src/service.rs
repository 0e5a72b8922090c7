//! The gRPC services: authorisation, request checks and conversion to
//! domain types, then the engine. Handlers are thin: CPU work runs in
//! `spawn_blocking`, one batch at a time under the engine lock.
//!
//! Who may call what (from the URI SAN of the client certificate):
//!
//! | service | force | source | auditor |
//! |---|---|---|---|
//! | `RosterService` | yes (its own roster) | no | no |
//! | `FeedService` | no | yes (its own records) | no |
//! | `DisclosureService` | yes (its own disclosures) | no | no |
//! | `CheckService` | yes | no | no |
//! | `AuditService.Checkpoint`, `InclusionProof`, `ConsistencyProof` | yes | yes | yes |
//! | `AuditService.Entries` | no | no | yes |

use prost::Message;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use vigil_proto::spiffe::{Role, SpiffeId};
use vigil_proto::tlog::{Hash, Signer};
use vigil_proto::v1::*;
use vigil_proto::{audit, tokens};

use vigil_common::clock::now_ms;

use crate::config::Limits;
use crate::engine::{ApplicantIn, Applied, BatchIn, Engine, EngineError, LogView, RecordIn, Settings, SubjectIn};
use crate::metrics;
use crate::pepper::Pepper;
use crate::store::{Ref, Store, StoreError, StoredToken};

impl From<EngineError> for Status {
    fn from(e: EngineError) -> Status {
        match e {
            EngineError::Limit(m) => Status::resource_exhausted(m),
            EngineError::Invalid(m) => Status::invalid_argument(m),
            EngineError::Sequence(m) => Status::aborted(m),
            EngineError::Store(e) => {
                tracing::error!(error = %e, "store failure");
                Status::unavailable("the coordinator's store failed; the batch was not applied, retry later")
            }
            EngineError::Integrity(m) => {
                tracing::error!(error = %m, "integrity failure");
                Status::internal("the coordinator's state failed an integrity check")
            }
        }
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Status {
        EngineError::Store(e).into()
    }
}


/// Everything the services share.
pub struct Core {
    engine: Mutex<Engine>,
    store: Arc<dyn Store>,
    view: RwLock<LogView>,
    changed: watch::Sender<u64>,
    pepper: Pepper,
    limits: Limits,
    trust_domain: String,
    settings: Settings,
    signer_key: String,
    broken: AtomicBool,
    check_windows: Mutex<HashMap<String, (Instant, u32)>>,
    shutdown: watch::Receiver<bool>,
}

/// Builds the shared core: loads the engine and applies its start-up commit.
pub fn core(
    store: Arc<dyn Store>,
    settings: Settings,
    signer_key: String,
    pepper: Pepper,
    limits: Limits,
    trust_domain: String,
    shutdown: watch::Receiver<bool>,
) -> Result<Arc<Core>, EngineError> {
    let signer =
        Signer::from_skey(&signer_key).map_err(|e| EngineError::Integrity(format!("audit signing key: {e}")))?;
    let (engine, view, commit) = Engine::load(&*store, settings.clone(), signer, now_ms())?;
    if !commit.is_empty() {
        store.commit(&commit)?;
    }
    let (nat, ros) = engine.token_counts();
    metrics::set_tokens(nat, ros);
    Ok(Arc::new(Core {
        engine: Mutex::new(engine),
        store,
        view: RwLock::new(view),
        changed: watch::channel(0).0,
        pepper,
        limits,
        trust_domain,
        settings,
        signer_key,
        broken: AtomicBool::new(false),
        check_windows: Mutex::new(HashMap::new()),
        shutdown,
    }))
}

impl Core {
    /// Makes every acknowledgement durable (they may lag commits); called
    /// when the server stops.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.store.flush()
    }

    /// The caller's identity, if its certificate names one of `roles`.
    /// A refusal is logged with the peer's address, role and reason (never
    /// identity data) and counted, so operators can see probing.
    fn auth<T>(&self, req: &Request<T>, roles: &[Role], what: &str) -> Result<SpiffeId, Status> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(Status::unavailable("the coordinator must be restarted after a store failure"));
        }
        let refuse = |role: &str, reason: &'static str, status: Status| {
            metrics::refused_call(role, reason);
            let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
            tracing::warn!(peer = %peer, role, reason, call = what, "call refused");
            status
        };
        let Some(leaf) = req.peer_certs().and_then(|c| c.first().cloned()) else {
            return Err(refuse("none", "no_certificate", Status::unauthenticated("no client certificate")));
        };
        let id = identity_of(leaf.as_ref()).map_err(|e| refuse("none", "no_identity", Status::unauthenticated(e)))?;
        if id.trust_domain != self.trust_domain {
            return Err(refuse(
                id.role.as_str(),
                "trust_domain",
                Status::permission_denied(format!("certificate is for trust domain {}", id.trust_domain)),
            ));
        }
        if !roles.contains(&id.role) {
            return Err(refuse(
                id.role.as_str(),
                "role",
                Status::permission_denied(format!("{} {} may not {what}", id.role.as_str(), id.code)),
            ));
        }
        Ok(id)
    }

    fn pepper_set(&self, set: Option<&TokenSet>, what: &str) -> Result<Vec<StoredToken>, Status> {
        let set = set.ok_or_else(|| Status::invalid_argument(format!("{what}: no tokens")))?;
        let toks = tokens::unpack(set, self.limits.max_tokens_per_item)
            .map_err(|e| Status::invalid_argument(format!("{what}: {e}")))?;
        Ok(toks.iter().map(|(k, t)| (*k, self.pepper.rekey(t))).collect())
    }

    /// Checks what every batch and check names: `what` is how errors name
    /// it (`batch 7`, `check c-…`).
    fn check_header(&self, what: &str, epoch: u32, items: usize) -> Result<(), Status> {
        if epoch != self.settings.epoch {
            return Err(Status::failed_precondition(format!(
                "{what} is for linkage-key epoch {epoch}; the coordinator accepts epoch {}",
                self.settings.epoch
            )));
        }
        if items > self.limits.max_batch_items {
            return Err(Status::resource_exhausted(format!(
                "{what} has {items} items, more than the limit of {}",
                self.limits.max_batch_items
            )));
        }
        Ok(())
    }

    /// A batch's name in errors, after checking its sequence is given.
    fn batch_name(sequence: u64) -> Result<String, Status> {
        if sequence == 0 {
            return Err(Status::invalid_argument(
                "sequence must be given: the last applied sequence (Status) plus one",
            ));
        }
        Ok(format!("batch {sequence}"))
    }

    /// Runs `f` against the engine, commits what it returns, publishes.
    fn apply(
        &self,
        f: impl FnOnce(&mut Engine, &dyn Store) -> Result<Applied, EngineError>,
    ) -> Result<BatchReceipt, Status> {
        let mut engine = self.engine.lock().map_err(|_| Status::internal("engine lock poisoned"))?;
        let t0 = Instant::now();
        let applied = f(&mut engine, &*self.store);
        let t1 = Instant::now();
        match applied {
            Ok(Applied::Replayed(r)) => Ok(r),
            Ok(Applied::Fresh { receipt, commit, leaves, forces }) => {
                if let Err(e) = self.store.commit(&commit) {
                    self.reload(&mut engine);
                    return Err(e.into());
                }
                tracing::debug!(
                    apply_ms = (t1 - t0).as_secs_f64() * 1e3,
                    commit_ms = t1.elapsed().as_secs_f64() * 1e3,
                    "batch applied and committed"
                );
                metrics::batch_committed(commit.disclosures.len());
                let (nat, ros) = engine.token_counts();
                metrics::set_tokens(nat, ros);
                drop(engine);
                self.publish(leaves, commit.checkpoint.map(|c| c.1));
                if !forces.is_empty() {
                    self.changed.send_modify(|v| *v += 1);
                }
                Ok(receipt)
            }
            Err(e @ (EngineError::Limit(_) | EngineError::Invalid(_))) => Err(e.into()),
            Err(e) => {
                self.reload(&mut engine);
                Err(e.into())
            }
        }
    }

    fn publish(&self, leaves: Vec<Hash>, checkpoint: Option<String>) {
        if let Ok(mut v) = self.view.write() {
            for l in leaves {
                v.tree.push(l);
            }
            if let Some(c) = checkpoint {
                v.checkpoint = c;
            }
        }
    }

    /// Rebuilds the engine from the store after a failure mid-batch.
    fn reload(&self, engine: &mut Engine) {
        tracing::warn!("rebuilding the engine from the store");
        let res = Signer::from_skey(&self.signer_key)
            .map_err(|e| EngineError::Integrity(e.to_string()))
            .and_then(|s| Engine::load(&*self.store, self.settings.clone(), s, now_ms()));
        match res {
            Ok((e, view, _)) => {
                *engine = e;
                if let Ok(mut v) = self.view.write() {
                    *v = view;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot rebuild the engine; refusing further requests until restarted");
                self.broken.store(true, Ordering::Relaxed);
            }
        }
    }

    /// A caller's status: its total (`total` reads it from the engine), the
    /// epoch, the policy, its last batch sequence and, for a force, its
    /// enrolment bound. Read off the async executor.
    async fn status(
        self: &Arc<Self>,
        caller: String,
        total: impl FnOnce(&Engine) -> u64 + Send + 'static,
    ) -> Result<Response<StatusResponse>, Status> {
        let core = self.clone();
        let max_total = if caller.starts_with("force/") { self.settings.max_roster_size } else { 0 };
        blocking(move || {
            let total = total(&*core.engine.lock().map_err(|_| Status::internal("engine lock poisoned"))?);
            let last_sequence = Engine::last_sequence(&*core.store, &caller)?;
            Ok(Response::new(StatusResponse {
                total,
                epoch: core.settings.epoch,
                policy_version: core.settings.policy.version.clone(),
                last_sequence,
                max_total,
            }))
        })
        .await
    }

    /// The disclosure with its inclusion proof and the latest checkpoint.
    fn with_proof(&self, mut d: Disclosure) -> Result<Disclosure, Status> {
        let v = self.view.read().map_err(|_| Status::internal("log view lock poisoned"))?;
        let size = v.tree.size();
        if let Some(a) = d.audit.as_mut() {
            let proof = v
                .tree
                .inclusion_proof(a.leaf_index, size)
                .ok_or_else(|| Status::internal("disclosure is not in the published log"))?;
            a.inclusion = proof.into_iter().map(|h| h.to_vec().into()).collect();
            a.checkpoint = v.checkpoint.clone();
        }
        Ok(d)
    }
}

/// The SPIFFE id in a certificate's URI SAN (exactly one is required).
pub fn identity_of(der: &[u8]) -> Result<SpiffeId, String> {
    vigil_common::certs::spiffe_id_of(der).map_err(|e| format!("client {e}"))
}

fn to_ref(b: &[u8], what: &str) -> Result<Ref, Status> {
    b.try_into().map_err(|_| Status::invalid_argument(format!("{what}: a reference must be 16 bytes")))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Status> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f).await.map_err(|_| Status::internal("worker failed"))?
}

/// `vigil.v1.RosterService`.
pub struct RosterService(pub Arc<Core>);
/// `vigil.v1.FeedService`.
pub struct FeedService(pub Arc<Core>);
/// `vigil.v1.DisclosureService`.
pub struct DisclosureService(pub Arc<Core>);
/// `vigil.v1.CheckService`.
pub struct CheckService(pub Arc<Core>);
/// `vigil.v1.AuditService`.
pub struct AuditService(pub Arc<Core>);

#[tonic::async_trait]
impl roster_service_server::RosterService for RosterService {
    async fn sync(&self, req: Request<RosterBatch>) -> Result<Response<BatchReceipt>, Status> {
        let core = self.0.clone();
        let id = core.auth(&req, &[Role::Force], "sync a roster")?;
        let force = id.code.clone();
        let started = Instant::now();
        let batch = req.into_inner();
        let name = Core::batch_name(batch.sequence)?;
        core.check_header(&name, batch.epoch, batch.upserts.len() + batch.removes.len())?;
        let receipt = blocking(move || {
            let commitment = audit::roster_commitment(&batch);
            let mut upserts = Vec::with_capacity(batch.upserts.len());
            for (i, u) in batch.upserts.iter().enumerate() {
                let what = format!("{name} upsert {i}");
                upserts.push(SubjectIn {
                    pseudonym: to_ref(&u.subject, &what)?,
                    tokens: core.pepper_set(u.tokens.as_ref(), &what)?,
                });
            }
            let removes = batch
                .removes
                .iter()
                .enumerate()
                .map(|(i, r)| to_ref(r, &format!("{name} remove {i}")))
                .collect::<Result<Vec<_>, _>>()?;
            let input = BatchIn { sequence: batch.sequence, upserts, removes, commitment };
            core.apply(|e, s| e.apply_roster(s, &id.code, input, now_ms()))
        })
        .await?;
        metrics::ingest("roster", started.elapsed());
        tracing::info!(force = %force, sequence = receipt.sequence, upserts = receipt.upserts,
            removes = receipt.removes, enrolled = receipt.total, replayed = receipt.replayed, "roster batch");
        Ok(Response::new(receipt))
    }

    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let id = self.0.auth(&req, &[Role::Force], "read roster status")?;
        self.0.status(format!("force/{}", id.code), move |e| e.enrolled(&id.code)).await
    }
}

#[tonic::async_trait]
impl feed_service_server::FeedService for FeedService {
    async fn feed(&self, req: Request<NationalBatch>) -> Result<Response<BatchReceipt>, Status> {
        let core = self.0.clone();
        let id = core.auth(&req, &[Role::Source], "feed national records")?;
        let started = Instant::now();
        let batch = req.into_inner();
        let name = Core::batch_name(batch.sequence)?;
        core.check_header(&name, batch.epoch, batch.upserts.len() + batch.removes.len())?;
        let source = id.code.clone();
        let receipt = blocking(move || {
            let t = Instant::now();
            let commitment = audit::national_commitment(&batch);
            let mut upserts = Vec::with_capacity(batch.upserts.len());
            for (i, u) in batch.upserts.iter().enumerate() {
                let what = format!("{name} upsert {i}");
                let sealed =
                    u.sealed.as_ref().ok_or_else(|| Status::invalid_argument(format!("{what}: no sealed details")))?;
                if sealed.epoch != core.settings.epoch || sealed.nonce.len() != 12 || sealed.ciphertext.len() > 4096 {
                    return Err(Status::invalid_argument(format!(
                        "{what}: sealed details must be for epoch {}, with a 12-byte nonce and at most 4096 bytes",
                        core.settings.epoch
                    )));
                }
                upserts.push(RecordIn {
                    record_ref: to_ref(&u.record_ref, &what)?,
                    tokens: core.pepper_set(u.tokens.as_ref(), &what)?,
                    sealed: sealed.encode_to_vec(),
                });
            }
            let removes = batch
                .removes
                .iter()
                .enumerate()
                .map(|(i, r)| to_ref(r, &format!("{name} remove {i}")))
                .collect::<Result<Vec<_>, _>>()?;
            let input = BatchIn { sequence: batch.sequence, upserts, removes, commitment };
            tracing::debug!(prepare_ms = t.elapsed().as_secs_f64() * 1e3, "national batch checked and peppered");
            core.apply(|e, s| e.apply_national(s, &source, input, now_ms()))
        })
        .await?;
        metrics::ingest("national", started.elapsed());
        tracing::info!(source = %id.code, sequence = receipt.sequence, upserts = receipt.upserts, removes = receipt.removes,
            records = receipt.total, replayed = receipt.replayed, "national batch");
        Ok(Response::new(receipt))
    }

    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let id = self.0.auth(&req, &[Role::Source], "read feed status")?;
        self.0.status(format!("source/{}", id.code), move |e| e.held(&id.code)).await
    }
}

#[tonic::async_trait]
impl disclosure_service_server::DisclosureService for DisclosureService {
    type SubscribeStream = ReceiverStream<Result<Disclosure, Status>>;

    async fn subscribe(&self, req: Request<SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let id = self.0.auth(&req, &[Role::Force], "receive disclosures")?;
        let (tx, rx) = mpsc::channel(64);
        let core = self.0.clone();
        tracing::info!(force = %id.code, "subscriber connected");
        tokio::spawn(async move {
            let mut changed = core.changed.subscribe();
            let mut shutdown = core.shutdown.clone();
            let mut after = 0u64;
            loop {
                changed.borrow_and_update();
                let (store, force) = (core.store.clone(), id.code.clone());
                let batch = blocking(move || store.pending(&force, after, 256).map_err(Status::from)).await;
                let batch = match batch {
                    Ok(b) => b,
                    Err(s) => {
                        let _ = tx.send(Err(s)).await;
                        return;
                    }
                };
                if batch.is_empty() {
                    tokio::select! {
                        r = changed.changed() => if r.is_err() { return },
                        _ = shutdown.changed() => return,
                        _ = tx.closed() => return,
                    }
                    continue;
                }
                for (seq, msg) in batch {
                    let d = Disclosure::decode(msg.as_slice())
                        .map_err(|_| Status::internal("corrupt stored disclosure"))
                        .and_then(|d| core.with_proof(d));
                    let failed = d.is_err();
                    if tx.send(d).await.is_err() || failed {
                        return;
                    }
                    metrics::delivered();
                    after = seq;
                }
                if *shutdown.borrow() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn acknowledge(&self, req: Request<AcknowledgeRequest>) -> Result<Response<AcknowledgeResponse>, Status> {
        let id = self.0.auth(&req, &[Role::Force], "acknowledge disclosures")?;
        let ids = req.into_inner().ids;
        if ids.len() > 10_000 {
            return Err(Status::resource_exhausted("at most 10000 ids per acknowledgement"));
        }
        let prefix = format!("{}-", id.code);
        let seqs: Vec<u64> =
            ids.iter().filter_map(|i| i.strip_prefix(&prefix)).filter_map(|s| s.parse::<u64>().ok()).collect();
        let store = self.0.store.clone();
        let (acknowledged, pending) = blocking(move || {
            let n = store.acknowledge(&id.code, &seqs)?;
            Ok((n, store.pending_count(&id.code)?))
        })
        .await?;
        Ok(Response::new(AcknowledgeResponse { acknowledged, pending }))
    }
}

#[tonic::async_trait]
impl check_service_server::CheckService for CheckService {
    async fn check(&self, req: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let core = self.0.clone();
        let id = core.auth(&req, &[Role::Force], "run pre-employment checks")?;
        let r = req.into_inner();
        if r.request_id.is_empty() || r.request_id.len() > 64 || !r.request_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Status::invalid_argument("request_id must be 1 to 64 printable ASCII characters"));
        }
        core.check_header(&format!("check {}", r.request_id), r.epoch, 0)?;
        if r.applicants.is_empty() || r.applicants.len() > core.limits.max_applicants {
            return Err(Status::invalid_argument(format!(
                "check {}: 1 to {} applicants per check",
                r.request_id, core.limits.max_applicants
            )));
        }
        {
            let mut w = core.check_windows.lock().map_err(|_| Status::internal("lock poisoned"))?;
            let now = Instant::now();
            let e = w.entry(id.code.clone()).or_insert((now, 0));
            if now.duration_since(e.0).as_secs() >= 60 {
                *e = (now, 0);
            }
            if e.1 >= core.limits.checks_per_minute {
                return Err(Status::resource_exhausted(format!(
                    "at most {} checks per minute per force; try again shortly",
                    core.limits.checks_per_minute
                )));
            }
            e.1 += 1;
        }
        let resp = blocking(move || {
            let mut applicants = Vec::with_capacity(r.applicants.len());
            for (i, a) in r.applicants.iter().enumerate() {
                let what = format!("check {} applicant {i}", r.request_id);
                if a.applicant.is_empty() || a.applicant.len() > 64 {
                    return Err(Status::invalid_argument(format!("{what}: applicant reference must be 1 to 64 bytes")));
                }
                applicants.push(ApplicantIn {
                    applicant: a.applicant.to_vec(),
                    tokens: core.pepper_set(a.tokens.as_ref(), &what)?,
                });
            }
            let n = applicants.len() as u64;
            let mut engine = core.engine.lock().map_err(|_| Status::internal("engine lock poisoned"))?;
            let checked = match engine.check(&*core.store, &id.code, &r.request_id, applicants, now_ms()) {
                Ok(c) => c,
                Err(e) => {
                    core.reload(&mut engine);
                    return Err(e.into());
                }
            };
            if let Err(e) = core.store.commit(&checked.commit) {
                core.reload(&mut engine);
                return Err(e.into());
            }
            drop(engine);
            core.publish(checked.leaves, checked.commit.checkpoint.map(|c| c.1));
            Ok(CheckResponse {
                matches: checked.matches,
                applicants: n,
                candidates: checked.candidates,
                policy_version: core.settings.policy.version.clone(),
                log_index: checked.log_index,
            })
        })
        .await?;
        Ok(Response::new(resp))
    }
}

const ANY: &[Role] = &[Role::Force, Role::Source, Role::Auditor];

#[tonic::async_trait]
impl audit_service_server::AuditService for AuditService {
    async fn checkpoint(&self, req: Request<CheckpointRequest>) -> Result<Response<CheckpointResponse>, Status> {
        self.0.auth(&req, ANY, "read checkpoints")?;
        let v = self.0.view.read().map_err(|_| Status::internal("log view lock poisoned"))?;
        Ok(Response::new(CheckpointResponse { checkpoint: v.checkpoint.clone() }))
    }

    async fn entries(&self, req: Request<EntriesRequest>) -> Result<Response<EntriesResponse>, Status> {
        self.0.auth(&req, &[Role::Auditor], "read log entries")?;
        let r = req.into_inner();
        let size = self.0.view.read().map_err(|_| Status::internal("log view lock poisoned"))?.tree.size();
        if r.start >= r.end || r.start >= size {
            return Err(Status::out_of_range(format!(
                "entries {}..{} are not in the log of {size} entries",
                r.start, r.end
            )));
        }
        let end = r.end.min(r.start + 1000).min(size);
        let store = self.0.store.clone();
        let entries = blocking(move || store.log_entries(r.start, end).map_err(Status::from)).await?;
        Ok(Response::new(EntriesResponse { start: r.start, entries: entries.into_iter().map(Into::into).collect() }))
    }

    async fn inclusion_proof(
        &self,
        req: Request<InclusionProofRequest>,
    ) -> Result<Response<InclusionProofResponse>, Status> {
        self.0.auth(&req, ANY, "read proofs")?;
        let r = req.into_inner();
        let v = self.0.view.read().map_err(|_| Status::internal("log view lock poisoned"))?;
        let proof = v.tree.inclusion_proof(r.leaf_index, r.tree_size).ok_or_else(|| {
            Status::out_of_range(format!("no leaf {} in a published tree of size {}", r.leaf_index, r.tree_size))
        })?;
        Ok(Response::new(InclusionProofResponse { proof: proof.into_iter().map(|h| h.to_vec().into()).collect() }))
    }

    async fn consistency_proof(
        &self,
        req: Request<ConsistencyProofRequest>,
    ) -> Result<Response<ConsistencyProofResponse>, Status> {
        self.0.auth(&req, ANY, "read proofs")?;
        let r = req.into_inner();
        let v = self.0.view.read().map_err(|_| Status::internal("log view lock poisoned"))?;
        let proof = v.tree.consistency_proof(r.size1, r.size2).ok_or_else(|| {
            Status::out_of_range(format!(
                "no consistency proof from {} to {} (published size {})",
                r.size1,
                r.size2,
                v.tree.size()
            ))
        })?;
        Ok(Response::new(ConsistencyProofResponse { proof: proof.into_iter().map(|h| h.to_vec().into()).collect() }))
    }
}
