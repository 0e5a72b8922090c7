//! The outbox: cases in force (disclosures and their amendments), each
//! force's delivery sequence, and the disclosures, amendments and
//! retractions a batch queues, each with its log entry.

use std::collections::HashMap;
use vigil_proto::audit::Entry;
use vigil_proto::hex;
use vigil_proto::kinds::KindSet;
use vigil_proto::v1::{Disclosure, DisclosureType, SealedDetails};

use super::registry::Pair;
use crate::policy::{Assessment, Evidence};
use crate::store::{ActiveRow, Commit};

/// A disclosure in force: the case its amendments and retraction refer to.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Case {
    /// The disclosure's id.
    pub id: String,
    /// 1, then one more for each amendment.
    pub version: u32,
    /// Kinds that agreed in the latest version.
    pub agreeing: KindSet,
    /// Match probability in the latest version.
    pub probability: f64,
}

impl Case {
    /// Whether a pair's reading differs enough from this case's latest
    /// version to be told to the force: other agreeing kinds, or a match
    /// probability that moved by at least [`MATERIAL`].
    pub fn differs(&self, agreeing: KindSet, probability: f64) -> bool {
        self.agreeing != agreeing || (self.probability - probability).abs() >= MATERIAL
    }
}

/// The smallest change of probability that amends a case (smaller changes,
/// as other records come and go, are not news to an investigator).
pub(super) const MATERIAL: f64 = 0.005;

/// Work in progress for one batch: its log entries and messages (in the
/// same order), what to commit, and counts.
pub(super) struct Batch {
    pub now_ms: i64,
    pub time: String,
    pub entries: Vec<Entry>,
    pub messages: Vec<(String, Disclosure)>,
    pub commit: Commit,
    pub disclosed: u64,
    pub amended: u64,
    pub retracted: u64,
    pub candidates: u64,
}

impl Batch {
    pub fn new(now_ms: i64) -> Batch {
        Batch {
            now_ms,
            time: vigil_proto::time::rfc3339(now_ms),
            entries: Vec::new(),
            messages: Vec::new(),
            commit: Commit::default(),
            disclosed: 0,
            amended: 0,
            retracted: 0,
            candidates: 0,
        }
    }

    /// Forces with something new in this batch, sorted.
    pub fn forces(&self) -> Vec<String> {
        let mut f: Vec<String> = self.messages.iter().map(|(f, _)| f.clone()).collect();
        f.sort();
        f.dedup();
        f
    }
}

fn kind_names(k: KindSet) -> Vec<String> {
    k.iter().map(|k| k.short_name().to_string()).collect()
}

/// The fields every message about a pair carries.
fn message(
    p: &Pair<'_>,
    b: &Batch,
    sequence: u64,
    id: String,
    kind: DisclosureType,
    policy_version: &str,
) -> Disclosure {
    Disclosure {
        id,
        sequence,
        r#type: kind as i32,
        subject: p.pseudonym.to_vec().into(),
        source: p.source.to_string(),
        record_ref: p.record_ref.to_vec().into(),
        policy_version: policy_version.to_string(),
        created_unix_ms: b.now_ms,
        ..Default::default()
    }
}

fn active_row(p: &Pair<'_>, case: &Case) -> ActiveRow {
    ActiveRow {
        force: p.force.to_string(),
        pseudonym: p.pseudonym,
        source: p.source.to_string(),
        record_ref: p.record_ref,
        disclosure_id: case.id.clone(),
        version: case.version,
        agreeing: case.agreeing,
        probability: case.probability,
    }
}

/// Cases in force and delivery sequences.
#[derive(Default)]
pub(super) struct Outbox {
    active: HashMap<(u32, u32), Case>,
    subject_active: HashMap<u32, Vec<u32>>,
    record_active: HashMap<u32, Vec<u32>>,
    next_seq: HashMap<String, u64>,
}

impl Outbox {
    /// The case in force for (subject, record), if any.
    pub fn case(&self, sid: u32, rid: u32) -> Option<&Case> {
        self.active.get(&(sid, rid))
    }

    /// Records with a case in force for a subject.
    pub fn records_of(&self, sid: u32) -> Vec<u32> {
        self.subject_active.get(&sid).cloned().unwrap_or_default()
    }

    /// Every subject with a case in force.
    pub fn subjects_with_cases(&self) -> Vec<u32> {
        self.subject_active.iter().filter(|(_, v)| !v.is_empty()).map(|(s, _)| *s).collect()
    }

    /// Subjects with a case in force for a record.
    pub fn subjects_of(&self, rid: u32) -> Vec<u32> {
        self.record_active.get(&rid).cloned().unwrap_or_default()
    }

    /// Restores a case in force (at start-up).
    pub fn restore(&mut self, sid: u32, rid: u32, case: Case) {
        if self.active.insert((sid, rid), case).is_none() {
            self.subject_active.entry(sid).or_default().push(rid);
            self.record_active.entry(rid).or_default().push(sid);
        }
    }

    /// Restores a force's last delivery sequence (at start-up).
    pub fn restore_sequence(&mut self, force: &str, last: u64) {
        self.next_seq.insert(force.to_string(), last + 1);
    }

    fn remove(&mut self, sid: u32, rid: u32) -> Option<Case> {
        let case = self.active.remove(&(sid, rid))?;
        if let Some(v) = self.subject_active.get_mut(&sid) {
            v.retain(|r| *r != rid);
        }
        if let Some(v) = self.record_active.get_mut(&rid) {
            v.retain(|s| *s != sid);
        }
        Some(case)
    }

    fn next_id(&mut self, force: &str) -> (u64, String) {
        let seq = self.next_seq.entry(force.to_string()).or_insert(1);
        let s = *seq;
        *seq += 1;
        (s, format!("{force}-{s:010}"))
    }

    /// Queues a disclosure of the pair: a new case, version 1.
    pub fn disclose(
        &mut self,
        b: &mut Batch,
        p: &Pair<'_>,
        evidence: &Evidence,
        a: &Assessment,
        sealed: Option<SealedDetails>,
        policy_version: &str,
    ) {
        let (seq, id) = self.next_id(p.force);
        b.entries.push(Entry::Disclosure {
            time: b.time.clone(),
            id: id.clone(),
            force: p.force.to_string(),
            subject: hex::encode(&p.pseudonym),
            source: p.source.to_string(),
            record_ref: hex::encode(&p.record_ref),
            agreeing: kind_names(evidence.agreeing),
            probability: a.probability,
            fields: a.fields(),
            policy_version: policy_version.to_string(),
        });
        let msg = Disclosure {
            agreeing: evidence.agreeing.iter().map(|k| k as i32).collect(),
            sealed,
            version: 1,
            probability: a.probability,
            fields: a.fields(),
            ..message(p, b, seq, id.clone(), DisclosureType::Disclosure, policy_version)
        };
        b.messages.push((p.force.to_string(), msg));
        let case = Case { id, version: 1, agreeing: evidence.agreeing, probability: a.probability };
        b.commit.active_put.push(active_row(p, &case));
        self.restore(p.sid, p.rid, case);
        b.disclosed += 1;
    }

    /// Queues an amendment of the pair's case: the same case, its next
    /// version, with the record's current details and the evidence as it
    /// stands now.
    #[allow(clippy::too_many_arguments)]
    pub fn amend(
        &mut self,
        b: &mut Batch,
        p: &Pair<'_>,
        evidence: &Evidence,
        a: &Assessment,
        sealed: Option<SealedDetails>,
        policy_version: &str,
        reason: &str,
    ) {
        let Some(case) = self.active.get(&(p.sid, p.rid)).cloned() else { return };
        let (seq, id) = self.next_id(p.force);
        let version = case.version + 1;
        b.entries.push(Entry::Amendment {
            time: b.time.clone(),
            id: id.clone(),
            amends: case.id.clone(),
            version,
            force: p.force.to_string(),
            subject: hex::encode(&p.pseudonym),
            source: p.source.to_string(),
            record_ref: hex::encode(&p.record_ref),
            agreeing: kind_names(evidence.agreeing),
            probability: a.probability,
            fields: a.fields(),
            policy_version: policy_version.to_string(),
            reason: reason.to_string(),
        });
        let msg = Disclosure {
            agreeing: evidence.agreeing.iter().map(|k| k as i32).collect(),
            sealed,
            amends: case.id.clone(),
            version,
            probability: a.probability,
            fields: a.fields(),
            ..message(p, b, seq, id, DisclosureType::Amendment, policy_version)
        };
        b.messages.push((p.force.to_string(), msg));
        let case = Case { id: case.id, version, agreeing: evidence.agreeing, probability: a.probability };
        b.commit.active_put.push(active_row(p, &case));
        self.active.insert((p.sid, p.rid), case);
        b.amended += 1;
    }

    /// Queues a retraction of the pair's case.
    pub fn retract(&mut self, b: &mut Batch, p: &Pair<'_>, policy_version: &str, reason: &str) {
        let Some(case) = self.remove(p.sid, p.rid) else { return };
        let (seq, id) = self.next_id(p.force);
        b.entries.push(Entry::Retraction {
            time: b.time.clone(),
            id: id.clone(),
            retracts: case.id.clone(),
            force: p.force.to_string(),
            subject: hex::encode(&p.pseudonym),
            source: p.source.to_string(),
            record_ref: hex::encode(&p.record_ref),
            reason: reason.to_string(),
        });
        let msg =
            Disclosure { retracts: case.id, ..message(p, b, seq, id, DisclosureType::Retraction, policy_version) };
        b.messages.push((p.force.to_string(), msg));
        b.commit.active_del.push((p.force.to_string(), p.pseudonym, p.source.to_string(), p.record_ref));
        b.retracted += 1;
    }
}
