//! `vigil.v1.KeyService`: thin RPC layer. The caller's identity comes from
//! its client certificate (force or source role); requests are checked and
//! refused with a reason that names the field; the allowance is spent and
//! committed before the evaluation is answered.

use std::sync::Arc;
use tonic::{Request, Response, Status};
use vigil_oprf::ServerKey;
use vigil_proto::spiffe::{Role, SpiffeId};
use vigil_proto::v1::key_service_server::KeyService;
use vigil_proto::v1::{EvaluateRequest, EvaluateResponse, PublicKeyRequest, PublicKeyResponse};

use crate::config::Config;
use crate::quota::QuotaStore;

/// Most blinded elements in one request.
pub const MAX_BATCH: usize = 4096;

/// The service.
pub struct Keys {
    key: ServerKey,
    config: Arc<Config>,
    store: Arc<QuotaStore>,
}

impl Keys {
    /// The service for the configured epoch, from the seed.
    pub fn new(seed: &[u8; 32], config: Arc<Config>, store: Arc<QuotaStore>) -> Result<Keys, String> {
        let key = ServerKey::derive(seed, config.key.epoch).map_err(|e| e.to_string())?;
        Ok(Keys { key, config, store })
    }

    fn auth<T>(&self, req: &Request<T>, what: &str) -> Result<SpiffeId, Status> {
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
        if !matches!(id.role, Role::Force | Role::Source) {
            return Err(refuse(
                "role",
                Status::permission_denied(format!("a {} may not {what}: forces and sources only", id.role.as_str())),
            ));
        }
        Ok(id)
    }

    fn epoch(&self, epoch: u32) -> Result<(), Status> {
        if epoch != self.config.key.epoch {
            return Err(Status::failed_precondition(format!(
                "epoch {epoch} is not served: this key service serves epoch {}",
                self.config.key.epoch
            )));
        }
        Ok(())
    }
}

fn today() -> i64 {
    vigil_common::clock::now_ms().div_euclid(86_400_000)
}

#[tonic::async_trait]
impl KeyService for Keys {
    async fn public_key(&self, req: Request<PublicKeyRequest>) -> Result<Response<PublicKeyResponse>, Status> {
        self.auth(&req, "read the public key")?;
        let epoch = req.into_inner().epoch;
        self.epoch(epoch)?;
        Ok(Response::new(PublicKeyResponse { epoch, public_key: self.key.public_key().to_vec().into() }))
    }

    async fn evaluate(&self, req: Request<EvaluateRequest>) -> Result<Response<EvaluateResponse>, Status> {
        let id = self.auth(&req, "evaluate")?;
        let r = req.into_inner();
        self.epoch(r.epoch)?;
        let kind = i32::try_from(r.kind)
            .ok()
            .and_then(vigil_proto::KeyKind::from_wire)
            .ok_or_else(|| Status::invalid_argument(format!("kind {} is not a match-key kind", r.kind)))?;
        if r.purpose.is_empty()
            || r.purpose.len() > 64
            || !r.purpose.bytes().all(|b| b.is_ascii_alphanumeric() || b" -_/.:#".contains(&b))
        {
            return Err(Status::invalid_argument(
                "purpose must be 1 to 64 letters, digits, spaces and - _ / . : # (a batch or case reference, never a name)",
            ));
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
        let (store, epoch, n) = (self.store.clone(), r.epoch, blinded.len() as u64);
        let spent = {
            let caller = caller.clone();
            tokio::task::spawn_blocking(move || store.spend(&caller, allowance, epoch, today(), n))
                .await
                .map_err(|_| Status::internal("worker failed"))?
                .map_err(|e| {
                    tracing::error!(error = %e, "quota store failed");
                    Status::unavailable("the quota store failed; nothing was evaluated")
                })?
        };
        let usage = spent.map_err(|x| {
            tracing::warn!(caller = %caller, asked = n, "evaluation refused: allowance spent");
            Status::resource_exhausted(format!("{caller}: {x}"))
        })?;
        let info = vigil_oprf::info(r.kind, epoch);
        let (evaluated, proof) =
            self.key.evaluate(&blinded, &info).map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::info!(caller = %caller, kind = kind.short_name(), evaluations = n, used = usage.in_epoch, "batch evaluated");
        Ok(Response::new(EvaluateResponse {
            evaluated: evaluated.into_iter().map(|e| e.to_vec().into()).collect(),
            proof: proof.to_vec().into(),
            used: usage.in_epoch,
            allowance: allowance.per_epoch,
        }))
    }
}
