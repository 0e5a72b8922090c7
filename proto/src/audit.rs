//! Entries of the transparency log. Each entry is one line of JSON (UTF-8,
//! no trailing newline) with a `type` field; the leaf is
//! SHA-256(0x00 || entry bytes). docs/audit.md is the reference. No entry
//! carries personal data: subjects and records appear only as opaque
//! references, batches only as counts and a commitment.

use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};

use crate::hex;
use crate::v1::{NationalBatch, RosterBatch, TokenSet};

/// One log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    /// A roster sync batch applied for a force.
    RosterBatch {
        /// RFC 3339 UTC time.
        time: String,
        /// Force code.
        force: String,
        /// The force's batch sequence number (1, 2, ...).
        sequence: u64,
        /// Subjects enrolled or re-enrolled.
        upserts: u64,
        /// Subjects removed.
        removes: u64,
        /// Removes naming no enrolled subject.
        removes_unknown: u64,
        /// Subjects enrolled for the force after the batch.
        enrolled: u64,
        /// Disclosures this batch created.
        disclosures: u64,
        /// Amendments this batch created.
        amendments: u64,
        /// Retractions this batch created.
        retractions: u64,
        /// Pairs that reached candidate (counted, never disclosed).
        candidates: u64,
        /// SHA-256 commitment to the batch's tokens (hex), see [`roster_commitment`].
        commitment: String,
    },
    /// A national batch applied for a source.
    NationalBatch {
        /// RFC 3339 UTC time.
        time: String,
        /// Source code.
        source: String,
        /// The source's batch sequence number (1, 2, ...).
        sequence: u64,
        /// Records added or changed.
        upserts: u64,
        /// Records withdrawn.
        removes: u64,
        /// Withdrawals naming no known record.
        removes_unknown: u64,
        /// Records held for the source after the batch.
        records: u64,
        /// Disclosures this batch created.
        disclosures: u64,
        /// Amendments this batch created.
        amendments: u64,
        /// Retractions this batch created.
        retractions: u64,
        /// Pairs that reached candidate.
        candidates: u64,
        /// SHA-256 commitment to the batch's tokens and sealed details (hex).
        commitment: String,
    },
    /// A confirmed match disclosed to a force.
    Disclosure {
        /// RFC 3339 UTC time.
        time: String,
        /// Disclosure id.
        id: String,
        /// Force it was disclosed to.
        force: String,
        /// The force's pseudonym of the subject (hex).
        subject: String,
        /// Source of the record.
        source: String,
        /// The source's opaque record reference (hex).
        record_ref: String,
        /// Key kinds that agreed.
        agreeing: Vec<String>,
        /// Probability of the same person under the policy.
        probability: f64,
        /// Evidence by field (`F3 S2 D3 P0 N-`).
        fields: String,
        /// Policy version.
        policy_version: String,
    },
    /// A new version of a disclosure in force: the record's details or the
    /// evidence changed and the pair still confirms.
    Amendment {
        /// RFC 3339 UTC time.
        time: String,
        /// Amendment id (a delivery id, like a disclosure's).
        id: String,
        /// The disclosure it amends (the case).
        amends: String,
        /// The case's new version (2 for the first amendment).
        version: u32,
        /// Force it was disclosed to.
        force: String,
        /// Subject pseudonym (hex).
        subject: String,
        /// Source.
        source: String,
        /// Record reference (hex).
        record_ref: String,
        /// Key kinds that agree now.
        agreeing: Vec<String>,
        /// Probability of the same person under the policy now.
        probability: f64,
        /// Evidence by field now.
        fields: String,
        /// Policy version.
        policy_version: String,
        /// `record_changed` or `subject_changed`.
        reason: String,
    },
    /// A disclosure withdrawn.
    Retraction {
        /// RFC 3339 UTC time.
        time: String,
        /// Retraction id.
        id: String,
        /// The disclosure it withdraws.
        retracts: String,
        /// Force it was sent to.
        force: String,
        /// Subject pseudonym (hex).
        subject: String,
        /// Source.
        source: String,
        /// Record reference (hex).
        record_ref: String,
        /// `record_withdrawn`, `record_changed`, `subject_left`, `subject_changed`,
        /// `policy_changed`, `scores_changed` or `epoch_changed`.
        reason: String,
    },
    /// A pre-employment check (counts only; applicants are not recorded).
    /// It does not count candidates: a count of near misses would tell the
    /// force whether national data holds someone like an applicant.
    Check {
        /// RFC 3339 UTC time.
        time: String,
        /// Force that asked.
        force: String,
        /// The force's request id.
        request_id: String,
        /// The force's reference for why it checked (empty in entries
        /// written before 2026-11-30).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        purpose: String,
        /// Applicants checked.
        applicants: u64,
        /// Confirmed matches returned.
        confirmed: u64,
        /// Candidates counted: only in entries written before checks
        /// stopped counting them (2026-11-30).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        candidates: Option<u64>,
        /// SHA-256 commitment to the request as received
        /// ([`check_commitment`]; empty in entries written before 2026-11-30).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        commitment: String,
        /// Policy version.
        policy_version: String,
    },
    /// The policy in force changed (or the log started).
    Policy {
        /// RFC 3339 UTC time.
        time: String,
        /// Policy version.
        version: String,
        /// SHA-256 of the policy file text (hex).
        sha256: String,
        /// Disclosures that follow: pairs the new policy confirms that the
        /// last did not (none on first start).
        #[serde(default)]
        disclosures: u64,
        /// Amendments that follow: cases whose probability moved.
        #[serde(default)]
        amendments: u64,
        /// Retractions that follow (`policy_changed`): cases the new policy
        /// no longer confirms.
        #[serde(default)]
        retractions: u64,
    },
    /// The key epoch changed (or the log started), or parties finished
    /// moving to it.
    Epoch {
        /// RFC 3339 UTC time.
        time: String,
        /// Epoch now accepted.
        epoch: u32,
        /// The epoch also accepted while parties move to `epoch`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<u32>,
        /// Parity (0 or 1) of the epoch whose tokens were dropped at this
        /// entry: every party had moved on from it (crypto-shredding).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shredded: Option<u32>,
        /// Subjects and records deleted because they had no tokens of the
        /// current epoch (their party never re-sent them).
        #[serde(default, skip_serializing_if = "is_zero")]
        dropped_subjects: u64,
        /// As `dropped_subjects`, for national records.
        #[serde(default, skip_serializing_if = "is_zero")]
        dropped_records: u64,
        /// Retractions that follow (`epoch_changed`).
        #[serde(default, skip_serializing_if = "is_zero")]
        retractions: u64,
    },
    /// A batch the key service evaluated (its own log: who asked for how
    /// many evaluations of which kind, never the elements).
    Evaluation {
        /// RFC 3339 UTC time.
        time: String,
        /// `force/<code>` or `source/<code>`.
        caller: String,
        /// The key's epoch.
        epoch: u32,
        /// The key kind (short name).
        kind: String,
        /// Elements evaluated.
        count: u64,
        /// The caller's reference for why.
        purpose: String,
        /// The caller's evaluations in this epoch, this batch included.
        used: u64,
        /// For a pre-employment check.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        check: bool,
    },
}

/// Whether `s` may stand in the permanent log as a caller's reference (a
/// check's or an evaluation's purpose): 1 to 64 letters, digits, spaces and
/// `- _ / . : #`. A case or batch reference, never free text such as a name.
pub fn is_reference(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b" -_/.:#".contains(&b))
}

/// What [`is_reference`] accepts, for error messages.
pub const REFERENCE_RULE: &str = "1 to 64 letters, digits, spaces and - _ / . : #";

impl Entry {
    /// The entry's bytes in the log.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses an entry.
    pub fn parse(bytes: &[u8]) -> Result<Entry, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The `type` name.
    pub fn kind(&self) -> &'static str {
        match self {
            Entry::RosterBatch { .. } => "roster_batch",
            Entry::NationalBatch { .. } => "national_batch",
            Entry::Disclosure { .. } => "disclosure",
            Entry::Retraction { .. } => "retraction",
            Entry::Amendment { .. } => "amendment",
            Entry::Check { .. } => "check",
            Entry::Policy { .. } => "policy",
            Entry::Epoch { .. } => "epoch",
            Entry::Evaluation { .. } => "evaluation",
        }
    }

    /// The entry's time.
    pub fn time(&self) -> &str {
        match self {
            Entry::RosterBatch { time, .. }
            | Entry::NationalBatch { time, .. }
            | Entry::Disclosure { time, .. }
            | Entry::Retraction { time, .. }
            | Entry::Amendment { time, .. }
            | Entry::Check { time, .. }
            | Entry::Policy { time, .. }
            | Entry::Epoch { time, .. }
            | Entry::Evaluation { time, .. } => time,
        }
    }
}

fn put_set(c: &mut Context, set: Option<&TokenSet>) {
    match set {
        None => c.update(&0u32.to_be_bytes()),
        Some(s) => {
            c.update(&(s.kinds.len() as u32).to_be_bytes());
            for k in &s.kinds {
                c.update(&[(*k & 0xff) as u8]);
            }
            c.update(&s.tokens);
        }
    }
}

fn put_bytes(c: &mut Context, b: &[u8]) {
    c.update(&(b.len() as u32).to_be_bytes());
    c.update(b);
}

/// The commitment to a roster batch: SHA-256 over, for each upsert in order,
/// `len(subject) || subject || n || kinds (one byte each) || tokens`, then
/// `0xff`, then `len || subject` of each remove (lengths and `n` as 4-byte
/// big-endian). A node can recompute it from what it sent; nobody can
/// recover a token from it.
pub fn roster_commitment(b: &RosterBatch) -> String {
    let mut c = Context::new(&SHA256);
    c.update(b"vigil roster batch v1");
    for u in &b.upserts {
        put_bytes(&mut c, &u.subject);
        put_set(&mut c, u.tokens.as_ref());
    }
    c.update(&[0xff]);
    for r in &b.removes {
        put_bytes(&mut c, r);
    }
    hex::encode(c.finish().as_ref())
}

/// The commitment to a check as sent: request id, purpose, and each
/// applicant's reference and tokens. The force computes the same and
/// compares it with the check's log entry.
pub fn check_commitment(r: &crate::v1::CheckRequest) -> String {
    let mut c = Context::new(&SHA256);
    c.update(b"vigil check v1");
    put_bytes(&mut c, r.request_id.as_bytes());
    put_bytes(&mut c, r.purpose.as_bytes());
    for a in &r.applicants {
        put_bytes(&mut c, &a.applicant);
        put_set(&mut c, a.tokens.as_ref());
    }
    hex::encode(c.finish().as_ref())
}

/// The commitment to a national batch: as [`roster_commitment`], with each
/// record's sealed nonce and ciphertext (and in scheme 3 its wraps) after
/// its tokens.
pub fn national_commitment(b: &NationalBatch) -> String {
    let mut c = Context::new(&SHA256);
    c.update(b"vigil national batch v1");
    for u in &b.upserts {
        put_bytes(&mut c, &u.record_ref);
        put_set(&mut c, u.tokens.as_ref());
        let (n, ct) = u.sealed.as_ref().map(|s| (&s.nonce[..], &s.ciphertext[..])).unwrap_or((&[], &[]));
        put_bytes(&mut c, n);
        put_bytes(&mut c, ct);
        // Scheme 3: the record-key wraps too (scheme-2 boxes have none, and
        // their commitments are as before).
        if let Some(s) = u.sealed.as_ref().filter(|s| !s.wrap_kinds.is_empty()) {
            c.update(&[0xfe]);
            for k in &s.wrap_kinds {
                c.update(&k.to_be_bytes());
            }
            put_bytes(&mut c, &s.wraps);
        }
    }
    c.update(&[0xff]);
    for r in &b.removes {
        put_bytes(&mut c, r);
    }
    hex::encode(c.finish().as_ref())
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_as_one_json_line() {
        let e = Entry::Disclosure {
            time: "2026-11-22T00:00:00.000Z".into(),
            id: "gmp-00000001".into(),
            force: "gmp".into(),
            subject: "00ff".into(),
            source: "pnc".into(),
            record_ref: "abcd".into(),
            agreeing: vec!["nino".into(), "name_dob".into()],
            probability: 0.9999,
            fields: "F3 S3 D3 P- N2".into(),
            policy_version: "default-2026-11.1".into(),
        };
        let b = e.to_bytes();
        assert!(!b.contains(&b'\n'));
        assert!(b.starts_with(br#"{"type":"disclosure","time":"#));
        assert_eq!(Entry::parse(&b).unwrap(), e);
        assert_eq!(e.kind(), "disclosure");
    }

    #[test]
    fn commitments_depend_on_every_token() {
        let mut b = RosterBatch {
            sequence: 1,
            epoch: 1,
            upserts: vec![crate::v1::EnrolSubject {
                subject: vec![1; 16].into(),
                tokens: Some(TokenSet { kinds: vec![1], tokens: vec![7; 32].into() }),
            }],
            removes: vec![vec![2; 16].into()],
            allow_removals: false,
            scheme: 2,
        };
        let c1 = roster_commitment(&b);
        b.sequence = 2;
        assert_eq!(roster_commitment(&b), c1, "the sequence is not committed, the content is");
        b.upserts[0].tokens = Some(TokenSet { kinds: vec![1], tokens: vec![8; 32].into() });
        assert_ne!(roster_commitment(&b), c1);
        assert_eq!(c1.len(), 64);
    }
}
