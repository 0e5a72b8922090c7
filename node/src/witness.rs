//! `vigil-node witness`: an independent party's log witness.
//!
//! A witness asks the coordinator for the checkpoint of the current
//! witnessing round, checks the log's signature, its age, and that it is
//! consistent with every checkpoint this witness has seen (an RFC 9162
//! consistency proof), and only then cosigns it (C2SP cosignature/v1) and
//! hands the cosignature in. It never cosigns a checkpoint smaller than
//! the largest it has seen, and after a split view it cosigns nothing
//! until an operator clears the alarm. Nodes that require k of n witnesses
//! (`[audit] witness_quorum`) then trust only checkpoints that k
//! independent witnesses have checked, so a coordinator can no longer show
//! different parties different histories without a witness noticing.

use std::path::Path;
use std::time::Duration;
use tonic::transport::Channel;
use vigil_proto::tlog::cosignature::WitnessSigner;
use vigil_proto::v1::audit_service_client::AuditServiceClient;
use vigil_proto::v1::{CheckpointRequest, CosignRequest};

use crate::client::{self, MAX_MESSAGE};
use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::local::LocalStore;
use crate::verify::{self, LogKey};

/// What one witnessing step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    /// Tree size of the checkpoint cosigned.
    pub size: u64,
    /// How many configured witnesses have now cosigned it.
    pub cosignatures: u32,
}

/// Writes a new witness signing key (mode 0600) named `name` and returns
/// its verifier key, for the coordinator's `[[audit.witnesses]]` and the
/// nodes' `[audit] witnesses`.
pub fn keygen(name: &str, out: &Path) -> Result<String, NodeError> {
    let seed = vigil_common::secrets::random_key().map_err(|e| NodeError::failed(e.to_string()))?;
    let (signer, skey) = WitnessSigner::from_seed(name, &seed).map_err(|_| {
        NodeError::config("a witness name is non-empty, without spaces or '+', e.g. witness.ico.example/w1")
    })?;
    let vkey = signer.verifier().vkey();
    vigil_common::secrets::write_new(
        out,
        &format!("# Vigil witness signing key (C2SP cosignature/v1). SECRET.\n# verifier key: {vkey}\n{skey}\n"),
    )
    .map_err(|e| NodeError::config(e.to_string()))?;
    Ok(vkey)
}

/// Reads the witness's signing key.
pub fn load_signer(cfg: &NodeConfig) -> Result<WitnessSigner, NodeError> {
    let w = cfg.witness.as_ref().ok_or_else(|| NodeError::config("this node has no [witness] section"))?;
    let text = std::fs::read_to_string(&w.key)
        .map_err(|e| NodeError::config(format!("cannot read {}: {e}", w.key.display())))?;
    let line = text.lines().map(str::trim).find(|l| l.starts_with("PRIVATE+KEY+")).unwrap_or("");
    WitnessSigner::from_skey(line)
        .map_err(|e| NodeError::config(format!("{}: not a witness signing key ({e})", w.key.display())))
}

/// One step: fetch the round's checkpoint, check it, cosign it, hand it in.
pub async fn step(
    store: &LocalStore,
    key: &LogKey,
    signer: &WitnessSigner,
    channel: Channel,
) -> Result<Cosigned, NodeError> {
    if let Some(a) = verify::alarm(store).map_err(NodeError::from)? {
        return Err(NodeError::audit(format!(
            "refusing to cosign: a split view was recorded earlier ({a}); see docs/operations.md"
        )));
    }
    let mut c = AuditServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
    let note = c
        .checkpoint(CheckpointRequest { min_cosignatures: 0 })
        .await
        .map_err(|s| client::status_error(&s, "checkpoint"))?
        .into_inner()
        .checkpoint;
    let cp = key.open(&note).map_err(NodeError::from)?;
    if let Some((held, _)) = verify::held_checkpoint(store, key).map_err(NodeError::from)?
        && cp.size < held.size
    {
        return Err(NodeError::audit(format!(
            "refusing to cosign a checkpoint of size {} after one of size {}: a cosignature states the largest tree seen",
            cp.size, held.size
        )));
    }
    // Signature, age, and consistency with everything seen (a split view
    // raises the alarm durably and fails here).
    let cp = verify::accept_checkpoint(store, key, &mut c, &note).await.map_err(NodeError::from)?;
    let now = u64::try_from(vigil_common::clock::now_ms() / 1000).unwrap_or(0);
    let cosignature = signer.cosign(&cp.body(), now);
    let r = c
        .cosign(CosignRequest { checkpoint: cp.body(), cosignature })
        .await
        .map_err(|s| client::status_error(&s, "cosign"))?
        .into_inner();
    Ok(Cosigned { size: cp.size, cosignatures: r.cosignatures })
}

/// `witness run`: a step every `[witness] interval_seconds` until
/// `shutdown`, or once. A failed call is logged and retried at the next
/// step; an alarm (split view) stops the witness.
pub async fn run(
    cfg: &NodeConfig,
    store: &LocalStore,
    once: bool,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Option<Cosigned>, NodeError> {
    let key = LogKey::load(cfg)?;
    let signer = load_signer(cfg)?;
    let every = Duration::from_secs(cfg.witness.as_ref().map_or(30, |w| w.interval_seconds.max(1)));
    let channel = client::connect(cfg).await?;
    if once {
        return step(store, &key, &signer, channel).await.map(Some);
    }
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(None),
            _ = tick.tick() => {}
        }
        match step(store, &key, &signer, channel.clone()).await {
            Ok(c) => tracing::info!(size = c.size, cosignatures = c.cosignatures, "checkpoint cosigned"),
            Err(e @ NodeError::Audit(_)) => return Err(e),
            Err(e) => tracing::warn!(error = %e, "witnessing step failed; retrying at the next"),
        }
    }
}
