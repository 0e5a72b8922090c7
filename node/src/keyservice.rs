//! Token scheme 3: the node's side of the key service (`vigil-keyserver`).
//!
//! Each distinct match key of a batch of identities is blinded
//! (`vigil_oprf::blind`), the key service evaluates the blinded elements of
//! one kind in chunks of at most [`CHUNK`] under the public input (kind,
//! epoch), several chunks at once (as many as this machine has cores, so
//! that blinding and unblinding here overlap evaluation there), and the
//! node verifies the batched DLEQ proof against the
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
        via.coordinator = crate::config::Addresses::one(ks.address.clone());
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

    /// Evaluates one chunk (match keys of one kind): blinds them on a
    /// blocking thread, has them evaluated, checks the proof and unblinds
    /// on a blocking thread.
    async fn evaluate_chunk(
        mut client: KeyServiceClient<Channel>,
        public_key: [u8; vigil_oprf::ELEMENT],
        epoch: u32,
        kind: KeyKind,
        inputs: Vec<Vec<u8>>,
        (purpose, check): (String, bool),
    ) -> Result<(Vec<[u8; vigil_oprf::OUTPUT]>, (u64, u64)), NodeError> {
        let failed = |e: tokio::task::JoinError| NodeError::failed(e.to_string());
        let (inputs, blinded) = tokio::task::spawn_blocking(move || {
            let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
            let b = vigil_oprf::blind(&refs);
            (inputs, b)
        })
        .await
        .map_err(failed)?;
        let blinded = blinded.map_err(|e| NodeError::failed(e.to_string()))?;
        let req = EvaluateRequest {
            epoch,
            kind: kind as u32,
            purpose,
            blinded: blinded.elements.iter().map(|e| e.to_vec().into()).collect(),
            check,
        };
        let resp =
            client.evaluate(req).await.map_err(|s| client::status_error(&s, "key service evaluation"))?.into_inner();
        let usage = (resp.used, resp.allowance);
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
        let outputs = tokio::task::spawn_blocking(move || {
            let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
            let info = vigil_oprf::info(kind as u32, epoch);
            vigil_oprf::finalize(&refs, &blinded, &evaluated, &proof, &public_key, &info)
        })
        .await
        .map_err(failed)?
        .map_err(|e| NodeError::failed(format!("key service evaluation of {}: {e}", kind.short_name())))?;
        Ok((outputs, usage))
    }

    /// Tokens and wrap secrets of each identity, in order. Each distinct
    /// match key of the batch is evaluated once. `check`: for a
    /// pre-employment check (the key service bounds those per day).
    pub async fn evaluate(
        &mut self,
        ids: &[&Identity],
        purpose: &str,
        check: bool,
    ) -> Result<Vec<Evaluated>, NodeError> {
        let keys: Vec<Vec<(KeyKind, Vec<u8>)>> = ids.iter().map(|id| distinct_match_keys(id)).collect();
        let mut by_kind: HashMap<KeyKind, Distinct<'_>> = HashMap::new();
        for (kind, bytes) in keys.iter().flatten() {
            let (list, seen) = by_kind.entry(*kind).or_default();
            seen.entry(bytes.as_slice()).or_insert_with(|| {
                list.push(bytes.as_slice());
                list.len() - 1
            });
        }
        // Every chunk of every kind, evaluated a few at a time: blinding
        // and unblinding use this machine's cores while the key service
        // evaluates other chunks.
        let mut jobs: Vec<(KeyKind, usize, Vec<Vec<u8>>)> = Vec::new();
        for (kind, (list, _)) in &by_kind {
            for (i, chunk) in list.chunks(CHUNK).enumerate() {
                jobs.push((*kind, i, chunk.iter().map(|b| b.to_vec()).collect()));
            }
        }
        jobs.sort_by_key(|(k, i, _)| (*k as i32, *i));
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        let mut chunks: HashMap<(KeyKind, usize), Vec<[u8; vigil_oprf::OUTPUT]>> = HashMap::new();
        let mut running = tokio::task::JoinSet::new();
        let mut jobs = jobs.into_iter();
        loop {
            while running.len() < parallel {
                let Some((kind, i, inputs)) = jobs.next() else { break };
                let f = Self::evaluate_chunk(
                    self.client.clone(),
                    self.public_key,
                    self.epoch,
                    kind,
                    inputs,
                    (purpose.to_string(), check),
                );
                running.spawn(async move { f.await.map(|r| ((kind, i), r)) });
            }
            let Some(done) = running.join_next().await else { break };
            let (at, (outputs, usage)) = done.map_err(|e| NodeError::failed(e.to_string()))??;
            self.usage = self.usage.max(usage);
            chunks.insert(at, outputs);
        }
        let mut outputs: HashMap<KeyKind, Vec<[u8; vigil_oprf::OUTPUT]>> = HashMap::new();
        let mut keys_of: Vec<(KeyKind, usize)> = chunks.keys().copied().collect();
        keys_of.sort_by_key(|(k, i)| (*k as i32, *i));
        for at in keys_of {
            if let Some(o) = chunks.remove(&at) {
                outputs.entry(at.0).or_default().extend(o);
            }
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

/// Tokens (and in scheme 3 wrap secrets) of a pre-employment check's
/// applicants, by whichever scheme this node uses; scheme 3 connects to
/// the key service.
pub async fn check_tokens(
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
        None => KeyService::connect(cfg).await?.evaluate(ids, purpose, true).await,
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
