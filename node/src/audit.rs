//! `vigil-node audit`: verify the transparency log, report what was shared
//! with whom, and export the log for independent verification.
//!
//! - An **auditor** node fetches every entry, recomputes the tree, checks it
//!   against the signed checkpoint and the checkpoint against the last one
//!   it verified, and checks the log's invariants.
//! - A **force** node checks that every disclosure in its inbox is in the
//!   current log (an inclusion proof per disclosure) and that the log is
//!   consistent with what it verified before.
//!
//! Categories travel sealed: the log cannot count by category. An
//! auditor's report counts by force, source, month and policy. A force's
//! report also counts its own disclosures by category, opened locally.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tonic::transport::Channel;
use vigil_proto::audit::Entry;
use vigil_proto::tlog::{Checkpoint, Hash, Tree, leaf_hash, verify_inclusion};
use vigil_proto::v1::audit_service_client::AuditServiceClient;
use vigil_proto::v1::{CheckpointRequest, Disclosure, DisclosureType, EntriesRequest, InclusionProofRequest};

use crate::client::{self, MAX_MESSAGE};
use crate::config::{NodeConfig, NodeRole};
use crate::error::NodeError;
use crate::local::LocalStore;
use crate::report::Report;
use crate::verify::{self, LogKey};

/// The verified log: checkpoint and every entry.
pub struct Log {
    /// The verified checkpoint.
    pub checkpoint: Checkpoint,
    /// Its signed note.
    pub note: String,
    /// Every entry, in order.
    pub entries: Vec<Vec<u8>>,
}

fn audit_client(channel: Channel) -> AuditServiceClient<Channel> {
    AuditServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE)
}

/// Fetches the checkpoint to audit against and verifies it against the one
/// held: the latest, or, when `[audit] witness_quorum` is set, the newest
/// that enough of the configured witnesses cosigned.
pub async fn latest(store: &LocalStore, key: &LogKey, channel: Channel) -> Result<(Checkpoint, String), NodeError> {
    let mut c = audit_client(channel);
    let note = c
        .checkpoint(CheckpointRequest { min_cosignatures: key.quorum as u32 })
        .await
        .map_err(|s| match s.code() {
            tonic::Code::NotFound if key.quorum > 0 => NodeError::from(verify::VerifyError::Unwitnessed(format!(
                "the coordinator has no checkpoint cosigned by {} witnesses ({})",
                key.quorum,
                s.message()
            ))),
            _ => client::status_error(&s, "checkpoint"),
        })?
        .into_inner()
        .checkpoint;
    if key.quorum > 0 {
        key.cosigners(&note).map_err(NodeError::from)?;
    }
    let cp = verify::accept_checkpoint(store, key, &mut c, &note).await.map_err(NodeError::from)?;
    Ok((cp, note))
}

/// Fetches every entry (auditor only) and checks them against the checkpoint.
pub async fn fetch(store: &LocalStore, key: &LogKey, channel: Channel) -> Result<Log, NodeError> {
    let (cp, note) = latest(store, key, channel.clone()).await?;
    let mut c = audit_client(channel);
    let mut entries = Vec::with_capacity(cp.size as usize);
    while (entries.len() as u64) < cp.size {
        let start = entries.len() as u64;
        let r = c
            .entries(EntriesRequest { start, end: cp.size })
            .await
            .map_err(|s| client::status_error(&s, "log entries"))?
            .into_inner();
        if r.entries.is_empty() {
            return Err(NodeError::audit(format!("the coordinator returned no entries from {start}")));
        }
        entries.extend(r.entries.into_iter().map(|b| b.to_vec()));
    }
    entries.truncate(cp.size as usize);
    let mut tree = Tree::new();
    for e in &entries {
        tree.push(leaf_hash(e));
    }
    if tree.root(cp.size) != Some(cp.root) {
        return Err(NodeError::audit("the entries served do not hash to the signed checkpoint's root"));
    }
    Ok(Log { checkpoint: cp, note, entries })
}

/// What `audit verify` found.
#[derive(Debug, Default, Serialize)]
pub struct Verified {
    /// Tree size verified.
    pub size: u64,
    /// Entries by type.
    pub entries: BTreeMap<String, u64>,
    /// Disclosures in this force's inbox proven to be in the log.
    pub inbox_proven: u64,
    /// Disclosures newer than the witnessed checkpoint (proven at a later
    /// audit, once witnesses have cosigned a checkpoint that covers them).
    pub awaiting_witnesses: u64,
    /// Witnesses who cosigned the checkpoint verified.
    pub witnesses: Vec<String>,
    /// Problems found (empty when everything holds).
    pub problems: Vec<String>,
}

/// `audit verify`.
pub async fn verify(cfg: &NodeConfig, store: &LocalStore, channel: Channel) -> Result<Verified, NodeError> {
    let key = LogKey::load(cfg)?;
    let mut v = Verified::default();
    match cfg.role {
        NodeRole::Auditor => {
            let log = fetch(store, &key, channel).await?;
            v.witnesses = key.cosigners(&log.note).unwrap_or_default();
            v.size = log.checkpoint.size;
            let (counts, problems) = vigil_proto::invariants::check(&log.entries);
            v.entries = counts;
            v.problems = problems;
        }
        _ => {
            let (cp, note) = latest(store, &key, channel.clone()).await?;
            v.witnesses = key.cosigners(&note).unwrap_or_default();
            v.size = cp.size;
            let mut c = audit_client(channel);
            for (id, bytes, _) in store.inbox().map_err(|e| NodeError::failed(e.to_string()))? {
                let d: Disclosure =
                    prost::Message::decode(bytes.as_slice()).map_err(|_| NodeError::failed("corrupt inbox entry"))?;
                let Some(a) = d.audit.as_ref() else {
                    v.problems.push(format!("{id}: stored without its log entry"));
                    continue;
                };
                if a.leaf_index >= cp.size && key.quorum > 0 {
                    v.awaiting_witnesses += 1;
                    continue;
                }
                if a.leaf_index >= cp.size {
                    v.problems.push(format!("{id}: leaf {} is beyond the log's size {}", a.leaf_index, cp.size));
                    continue;
                }
                let proof = c
                    .inclusion_proof(InclusionProofRequest { leaf_index: a.leaf_index, tree_size: cp.size })
                    .await
                    .map_err(|s| client::status_error(&s, "inclusion proof"))?
                    .into_inner()
                    .proof;
                let proof: Result<Vec<Hash>, _> = proof.iter().map(|h| <Hash>::try_from(h.as_ref())).collect();
                let ok = proof
                    .is_ok_and(|p| verify_inclusion(&leaf_hash(&a.entry), a.leaf_index, cp.size, &p, &cp.root).is_ok());
                if !ok {
                    v.problems.push(format!("{id}: not in the log at size {}", cp.size));
                    continue;
                }
                match Entry::parse(&a.entry)
                    .map_err(|e| e.to_string())
                    .and_then(|e| verify::entry_matches(&d, &cfg.code, &e))
                {
                    Ok(()) => v.inbox_proven += 1,
                    Err(why) => v.problems.push(format!("{id}: {why}")),
                }
                let kind = match DisclosureType::try_from(d.r#type) {
                    Ok(DisclosureType::Retraction) => "retraction",
                    Ok(DisclosureType::Amendment) => "amendment",
                    _ => "disclosure",
                };
                *v.entries.entry(kind.into()).or_default() += 1;
            }
        }
    }
    Ok(v)
}

/// Builds a report for this node: all forces for an auditor, its own for a force.
pub async fn build_report(
    cfg: &NodeConfig,
    store: &LocalStore,
    channel: Channel,
    force: Option<&str>,
    since: Option<&str>,
) -> Result<Report, NodeError> {
    let key = LogKey::load(cfg)?;
    match cfg.role {
        NodeRole::Auditor => {
            let log = fetch(store, &key, channel).await?;
            let mut r = crate::report::report(&log.entries, force, since, &HashMap::new());
            r.problems = vigil_proto::invariants::check(&log.entries).1;
            r.produced_by = format!("auditor {}", cfg.code);
            r.log_size = log.checkpoint.size;
            Ok(r)
        }
        NodeRole::Force => {
            if force.is_some_and(|f| f != cfg.code) {
                return Err(NodeError::config("a force's report covers only that force"));
            }
            let (cp, _) = latest(store, &key, channel).await?;
            let keys = crate::keyfile::Keys::load(cfg)?;
            let items = crate::inbox::build(store, &keys)?;
            let categories: HashMap<String, String> =
                items.iter().map(|i| (i.id.clone(), i.category.clone())).collect();
            let entries: Vec<Vec<u8>> = store
                .inbox()
                .map_err(|e| NodeError::failed(e.to_string()))?
                .into_iter()
                .filter_map(|(_, b, _)| prost::Message::decode(b.as_slice()).ok())
                .filter_map(|d: Disclosure| d.audit.map(|a| a.entry.to_vec()))
                .collect();
            let mut r = crate::report::report(&entries, Some(&cfg.code), since, &categories);
            r.produced_by = format!("force {}", cfg.code);
            r.log_size = cp.size;
            Ok(r)
        }
        NodeRole::Source | NodeRole::Witness => {
            Err(NodeError::config("only an auditor or a force node has an audit report"))
        }
    }
}

/// Writes the log for third-party verification (auditor only): see
/// docs/audit.md for the formats.
pub async fn export(cfg: &NodeConfig, store: &LocalStore, channel: Channel, dir: &Path) -> Result<u64, NodeError> {
    let key = LogKey::load(cfg)?;
    let log = fetch(store, &key, channel.clone()).await?;
    let seen = verify::history(store, &key).map_err(NodeError::from)?;
    let io = |e: std::io::Error| NodeError::failed(format!("writing {}: {e}", dir.display()));
    vigil_common::secrets::private_dir(&dir.join("inclusion")).map_err(io)?;
    vigil_common::secrets::private_dir(&dir.join("consistency")).map_err(io)?;
    std::fs::write(dir.join("checkpoint"), &log.note).map_err(io)?;
    std::fs::write(dir.join("vkey"), format!("{}\n", key.verifier.vkey())).map_err(io)?;
    std::fs::write(dir.join("origin"), format!("{}\n", key.origin)).map_err(io)?;
    let mut jsonl = Vec::new();
    for e in &log.entries {
        jsonl.extend_from_slice(e);
        jsonl.push(b'\n');
    }
    std::fs::write(dir.join("entries.jsonl"), jsonl).map_err(io)?;
    let mut tree = Tree::new();
    for e in &log.entries {
        tree.push(leaf_hash(e));
    }
    let b64 = |h: &Hash| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, h);
    let size = log.checkpoint.size;
    for (i, e) in log.entries.iter().enumerate() {
        let kind = Entry::parse(e).map(|x| x.kind()).unwrap_or("");
        if kind == "disclosure" || kind == "retraction" {
            let proof = tree.inclusion_proof(i as u64, size).unwrap_or_default();
            let text: String = proof.iter().map(|h| format!("{}\n", b64(h))).collect();
            std::fs::write(dir.join("inclusion").join(format!("{i}")), text).map_err(io)?;
        }
    }
    for (old, old_note) in seen.iter().filter(|(c, _)| c.size > 0 && c.size < size) {
        let proof = tree.consistency_proof(old.size, size).unwrap_or_default();
        let text: String = proof.iter().map(|h| format!("{}\n", b64(h))).collect();
        std::fs::write(dir.join("consistency").join(format!("{}-{size}", old.size)), text).map_err(io)?;
        std::fs::write(dir.join("consistency").join(format!("checkpoint-{}", old.size)), old_note).map_err(io)?;
    }
    std::fs::write(dir.join("README.txt"), EXPORT_README).map_err(io)?;
    Ok(size)
}

const EXPORT_README: &str = "Vigil transparency-log export. Formats: docs/audit.md in the Vigil repository.

checkpoint            the signed checkpoint (C2SP signed-note around a C2SP tlog-checkpoint)
vkey                  the log's verifier key (C2SP vkey: <name>+<hex key id>+<base64(0x01 || Ed25519 key)>)
origin                the checkpoint's expected origin line
entries.jsonl         every entry, one JSON object per line; line N (from 0) is leaf N
inclusion/<N>         for each disclosure and retraction leaf N: its inclusion proof in the
                      checkpoint's tree, one base64 SHA-256 hash per line (RFC 9162 order)
consistency/<A>-<B>   for every earlier checkpoint this auditor verified (size A, saved as
                      consistency/checkpoint-<A>): a consistency proof to this one (size B)

To verify: check the checkpoint's Ed25519 signature with vkey; hash each line of entries.jsonl
(without its newline) as SHA-256(0x00 || line) and compute the RFC 6962 Merkle root; compare
it with the checkpoint's root hash and tree size.
";
