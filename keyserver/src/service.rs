//! `vigil.v1.KeyService` and the key service's `vigil.v1.AuditService`:
//! thin RPC layer. The caller's identity comes from its client certificate
//! (force or source role to evaluate, auditor to read the log); requests
//! are checked and refused with a reason that names the field; the
//! allowance is spent, and the batch logged, in one commit before the
//! evaluation is answered.

use std::sync::{Arc, Mutex, MutexGuard};
use tonic::{Request, Response, Status};
use vigil_oprf::ServerKey;
use vigil_proto::audit::Entry;
use vigil_proto::spiffe::{Role, SpiffeId};
use vigil_proto::v1::audit_service_server::AuditService;
use vigil_proto::v1::key_service_server::KeyService;
use vigil_proto::v1::{
    CheckpointRequest, CheckpointResponse, ConsistencyProofRequest, ConsistencyProofResponse, CosignRequest,
    CosignResponse, EntriesRequest, EntriesResponse, InclusionProofRequest, InclusionProofResponse,
};
use vigil_proto::v1::{EvaluateRequest, EvaluateResponse, PublicKeyRequest, PublicKeyResponse};

use crate::config::Config;
use crate::log::EvalLog;
use crate::quota::QuotaStore;

/// Most blinded elements in one request.
pub const MAX_BATCH: usize = 4096;

/// The service.
pub struct Keys {
    key: ServerKey,
    /// The previous epoch's key, while parties move.
    previous: Option<(u32, ServerKey)>,
    config: Arc<Config>,
    store: Arc<QuotaStore>,
    log: Mutex<EvalLog>,
    /// The log signing key's text, to rebuild the log after a failed commit.
    signer_key: zeroize::Zeroizing<String>,
}

impl Keys {
    /// The service for the configured epoch, from the seed and the log's
    /// signing key.
    pub fn new(
        seed: &[u8; 32],
        signer_key: String,
        config: Arc<Config>,
        store: Arc<QuotaStore>,
    ) -> Result<Keys, String> {
        let key = ServerKey::derive(seed, config.key.epoch).map_err(|e| e.to_string())?;
        let previous = match config.key.previous_epoch {
            Some(p) => Some((p, ServerKey::derive(seed, p).map_err(|e| e.to_string())?)),
            None => None,
        };
        let signer = vigil_proto::tlog::Signer::from_skey(&signer_key).map_err(|e| format!("log signing key: {e}"))?;
        let log = EvalLog::load(&store, signer, &config.audit.origin, vigil_common::clock::now_ms())?;
        Ok(Keys { key, previous, config, store, log: Mutex::new(log), signer_key: zeroize::Zeroizing::new(signer_key) })
    }

    fn log(&self) -> Result<MutexGuard<'_, EvalLog>, Status> {
        self.log.lock().map_err(|_| Status::internal("internal lock poisoned"))
    }

    /// Signs a fresh checkpoint (called periodically so that a quiet log's
    /// checkpoint stays recent).
    pub fn refresh(&self) -> Result<(), String> {
        let mut log = self.log.lock().map_err(|_| "lock poisoned".to_string())?;
        log.refresh(&self.store, vigil_common::clock::now_ms())
    }

    fn reload(&self, log: &mut EvalLog) {
        let rebuilt = vigil_proto::tlog::Signer::from_skey(&self.signer_key)
            .map_err(|e| e.to_string())
            .and_then(|s| EvalLog::load(&self.store, s, &self.config.audit.origin, vigil_common::clock::now_ms()));
        match rebuilt {
            Ok(l) => *log = l,
            Err(e) => tracing::error!(error = %e, "cannot rebuild the log from the store"),
        }
    }

    /// The caller's identity, if its certificate names one of `roles`
    /// (`who` says which, for the refusal). A refusal is logged with the
    /// peer's address and reason.
    fn auth<T>(&self, req: &Request<T>, roles: &[Role], who: &str, what: &str) -> Result<SpiffeId, Status> {
        let refuse = |reason: &str, status: Status| {
            let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
            tracing::warn!(peer = %peer, reason, call = what, "call refused");
            status
        };
        let Some(leaf) = req.peer_certs().and_then(|c| c.first().cloned()) else {
            return Err(refuse("no_certificate", Status::unauthenticated("no client certificate")));
        };
        let id = vigil_common::certs::spiffe_id_of(leaf.as_ref())
            .map_err(|e| refuse("no_identity", Status::unauthenticated(format!("client {e}"))))?;
        if id.trust_domain != self.config.trust_domain {
            return Err(refuse("trust_domain", Status::permission_denied("certificate is for another trust domain")));
        }
        if !roles.contains(&id.role) {
            return Err(refuse(
                "role",
                Status::permission_denied(format!("a {} may not {what}: {who} only", id.role.as_str())),
            ));
        }
        Ok(id)
    }

    fn caller<T>(&self, req: &Request<T>, what: &str) -> Result<SpiffeId, Status> {
        self.auth(req, &[Role::Force, Role::Source], "forces and sources", what)
    }

    fn auditor<T>(&self, req: &Request<T>, what: &str) -> Result<(), Status> {
        self.auth(req, &[Role::Auditor], "auditors", what).map(|_| ())
    }

    /// The key of a served epoch.
    fn epoch(&self, epoch: u32) -> Result<&ServerKey, Status> {
        if epoch == self.config.key.epoch {
            return Ok(&self.key);
        }
        match &self.previous {
            Some((p, k)) if *p == epoch => Ok(k),
            _ => Err(Status::failed_precondition(format!(
                "epoch {epoch} is not served: this key service serves epoch {}{}",
                self.config.key.epoch,
                self.previous.as_ref().map(|(p, _)| format!(" (and {p}, while parties move)")).unwrap_or_default()
            ))),
        }
    }
}

#[tonic::async_trait]
impl KeyService for Keys {
    async fn public_key(&self, req: Request<PublicKeyRequest>) -> Result<Response<PublicKeyResponse>, Status> {
        self.caller(&req, "read the public key")?;
        let epoch = req.into_inner().epoch;
        let key = self.epoch(epoch)?;
        Ok(Response::new(PublicKeyResponse { epoch, public_key: key.public_key().to_vec().into() }))
    }

    async fn evaluate(&self, req: Request<EvaluateRequest>) -> Result<Response<EvaluateResponse>, Status> {
        let id = self.caller(&req, "evaluate")?;
        let r = req.into_inner();
        let key = self.epoch(r.epoch)?;
        let kind = i32::try_from(r.kind)
            .ok()
            .and_then(vigil_proto::KeyKind::from_wire)
            .ok_or_else(|| Status::invalid_argument(format!("kind {} is not a match-key kind", r.kind)))?;
        if !vigil_proto::audit::is_reference(&r.purpose) {
            return Err(Status::invalid_argument(format!(
                "purpose must be {} (a batch or case reference, never a name)",
                vigil_proto::audit::REFERENCE_RULE
            )));
        }
        if r.blinded.is_empty() || r.blinded.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!("1 to {MAX_BATCH} blinded elements a request")));
        }
        let mut blinded = Vec::with_capacity(r.blinded.len());
        for (i, b) in r.blinded.iter().enumerate() {
            let e: [u8; vigil_oprf::ELEMENT] = b
                .as_ref()
                .try_into()
                .map_err(|_| Status::invalid_argument(format!("blinded element {i} is not 32 bytes")))?;
            blinded.push(e);
        }
        let (role, code) = (id.role.as_str(), id.code.clone());
        let allowance = self.config.allowance(role, &code).ok_or_else(|| {
            Status::permission_denied(format!(
                "{role} {code} has no allowance at this key service ([headcount] or [sources])"
            ))
        })?;
        let caller = format!("{role}/{code}");
        let (epoch, n) = (r.epoch, blinded.len() as u64);
        // The usage and the log entry are committed together, under the
        // log's lock, so that entries and checkpoints follow commit order;
        // the commit blocks, so off the executor's cooperative path.
        let spent = tokio::task::block_in_place(|| {
            let mut log = self.log()?;
            let now = vigil_common::clock::now_ms();
            let mut signed: Result<(), String> = Ok(());
            let day = now.div_euclid(86_400_000);
            let result = self.store.spend_logged(&caller, allowance, (epoch, day), (n, r.check), |u, _| {
                let entry = Entry::Evaluation {
                    time: vigil_proto::time::rfc3339(now),
                    caller: caller.clone(),
                    epoch,
                    kind: kind.short_name().to_string(),
                    count: n,
                    purpose: r.purpose.clone(),
                    used: u.in_epoch,
                    check: r.check,
                }
                .to_bytes();
                let cp = log.append(&entry, now).unwrap_or_else(|e| {
                    signed = Err(e);
                    String::new()
                });
                (entry, cp)
            });
            if result.is_err() || signed.is_err() {
                self.reload(&mut log);
            }
            signed.map_err(|e| {
                tracing::error!(error = %e, "cannot sign the log's checkpoint");
                Status::internal("the key service could not sign its log")
            })?;
            result.map_err(|e| {
                tracing::error!(error = %e, "quota store failed");
                Status::unavailable("the quota store failed; nothing was evaluated")
            })
        })?;
        let usage = spent.map_err(|x| {
            tracing::warn!(caller = %caller, asked = n, "evaluation refused: allowance spent");
            Status::resource_exhausted(format!("{caller}: {x}"))
        })?;
        let info = vigil_oprf::info(r.kind, epoch);
        // A batch of 4,096 is about 0.2 s of CPU: off the cooperative path too.
        let (evaluated, proof) = tokio::task::block_in_place(|| key.evaluate(&blinded, &info))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::info!(caller = %caller, kind = kind.short_name(), evaluations = n, used = usage.in_epoch, "batch evaluated");
        Ok(Response::new(EvaluateResponse {
            evaluated: evaluated.into_iter().map(|e| e.to_vec().into()).collect(),
            proof: proof.to_vec().into(),
            used: usage.in_epoch,
            allowance: allowance.per_epoch,
        }))
    }
}

/// The key service's log, read by auditors with the coordinator's audit API
/// (`vigil-node audit verify` with `server_role = "keyserver"`).
pub struct KeyAudit(pub Arc<Keys>);

#[tonic::async_trait]
impl AuditService for KeyAudit {
    async fn checkpoint(&self, req: Request<CheckpointRequest>) -> Result<Response<CheckpointResponse>, Status> {
        self.0.auditor(&req, "read checkpoints")?;
        if req.get_ref().min_cosignatures > 0 {
            return Err(Status::not_found("the key service's log has no witnesses"));
        }
        Ok(Response::new(CheckpointResponse { checkpoint: self.0.log()?.checkpoint().to_string() }))
    }

    async fn entries(&self, req: Request<EntriesRequest>) -> Result<Response<EntriesResponse>, Status> {
        self.0.auditor(&req, "read log entries")?;
        let r = req.into_inner();
        let size = self.0.log()?.tree().size();
        if r.start >= r.end || r.start >= size {
            return Err(Status::out_of_range(format!("entries {}..{} are not in the log of {size}", r.start, r.end)));
        }
        let end = r.end.min(r.start + 1000).min(size);
        let entries = self.0.store.entries(r.start, end).map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(EntriesResponse { start: r.start, entries: entries.into_iter().map(Into::into).collect() }))
    }

    async fn inclusion_proof(
        &self,
        req: Request<InclusionProofRequest>,
    ) -> Result<Response<InclusionProofResponse>, Status> {
        self.0.auditor(&req, "read proofs")?;
        let r = req.into_inner();
        let proof = self.0.log()?.tree().inclusion_proof(r.leaf_index, r.tree_size).ok_or_else(|| {
            Status::out_of_range(format!("no leaf {} in a tree of size {}", r.leaf_index, r.tree_size))
        })?;
        Ok(Response::new(InclusionProofResponse { proof: proof.into_iter().map(|h| h.to_vec().into()).collect() }))
    }

    async fn consistency_proof(
        &self,
        req: Request<ConsistencyProofRequest>,
    ) -> Result<Response<ConsistencyProofResponse>, Status> {
        self.0.auditor(&req, "read proofs")?;
        let r = req.into_inner();
        let proof = self
            .0
            .log()?
            .tree()
            .consistency_proof(r.size1, r.size2)
            .ok_or_else(|| Status::out_of_range(format!("no consistency proof from {} to {}", r.size1, r.size2)))?;
        Ok(Response::new(ConsistencyProofResponse { proof: proof.into_iter().map(|h| h.to_vec().into()).collect() }))
    }

    async fn cosign(&self, _req: Request<CosignRequest>) -> Result<Response<CosignResponse>, Status> {
        Err(Status::unimplemented("the key service's log takes no witnesses yet"))
    }
}
