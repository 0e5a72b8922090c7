//! Token scheme 3: the node's side of the key service (`vigil-keyserver`).
//!
//! Each distinct match key of a batch of identities is blinded
//! (`vigil_oprf::blind`), the key service evaluates the blinded elements of
//! one kind at a time in batches of at most [`CHUNK`] under the public input
//! (kind, epoch), and the node verifies the batched DLEQ proof against the
//! **pinned** public key of its configuration before unblinding. A key
//! service that used another key (to tell callers apart, or by mistake) is
//! refused: nothing is sent to the coordinator. From each output the node
//! derives the token it sends and the wrap secret of the record key
//! (`vigil_identity::tokens`); the outputs themselves are dropped.
//!
//! The connection is the node's mutual TLS, with the key service's
//! certificate checked to name `spiffe://<domain>/keyserver` and the
//! configured DNS name.

use std::collections::HashMap;
use tonic::transport::Channel;
use vigil_identity::keys::Identity;
use vigil_identity::tokens::{WrapSecret, distinct_match_keys, token_of_prf};
use vigil_proto::v1::EvaluateRequest;
use vigil_proto::v1::key_service_client::KeyServiceClient;
use vigil_proto::{KeyKind, Token};

use crate::client;
use crate::config::{NodeConfig, ServerRole};
use crate::error::NodeError;

/// Most blinded elements in one `Evaluate` call (the key service's limit).
pub const CHUNK: usize = 4096;

/// One identity's tokens and, for each token, the wrap secret of its kind.
#[derive(Debug, Default)]
pub struct Evaluated {
    /// Distinct `(kind, token)`, in key order.
    pub tokens: Vec<(KeyKind, Token)>,
    /// `(kind, wrap secret)` of each token, in the same order.
    pub wraps: Vec<(KeyKind, WrapSecret)>,
}

/// One kind's distinct match keys of a batch, and where each is listed.
type Distinct<'a> = (Vec<&'a [u8]>, HashMap<&'a [u8], usize>);

/// A connection to the key service, for one epoch and its pinned key.
pub struct KeyService {
    client: KeyServiceClient<Channel>,
    epoch: u32,
    public_key: [u8; vigil_oprf::ELEMENT],
    /// Elements this node has had evaluated this epoch, and its allowance
    /// (as the key service last reported them).
    pub usage: (u64, u64),
}

impl KeyService {
    /// Connects over mutual TLS and checks that the key service publishes
    /// the pinned key for the configured epoch.
    pub async fn connect(cfg: &NodeConfig) -> Result<KeyService, NodeError> {
        let ks = cfg.keyserver.as_ref().ok_or_else(|| NodeError::config("this node has no [keyserver] section"))?;
        let public_key = ks.public_key()?;
        let mut via = cfg.clone();
        via.coordinator = ks.address.clone();
        via.server_name = ks.server_name.clone();
        via.server_role = ServerRole::Keyserver;
        let channel = client::connect(&via).await?;
        let mut client = KeyServiceClient::new(channel);
        let published = client
            .public_key(vigil_proto::v1::PublicKeyRequest { epoch: ks.epoch })
            .await
            .map_err(|s| client::status_error(&s, "key service public key"))?
            .into_inner();
        if published.public_key.as_ref() != public_key {
            return Err(NodeError::config(format!(
                "the key service at {} publishes another public key for epoch {} than [keyserver] public_key pins: \
                 nothing was evaluated. Check the key ceremony's published key",
                ks.address, ks.epoch
            )));
        }
        Ok(KeyService { client, epoch: ks.epoch, public_key, usage: (0, 0) })
    }

    /// The epoch evaluated in.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Evaluates `inputs` (match keys of one kind), returning their outputs
    /// in order. `purpose` is logged by the key service (a reference).
    async fn evaluate_kind(
        &mut self,
        kind: KeyKind,
        inputs: &[&[u8]],
        purpose: &str,
    ) -> Result<Vec<[u8; vigil_oprf::OUTPUT]>, NodeError> {
        let info = vigil_oprf::info(kind as u32, self.epoch);
        let mut out = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(CHUNK) {
            let blinded = vigil_oprf::blind(chunk).map_err(|e| NodeError::failed(e.to_string()))?;
            let req = EvaluateRequest {
                epoch: self.epoch,
                kind: kind as u32,
                purpose: purpose.to_string(),
                blinded: blinded.elements.iter().map(|e| e.to_vec().into()).collect(),
            };
            let resp = self
                .client
                .evaluate(req)
                .await
                .map_err(|s| client::status_error(&s, "key service evaluation"))?
                .into_inner();
            self.usage = (resp.used, resp.allowance);
            let evaluated: Vec<[u8; vigil_oprf::ELEMENT]> = resp
                .evaluated
                .iter()
                .map(|e| e.as_ref().try_into())
                .collect::<Result<_, _>>()
                .map_err(|_| NodeError::failed("the key service returned a malformed element"))?;
            let proof: [u8; vigil_oprf::PROOF] = resp
                .proof
                .as_ref()
                .try_into()
                .map_err(|_| NodeError::failed("the key service returned a malformed proof"))?;
            let outputs = tokio::task::block_in_place(|| {
                vigil_oprf::finalize(chunk, &blinded, &evaluated, &proof, &self.public_key, &info)
            })
            .map_err(|e| NodeError::failed(format!("key service evaluation of {}: {e}", kind.short_name())))?;
            out.extend(outputs);
        }
        Ok(out)
    }

    /// Tokens and wrap secrets of each identity, in order. Each distinct
    /// match key of the batch is evaluated once.
    pub async fn evaluate(&mut self, ids: &[&Identity], purpose: &str) -> Result<Vec<Evaluated>, NodeError> {
        let keys: Vec<Vec<(KeyKind, Vec<u8>)>> = ids.iter().map(|id| distinct_match_keys(id)).collect();
        let mut by_kind: HashMap<KeyKind, Distinct<'_>> = HashMap::new();
        for (kind, bytes) in keys.iter().flatten() {
            let (list, seen) = by_kind.entry(*kind).or_default();
            seen.entry(bytes.as_slice()).or_insert_with(|| {
                list.push(bytes.as_slice());
                list.len() - 1
            });
        }
        let mut kinds: Vec<KeyKind> = by_kind.keys().copied().collect();
        kinds.sort_by_key(|k| *k as i32);
        let mut outputs: HashMap<KeyKind, Vec<[u8; vigil_oprf::OUTPUT]>> = HashMap::new();
        for kind in kinds {
            let list = &by_kind[&kind].0;
            outputs.insert(kind, self.evaluate_kind(kind, list, purpose).await?);
        }
        let mut out = Vec::with_capacity(ids.len());
        for id_keys in &keys {
            let mut e = Evaluated::default();
            for (kind, bytes) in id_keys {
                let i = by_kind[kind].1[bytes.as_slice()];
                let y = &outputs[kind][i];
                e.tokens.push((*kind, token_of_prf(y)));
                e.wraps.push((*kind, WrapSecret::of_prf(y)));
            }
            out.push(e);
        }
        for o in outputs.values_mut() {
            for y in o.iter_mut() {
                zeroize::Zeroize::zeroize(y);
            }
        }
        Ok(out)
    }
}

/// Tokens (and in scheme 3 wrap secrets) of each identity, by whichever
/// scheme this node uses; scheme 3 connects to the key service.
pub async fn tokens_of(
    cfg: &NodeConfig,
    keys: &crate::keyfile::Keys,
    ids: &[&Identity],
    purpose: &str,
) -> Result<Vec<Evaluated>, NodeError> {
    match &keys.tokenizer {
        Some(t) => Ok(ids
            .iter()
            .map(|id| {
                let mut tokens = Vec::new();
                t.tokens(id, &mut tokens);
                Evaluated { tokens, wraps: Vec::new() }
            })
            .collect()),
        None => KeyService::connect(cfg).await?.evaluate(ids, purpose).await,
    }
}

/// Packs wrap secrets for the local store: a kind byte and 32 bytes each.
pub fn pack_wraps(wraps: &[(KeyKind, WrapSecret)]) -> Vec<u8> {
    let mut b = Vec::with_capacity(wraps.len() * 33);
    for (k, s) in wraps {
        b.push((*k as i32 - KeyKind::Nino as i32) as u8);
        b.extend_from_slice(s.expose());
    }
    b
}

/// Unpacks what [`pack_wraps`] stored (malformed entries are skipped).
pub fn unpack_wraps(b: &[u8]) -> Vec<(KeyKind, WrapSecret)> {
    b.chunks_exact(33)
        .filter_map(|c| {
            let k = KeyKind::try_from(i32::from(c[0]) + KeyKind::Nino as i32).ok()?;
            let s: [u8; 32] = c[1..].try_into().ok()?;
            Some((k, WrapSecret::from_bytes(s)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_pack_and_unpack() {
        let w = vec![
            (KeyKind::Nino, WrapSecret::from_bytes([1; 32])),
            (KeyKind::SurnameDob, WrapSecret::from_bytes([2; 32])),
        ];
        let b = pack_wraps(&w);
        assert_eq!(b.len(), 66);
        assert_eq!(unpack_wraps(&b), w);
        assert!(unpack_wraps(&b[..40]).len() == 1);
    }
}
