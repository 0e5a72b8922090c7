//! The RPC layer: authorisation, request checks and conversion to domain
//! types, then the application core ([`crate::core`]); one mapping of
//! errors to status codes. Handlers are thin: CPU work and store reads run
//! in `spawn_blocking`.
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
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status};
use vigil_common::clock::now_ms;
use vigil_proto::spiffe::{Role, SpiffeId};
use vigil_proto::v1::*;
use vigil_proto::{audit, tokens};

use crate::config::Limits;
use crate::core::{Core, CoreError};
use crate::engine::{ApplicantIn, BatchIn, CheckMeta, EngineError, RecordIn, SubjectIn};
use crate::limiter::{AdditionQuotas, CheckQuotas};
use crate::metrics;
use crate::pepper::Pepper;
use crate::store::{Ref, StoreError, StoredToken};
use crate::witness::{CosignError, Witnessing};

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

impl From<CoreError> for Status {
    fn from(e: CoreError) -> Status {
        match e {
            CoreError::Engine(e) => e.into(),
            CoreError::Broken | CoreError::Standby => Status::unavailable(e.to_string()),
            CoreError::Poisoned => Status::internal(e.to_string()),
            CoreError::NotPublished => Status::internal(e.to_string()),
            CoreError::Superseded => Status::aborted(e.to_string()),
        }
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Status {
        EngineError::Store(e).into()
    }
}

/// Restores the quotas from the audit log, so that a restart does not reset
/// them: the checks of the last 24 hours, and for each force the time of
/// its first roster batch and the subjects each batch newly enrolled (the
/// change in `enrolled` plus those removed). The log is read from the
/// start, a page at a time.
fn seed_quotas(core: &Core, checks: &CheckQuotas, additions: &AdditionQuotas) {
    let now = now_ms();
    let Ok(size) = core.view(|v| v.tree.size()) else { return };
    let mut enrolled: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let (mut seeded_checks, mut start) = (0u64, 0u64);
    while start < size {
        let end = (start + 1000).min(size);
        let entries = match core.store().log_entries(start, end) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the log to restore quotas; they start from zero");
                return;
            }
        };
        for bytes in &entries {
            let Ok(entry) = audit::Entry::parse(bytes) else { continue };
            let Some(t) = vigil_proto::time::parse_rfc3339(entry.time()) else { continue };
            match entry {
                audit::Entry::Check { force, applicants, .. } if t > now - 86_400_000 => {
                    checks.seed(&force, t, applicants);
                    seeded_checks += 1;
                }
                audit::Entry::RosterBatch { force, enrolled: after, removes, .. } => {
                    let before = enrolled.insert(force.clone(), after).unwrap_or(0);
                    additions.record(&force, t, (after + removes).saturating_sub(before));
                }
                _ => {}
            }
        }
        start = end;
    }
    if seeded_checks > 0 || !enrolled.is_empty() {
        tracing::info!(
            checks = seeded_checks,
            forces = enrolled.len(),
            "check and enrolment quotas restored from the log"
        );
    }
}

/// What every service holds: the core, and what the RPC layer needs to
/// check and convert requests.
pub struct Rpc {
    core: Arc<Core>,
    pepper: Pepper,
    limits: Limits,
    trust_domain: String,
    checks: CheckQuotas,
    additions: AdditionQuotas,
    subscriptions: Arc<crate::delivery::Subscriptions>,
    witnessing: std::sync::Mutex<Witnessing>,
    turns: crate::turns::Turns,
}

impl Rpc {
    /// The RPC layer over `core`.
    pub fn new(
        core: Arc<Core>,
        pepper: Pepper,
        limits: Limits,
        trust_domain: String,
        witnessing: Witnessing,
    ) -> Arc<Rpc> {
        let checks = CheckQuotas::new(limits.checks_per_minute, limits.applicants_per_day);
        let additions = AdditionQuotas::new(limits.additions_per_day);
        seed_quotas(&core, &checks, &additions);
        Arc::new(Rpc {
            core,
            pepper,
            limits,
            trust_domain,
            checks,
            additions,
            subscriptions: Default::default(),
            witnessing: std::sync::Mutex::new(witnessing),
            turns: crate::turns::Turns::default(),
        })
    }

    /// Restores the check and enrolment quotas from the log afresh (a
    /// standby that took over: the log grew under another coordinator).
    pub fn restore_quotas(&self) {
        self.checks.clear();
        self.additions.clear();
        seed_quotas(&self.core, &self.checks, &self.additions);
    }

    fn witnessing(&self) -> Result<std::sync::MutexGuard<'_, Witnessing>, Status> {
        self.witnessing.lock().map_err(|_| Status::internal("internal lock poisoned"))
    }

    /// The caller's identity, if its certificate names one of `roles`.
    /// A refusal is logged with the peer's address, role and reason (never
    /// identity data) and counted, so operators can see probing.
    fn auth<T>(&self, req: &Request<T>, roles: &[Role], what: &str) -> Result<SpiffeId, Status> {
        self.core.usable()?;
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

    fn pepper_set(&self, set: Option<&TokenSet>, epoch: u32, what: &str) -> Result<Vec<StoredToken>, Status> {
        let set = set.ok_or_else(|| Status::invalid_argument(format!("{what}: no tokens")))?;
        let toks = tokens::unpack(set, self.limits.max_tokens_per_item)
            .map_err(|e| Status::invalid_argument(format!("{what}: {e}")))?;
        Ok(toks.iter().map(|(k, t)| (*k, self.pepper.rekey(t, epoch))).collect())
    }

    /// Checks what every batch and check names: `what` is how errors name
    /// it (`batch 7`, `check c-…`).
    fn check_header(&self, what: &str, epoch: u32, scheme: u32, items: usize) -> Result<(), Status> {
        let accepted = self.core.settings().scheme;
        if scheme != accepted {
            return Err(Status::failed_precondition(format!(
                "{what} carries tokens of scheme {scheme} ({}); the coordinator accepts scheme {accepted} ({})",
                scheme_name(scheme),
                scheme_name(accepted)
            )));
        }
        let (accepted, previous) = (self.core.settings().epoch, self.core.settings().previous_epoch);
        if epoch != accepted && Some(epoch) != previous {
            let also = previous.map(|p| format!(" (and {p}, while parties move)")).unwrap_or_default();
            return Err(Status::failed_precondition(format!(
                "{what} is for epoch {epoch}; the coordinator accepts epoch {accepted}{also}"
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

    /// A scheme-3 record's sealed details carry well-formed wraps; a
    /// scheme-2 record's carry none.
    fn check_wraps(&self, what: &str, sealed: &SealedDetails) -> Result<(), Status> {
        use vigil_proto::tokens::{MAX_WRAPS, WRAP_LEN};
        let n = sealed.wrap_kinds.len();
        if self.core.settings().scheme == vigil_proto::kinds::TOKENS_KEY_SERVICE {
            if n == 0 || n > MAX_WRAPS || sealed.wraps.len() != n * WRAP_LEN {
                return Err(Status::invalid_argument(format!(
                    "{what}: sealed details must carry 1 to {MAX_WRAPS} record-key wraps of {WRAP_LEN} bytes each \
                     (scheme 3); this one has {n} kinds and {} bytes",
                    sealed.wraps.len()
                )));
            }
            if let Some(k) = sealed.wrap_kinds.iter().find(|k| vigil_proto::KeyKind::try_from(**k).is_err()) {
                return Err(Status::invalid_argument(format!("{what}: sealed details name unknown key kind {k}")));
            }
        } else if n != 0 || !sealed.wraps.is_empty() {
            return Err(Status::invalid_argument(format!(
                "{what}: sealed details carry record-key wraps, which only scheme 3 uses"
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

    fn removes(name: &str, removes: &[prost::bytes::Bytes]) -> Result<Vec<Ref>, Status> {
        removes.iter().enumerate().map(|(i, r)| to_ref(r, &format!("{name} remove {i}"))).collect()
    }

    /// A caller's status, read off the async executor.
    async fn status(
        self: &Arc<Self>,
        caller: String,
        total: impl FnOnce(&crate::engine::Engine) -> u64 + Send + 'static,
    ) -> Result<Response<StatusResponse>, Status> {
        let rpc = self.clone();
        let max_total = caller.strip_prefix("force/").map_or(0, |f| self.core.settings().roster_cap(f));
        blocking(move || {
            let (total, last_sequence) = rpc.core.status(&caller, total)?;
            let settings = rpc.core.settings();
            Ok(Response::new(StatusResponse {
                total,
                epoch: settings.epoch,
                scheme: settings.scheme,
                policy_version: settings.policy.version.clone(),
                last_sequence,
                max_total,
            }))
        })
        .await
    }
}

/// The SPIFFE id in a certificate's URI SAN (exactly one is required).
pub fn identity_of(der: &[u8]) -> Result<SpiffeId, String> {
    vigil_common::certs::spiffe_id_of(der).map_err(|e| format!("client {e}"))
}

fn to_ref(b: &[u8], what: &str) -> Result<Ref, Status> {
    b.try_into().map_err(|_| Status::invalid_argument(format!("{what}: a reference must be 16 bytes")))
}

/// How long a batch waits for a predecessor that has not arrived (a retry
/// on its way) before it goes to the engine, which refuses it as out of
/// order if the predecessor is still missing.
const TURN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Status> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f).await.map_err(|_| Status::internal("worker failed"))?
}

/// `vigil.v1.RosterService`.
pub struct RosterService(pub Arc<Rpc>);
/// `vigil.v1.FeedService`.
pub struct FeedService(pub Arc<Rpc>);
/// `vigil.v1.DisclosureService`.
pub struct DisclosureService(pub Arc<Rpc>);
/// `vigil.v1.CheckService`.
pub struct CheckService(pub Arc<Rpc>);
/// `vigil.v1.AuditService`.
pub struct AuditService(pub Arc<Rpc>);

#[tonic::async_trait]
impl roster_service_server::RosterService for RosterService {
    async fn sync(&self, req: Request<RosterBatch>) -> Result<Response<BatchReceipt>, Status> {
        let rpc = self.0.clone();
        let id = rpc.auth(&req, &[Role::Force], "sync a roster")?;
        let started = Instant::now();
        let batch = req.into_inner();
        let name = Rpc::batch_name(batch.sequence)?;
        rpc.check_header(&name, batch.epoch, batch.scheme, batch.upserts.len() + batch.removes.len())?;
        let force = id.code.clone();
        let (receipt, added) = blocking(move || {
            let commitment = audit::roster_commitment(&batch);
            let mut upserts = Vec::with_capacity(batch.upserts.len());
            for (i, u) in batch.upserts.iter().enumerate() {
                let what = format!("{name} upsert {i}");
                upserts.push(SubjectIn {
                    pseudonym: to_ref(&u.subject, &what)?,
                    tokens: rpc.pepper_set(u.tokens.as_ref(), batch.epoch, &what)?,
                });
            }
            let removes = Rpc::removes(&name, &batch.removes)?;
            let input = BatchIn { sequence: batch.sequence, epoch: batch.epoch, upserts, removes, commitment };
            let share = rpc.limits.max_removal_share;
            let now = now_ms();
            let mut added = 0;
            let mut nearing = false;
            let receipt = rpc.core.apply(|e, s| {
                // The node refuses a sync that removes a large share (a
                // truncated file); the coordinator does too, batch by batch,
                // unless the sender says the removals are intended.
                let (removing, enrolled) = e.removals(&force, &input.removes);
                if !batch.allow_removals && enrolled > 0 && removing as f64 > share * enrolled as f64 {
                    return Err(EngineError::Limit(format!(
                        "{name} would remove {removing} of the {enrolled} subjects enrolled ({:.1}%, more than {:.0}%): \
                         nothing was applied. If the numbers really fell, send with allow_removals \
                         (vigil-node sync --allow-removals)",
                        removing as f64 * 100.0 / enrolled as f64,
                        share * 100.0
                    )));
                }
                // New subjects in any 24 hours are bounded after the first
                // day (enrolling and removing people, day after day, would
                // let a force look anyone up).
                added = e.additions(&force, &input.upserts);
                nearing = rpc
                    .additions
                    .admit(&force, added, now)
                    .map_err(|why| EngineError::Limit(format!("{name}: {why}")))?;
                e.apply_roster(s, &force, input, now)
            })?;
            if !receipt.replayed {
                rpc.additions.record(&force, now, added);
                if nearing {
                    metrics::additions_quota_nearing(&force);
                    tracing::warn!(force = %force, added, per_day = rpc.limits.additions_per_day,
                        "a force is past 80% of its daily quota of new subjects");
                }
            }
            Ok((receipt, added))
        })
        .await?;
        metrics::ingest("roster", started.elapsed());
        // Warn once, when a batch takes the force across 90% of its cap.
        let cap = self.0.core.settings().roster_cap(&id.code);
        let near = |n: u64| n as f64 >= 0.9 * cap as f64;
        let before = (receipt.total + receipt.removes).saturating_sub(added);
        if !receipt.replayed && near(receipt.total) && !near(before) {
            metrics::roster_near_cap(&id.code);
            tracing::warn!(force = %id.code, enrolled = receipt.total, cap, "a force has enrolled 90% or more of its cap");
        }
        tracing::info!(force = %id.code, sequence = receipt.sequence, upserts = receipt.upserts,
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
        let rpc = self.0.clone();
        let id = rpc.auth(&req, &[Role::Source], "feed national records")?;
        let started = Instant::now();
        let batch = req.into_inner();
        let source = id.code.clone();
        let receipt = blocking(move || {
            // Taken before any check, so that a successor in flight waits
            // for this batch's outcome, whatever it is (`turns`).
            let caller = format!("source/{source}");
            let store = rpc.core.store().clone();
            let mut turn = rpc.turns.enter(&caller, batch.sequence, || {
                crate::engine::Engine::last_sequence(&*store, &caller).map_err(Status::from)
            })?;
            let sequence = batch.sequence;
            let mut outcome = national(&rpc, &mut turn, &source, batch);
            if let Err(s) = &outcome {
                let stored = || crate::engine::Engine::last_sequence(&*store, &caller).ok();
                // Applied in memory but not written: the store decides
                // where its successors stand.
                turn.not_written(stored);
                if s.code() == Code::Aborted && turn.predecessor_lost(stored) {
                    outcome = Err(Status::unavailable(format!(
                        "batch {sequence}: a batch before it was applied but not written (a store failure); \
                         both are to be sent again"
                    )));
                } else if !retried_by_nodes(s) {
                    turn.refused();
                }
            }
            outcome
        })
        .await?;
        let (receipt, waited) = receipt;
        // The batch's own time: not the wait for the batch before it.
        metrics::ingest("national", started.elapsed().saturating_sub(waited));
        tracing::info!(source = %id.code, sequence = receipt.sequence, upserts = receipt.upserts, removes = receipt.removes,
            records = receipt.total, replayed = receipt.replayed, "national batch");
        Ok(Response::new(receipt))
    }

    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let id = self.0.auth(&req, &[Role::Source], "read feed status")?;
        self.0.status(format!("source/{}", id.code), move |e| e.held(&id.code)).await
    }
}

/// Whether nodes send a call again after this answer (`vigil_node::client::transient`):
/// the coordinator unreachable, restarting or cut off. Any other refusal
/// ends the node's run.
fn retried_by_nodes(s: &Status) -> bool {
    matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled)
}

/// Checks, peppers and applies one national batch in its turn; returns
/// the receipt and how long the turn waited.
fn national(
    rpc: &Rpc,
    turn: &mut crate::turns::Turn<'_>,
    source: &str,
    batch: NationalBatch,
) -> Result<(BatchReceipt, std::time::Duration), Status> {
    let name = Rpc::batch_name(batch.sequence)?;
    rpc.check_header(&name, batch.epoch, batch.scheme, batch.upserts.len() + batch.removes.len())?;
    let t = Instant::now();
    let epoch = batch.epoch;
    let commitment = audit::national_commitment(&batch);
    let mut upserts = Vec::with_capacity(batch.upserts.len());
    for (i, u) in batch.upserts.iter().enumerate() {
        let what = format!("{name} upsert {i}");
        let sealed = u.sealed.as_ref().ok_or_else(|| Status::invalid_argument(format!("{what}: no sealed details")))?;
        if sealed.epoch != epoch || sealed.nonce.len() != 12 || sealed.ciphertext.len() > 4096 {
            return Err(Status::invalid_argument(format!(
                "{what}: sealed details must be for epoch {epoch}, with a 12-byte nonce and at most 4096 bytes"
            )));
        }
        rpc.check_wraps(&what, sealed)?;
        upserts.push(RecordIn {
            record_ref: to_ref(&u.record_ref, &what)?,
            tokens: rpc.pepper_set(u.tokens.as_ref(), batch.epoch, &what)?,
            sealed: sealed.encode_to_vec(),
        });
    }
    let removes = Rpc::removes(&name, &batch.removes)?;
    let input = BatchIn { sequence: batch.sequence, epoch: batch.epoch, upserts, removes, commitment };
    tracing::debug!(prepare_ms = t.elapsed().as_secs_f64() * 1e3, "national batch checked and peppered");
    let waiting = Instant::now();
    turn.wait(TURN_GRACE);
    let waited = waiting.elapsed();
    // The next batch may apply once this one has, while its commit is
    // written; the receipt waits for the commit.
    let receipt = rpc.core.apply_then(|e, s| e.apply_national(s, source, input, now_ms()), || turn.applied())?;
    Ok((receipt, waited))
}

#[tonic::async_trait]
impl disclosure_service_server::DisclosureService for DisclosureService {
    type SubscribeStream = Pin<Box<dyn Stream<Item = Result<Disclosure, Status>> + Send>>;

    async fn subscribe(&self, req: Request<SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let id = self.0.auth(&req, &[Role::Force], "receive disclosures")?;
        let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(force = %id.code, peer = %peer, "subscriber connected");
        let stream = crate::delivery::subscribe(self.0.core.clone(), self.0.subscriptions.clone(), id.code)
            .map(|d| d.map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
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
        let store = self.0.core.store().clone();
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
        let rpc = self.0.clone();
        let id = rpc.auth(&req, &[Role::Force], "run pre-employment checks")?;
        let r = req.into_inner();
        // The id lands in the permanent log: only a random or digest value
        // in hex, never free text a caller chose.
        if !(16..=64).contains(&r.request_id.len())
            || !r.request_id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Status::invalid_argument("request_id must be 16 to 64 lowercase hex digits"));
        }
        // The purpose is written into the log: a case reference, never a name.
        if !audit::is_reference(&r.purpose) {
            return Err(Status::invalid_argument(format!(
                "check {}: purpose must be {} (a case reference, never a name)",
                r.request_id,
                audit::REFERENCE_RULE
            )));
        }
        rpc.check_header(&format!("check {}", r.request_id), r.epoch, r.scheme, 0)?;
        if r.applicants.is_empty() || r.applicants.len() > rpc.limits.max_applicants {
            return Err(Status::invalid_argument(format!(
                "check {}: 1 to {} applicants per check",
                r.request_id, rpc.limits.max_applicants
            )));
        }
        let admitted = rpc
            .checks
            .admit(&id.code, r.applicants.len() as u64, now_ms())
            .map_err(|why| Status::resource_exhausted(format!("pre-employment checks for one force: {why}")))?;
        if admitted.nearing {
            metrics::check_quota_nearing(&id.code);
            tracing::warn!(
                force = %id.code,
                applicants_today = admitted.applicants_today,
                per_day = rpc.limits.applicants_per_day,
                "a force is past 80% of its daily quota of applicants checked"
            );
        }
        let applicants_n = r.applicants.len() as u64;
        let resp = blocking(move || {
            let meta = CheckMeta {
                request_id: r.request_id.clone(),
                purpose: r.purpose.clone(),
                commitment: audit::check_commitment(&r),
            };
            let mut applicants = Vec::with_capacity(r.applicants.len());
            for (i, a) in r.applicants.iter().enumerate() {
                let what = format!("check {} applicant {i}", r.request_id);
                if a.applicant.is_empty() || a.applicant.len() > 64 {
                    return Err(Status::invalid_argument(format!("{what}: applicant reference must be 1 to 64 bytes")));
                }
                applicants.push(ApplicantIn {
                    applicant: a.applicant.to_vec(),
                    tokens: rpc.pepper_set(a.tokens.as_ref(), r.epoch, &what)?,
                });
            }
            Ok(rpc.core.check(&id.code, meta, applicants)?)
        })
        .await?;
        // Answered once its log entry is published, with its proof.
        let mut checked = resp;
        self.0.core.check_proof(&mut checked).await?;
        Ok(Response::new(CheckResponse {
            matches: checked.matches,
            applicants: applicants_n,
            policy_version: self.0.core.settings().policy.version.clone(),
            log_index: checked.log_index,
            audit: checked.audit,
        }))
    }
}

/// Who may read checkpoints and proofs: forces (to verify their
/// disclosures) and auditors. Not sources: how far the log grew after a
/// batch is how many disclosures it caused, which would tell a source
/// whether a person it fed is on some roster.
const READERS: &[Role] = &[Role::Force, Role::Auditor];
/// Checkpoints and consistency proofs: readers and witnesses.
const CHECKERS: &[Role] = &[Role::Force, Role::Auditor, Role::Witness];

#[tonic::async_trait]
impl audit_service_server::AuditService for AuditService {
    async fn checkpoint(&self, req: Request<CheckpointRequest>) -> Result<Response<CheckpointResponse>, Status> {
        let id = self.0.auth(&req, CHECKERS, "read checkpoints")?;
        let latest = self.0.core.view(|v| v.checkpoint.clone())?;
        let k = req.get_ref().min_cosignatures as usize;
        let checkpoint = if id.role == Role::Witness {
            self.0.witnessing()?.candidate(&latest, now_ms())
        } else if k == 0 {
            latest
        } else {
            let w = self.0.witnessing()?;
            if k > w.configured() {
                return Err(Status::invalid_argument(format!(
                    "{k} cosignatures asked for; this coordinator has {} witnesses configured",
                    w.configured()
                )));
            }
            w.witnessed(k).ok_or_else(|| {
                Status::not_found(format!(
                    "no checkpoint is cosigned by {k} witnesses yet (witnessing rounds run as witnesses poll)"
                ))
            })?
        };
        Ok(Response::new(CheckpointResponse { checkpoint }))
    }

    async fn cosign(&self, req: Request<CosignRequest>) -> Result<Response<CosignResponse>, Status> {
        let id = self.0.auth(&req, &[Role::Witness], "cosign checkpoints")?;
        let r = req.into_inner();
        let n = self.0.witnessing()?.cosign(&id.code, &r.checkpoint, &r.cosignature, now_ms()).map_err(|e| {
            tracing::warn!(witness = %id.code, error = %e, "cosignature refused");
            match e {
                CosignError::Unknown(_) => Status::permission_denied(e.to_string()),
                CosignError::NotInRound => Status::failed_precondition(e.to_string()),
                _ => Status::invalid_argument(e.to_string()),
            }
        })?;
        tracing::info!(witness = %id.code, cosignatures = n, "checkpoint cosigned");
        Ok(Response::new(CosignResponse { cosignatures: n as u32 }))
    }

    async fn entries(&self, req: Request<EntriesRequest>) -> Result<Response<EntriesResponse>, Status> {
        self.0.auth(&req, &[Role::Auditor], "read log entries")?;
        let r = req.into_inner();
        let size = self.0.core.view(|v| v.tree.size())?;
        if r.start >= r.end || r.start >= size {
            return Err(Status::out_of_range(format!(
                "entries {}..{} are not in the log of {size} entries",
                r.start, r.end
            )));
        }
        let end = r.end.min(r.start + 1000).min(size);
        let store = self.0.core.store().clone();
        let entries = blocking(move || store.log_entries(r.start, end).map_err(Status::from)).await?;
        Ok(Response::new(EntriesResponse { start: r.start, entries: entries.into_iter().map(Into::into).collect() }))
    }

    async fn inclusion_proof(
        &self,
        req: Request<InclusionProofRequest>,
    ) -> Result<Response<InclusionProofResponse>, Status> {
        self.0.auth(&req, READERS, "read proofs")?;
        let r = req.into_inner();
        let proof = self.0.core.view(|v| v.tree.inclusion_proof(r.leaf_index, r.tree_size))?.ok_or_else(|| {
            Status::out_of_range(format!("no leaf {} in a published tree of size {}", r.leaf_index, r.tree_size))
        })?;
        Ok(Response::new(InclusionProofResponse { proof: proof.into_iter().map(|h| h.to_vec().into()).collect() }))
    }

    async fn consistency_proof(
        &self,
        req: Request<ConsistencyProofRequest>,
    ) -> Result<Response<ConsistencyProofResponse>, Status> {
        self.0.auth(&req, CHECKERS, "read proofs")?;
        let r = req.into_inner();
        let (proof, size) = self.0.core.view(|v| (v.tree.consistency_proof(r.size1, r.size2), v.tree.size()))?;
        let proof = proof.ok_or_else(|| {
            Status::out_of_range(format!(
                "no consistency proof from {} to {} (published size {size})",
                r.size1, r.size2
            ))
        })?;
        Ok(Response::new(ConsistencyProofResponse { proof: proof.into_iter().map(|h| h.to_vec().into()).collect() }))
    }
}

/// How errors name a token scheme.
fn scheme_name(scheme: u32) -> &'static str {
    match scheme {
        vigil_proto::kinds::TOKENS_LINKAGE_KEY => "linkage key",
        vigil_proto::kinds::TOKENS_KEY_SERVICE => "key service",
        _ => "unknown",
    }
}
