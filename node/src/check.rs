//! `vigil-node check`: a pre-employment check of applicants. The answer
//! goes only to the asking force, and the coordinator keeps no applicant
//! tokens. Applicants are named to the coordinator by one-off references
//! that change with every check.

use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use tonic::transport::Channel;
use vigil_proto::v1::audit_service_client::AuditServiceClient;
use vigil_proto::v1::check_service_client::CheckServiceClient;
use vigil_proto::v1::{Applicant, CheckRequest};
use vigil_proto::{hex, tokens as wire};

use crate::client::{self, MAX_MESSAGE};
use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::input::{self, Report};
use crate::keyfile::Keys;
use crate::local::LocalStore;
use crate::verify;

/// One confirmed match of an applicant.
#[derive(Debug, Clone, Serialize)]
pub struct CheckHit {
    /// The force's applicant id.
    pub applicant_id: String,
    /// Name from the applicants file.
    pub name: String,
    /// Source.
    pub source: String,
    /// Record id.
    pub record_id: String,
    /// Category.
    pub category: String,
    /// Event date.
    pub event_date: String,
    /// The policy's probability of the same person.
    pub probability: f64,
    /// Evidence by field (`F3 S3 D3 P- N2`).
    pub fields: String,
    /// Kinds that agreed.
    pub evidence: Vec<String>,
}

/// The outcome of a check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckOutcome {
    /// The request id (also in the audit log).
    pub request_id: String,
    /// Applicants checked.
    pub applicants: u64,
    /// Rows refused in the file.
    pub refused: u64,
    /// Policy version.
    pub policy_version: String,
    /// Confirmed matches.
    pub matches: Vec<CheckHit>,
    /// The input report.
    #[serde(skip)]
    pub report: Report,
}

/// Checks the applicants in `path` for `purpose` (a case reference), and
/// verifies that the check is in the audit log as it was sent.
pub async fn check(
    cfg: &NodeConfig,
    keys: &Keys,
    store: &LocalStore,
    channel: Channel,
    path: &Path,
    purpose: &str,
) -> Result<CheckOutcome, NodeError> {
    let log_key = verify::LogKey::load(cfg)?;
    let name = path.display().to_string();
    let mut report = Report::new(&name, "applicants");
    let mut rows = Vec::new();
    let bad = |e: input::InputError| NodeError::input(format!("{e}. Nothing was checked"));
    let scan = input::scan_path(path, input::Kind::Applicants).map_err(bad)?;
    input::read_applicants(input::open(path).map_err(bad)?, &name, &scan, &mut report, |r| rows.push(r))
        .map_err(bad)?;
    if rows.is_empty() {
        return Err(NodeError::input(format!("{name}: no usable applicant rows ({})", report.summary())));
    }
    // A random 128-bit id, in hex (the coordinator accepts only hex ids, so
    // that nothing a caller chooses freely lands in the permanent log).
    let mut nonce = [0u8; 16];
    SystemRandom::new().fill(&mut nonce).map_err(|_| NodeError::failed("random generator failed"))?;
    let request_id = hex::encode(&nonce);
    let mut by_ref: HashMap<Vec<u8>, (String, String, usize)> = HashMap::new();
    let ids: Vec<&vigil_identity::keys::Identity> = rows.iter().map(|r| &r.identity).collect();
    let evaluated = crate::keyservice::check_tokens(cfg, keys, &ids, purpose)
        .await
        .map_err(|e| e.map_message(|m| format!("{m}. Nothing was checked")))?;
    let mut applicants = Vec::with_capacity(rows.len());
    for (i, (r, e)) in rows.iter().zip(&evaluated).enumerate() {
        let aref = keys.local.applicant_ref(&request_id, &r.applicant_id);
        by_ref.insert(aref.to_vec(), (r.applicant_id.clone(), format!("{} {}", r.forenames, r.surname), i));
        applicants.push(Applicant { applicant: aref.to_vec().into(), tokens: Some(wire::pack(&e.tokens)) });
    }
    let mut c = CheckServiceClient::new(channel.clone())
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let req = CheckRequest {
        request_id: request_id.clone(),
        epoch: keys.epoch,
        scheme: keys.scheme,
        applicants,
        purpose: purpose.to_string(),
    };
    let resp = c.check(req.clone()).await.map_err(|s| client::status_error(&s, "pre-employment check"))?.into_inner();
    let mut audit = AuditServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
    verify::verify_check(store, &log_key, &mut audit, &cfg.code, &req, resp.audit.as_ref()).await?;
    let mut matches = Vec::new();
    for m in resp.matches {
        let Some((applicant_id, name, i)) = by_ref.get(m.applicant.as_ref()).cloned() else { continue };
        let opened = keys.open(&m.source, &m.record_ref, m.sealed.as_ref(), &evaluated[i].wraps);
        matches.push(CheckHit {
            applicant_id,
            name,
            source: m.source,
            record_id: opened.record_id,
            category: opened.category,
            event_date: opened.event_date,
            probability: m.probability,
            fields: m.fields.clone(),
            evidence: vigil_proto::KeyKind::names_of_wire(&m.agreeing),
        });
    }
    matches.sort_by_key(|m| (vigil_identity::category::rank(&m.category).unwrap_or(99), m.applicant_id.clone()));
    Ok(CheckOutcome {
        request_id,
        applicants: resp.applicants,
        refused: report.refused,
        policy_version: resp.policy_version,
        matches,
        report,
    })
}
