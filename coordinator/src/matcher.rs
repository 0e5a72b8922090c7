//! Blind matching in both directions. Pure: ids, index keys and kind sets in,
//! evidence out.
//!
//! The matcher holds two [`TokenIndex`]es: national tokens → record ids and
//! roster tokens → subject ids (all forces together), and the kinds each
//! record and subject has. A roster batch is probed against every national
//! token ([`Matcher::probe_national`]); a national batch against every
//! enrolled roster ([`Matcher::probe_roster`]). Each probe returns, per
//! agreeing counterpart, the [`Evidence`] the policy needs.
//!
//! Evidence includes how many national records share each agreeing token,
//! so that the policy can weaken values many people hold. The subject's own
//! other records (holding its NI number and every token the pair agrees on)
//! are one person recorded again (several allegations) and are left out
//! (`discount_own`; docs/matching.md).

use vigil_proto::KeyKind;
use vigil_proto::kinds::{ALL, KindSet};

use crate::index::{IndexKey, TokenIndex};
use crate::policy::Evidence;

/// One agreeing counterpart of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Record id (national probe) or subject id (roster probe).
    pub id: u32,
    /// What agrees.
    pub evidence: Evidence,
}

/// The two indexes and the kinds held by each record and subject.
#[derive(Default)]
pub struct Matcher {
    national: TokenIndex,
    roster: TokenIndex,
    record_kinds: Vec<KindSet>,
    subject_kinds: Vec<KindSet>,
    /// National records held.
    records: u32,
    /// The fewest national records the policy's prior is spread over.
    floor: u32,
    /// National records holding each kind (by `KeyKind::index`).
    kind_counts: [u32; ALL.len()],
    /// Each subject's NI-number token, to recognise the subject's own
    /// records when a record arrives.
    subject_nino: Vec<Option<IndexKey>>,
    space: Scratch,
    holders: Vec<u32>,
    holders_next: Vec<u32>,
}

/// Working space for a probe, reused from one probe to the next.
#[derive(Default)]
pub struct Scratch {
    agreements: Vec<Agreement>,
    ranges: Vec<std::ops::Range<usize>>,
}

/// One agreeing token of a probe: (counterpart id, kind index, national
/// records holding the token, the token's position in the probe).
type Agreement = (u32, u8, u32, u16);

fn kinds_of(tokens: &[(KeyKind, IndexKey)]) -> KindSet {
    tokens.iter().map(|(k, _)| *k).collect()
}

fn set_nino(table: &mut Vec<Option<IndexKey>>, id: u32, key: Option<IndexKey>) {
    let i = id as usize;
    if table.len() <= i {
        table.resize(i + 1, None);
    }
    table[i] = key;
}

fn set_kinds(table: &mut Vec<KindSet>, id: u32, kinds: KindSet) {
    let i = id as usize;
    if table.len() <= i {
        table.resize(i + 1, KindSet::EMPTY);
    }
    table[i] = kinds;
}

impl Matcher {
    /// A matcher sized for the given numbers of national and roster tokens.
    pub fn with_capacity(national_tokens: usize, roster_tokens: usize) -> Matcher {
        Matcher {
            national: TokenIndex::with_capacity(national_tokens),
            roster: TokenIndex::with_capacity(roster_tokens),
            ..Default::default()
        }
    }

    /// Number of national tokens indexed.
    pub fn national_tokens(&self) -> usize {
        self.national.len()
    }

    /// Number of roster tokens indexed.
    pub fn roster_tokens(&self) -> usize {
        self.roster.len()
    }

    /// National records held.
    pub fn records(&self) -> u32 {
        self.records
    }

    /// Sets the fewest national records evidence reports (the size of the
    /// full national data, so that pairs decided while it is still loading
    /// are judged as they will be once it is in).
    pub fn set_records_floor(&mut self, floor: u32) {
        self.floor = floor;
    }

    /// The national records evidence reports: those held, or the floor.
    pub fn population(&self) -> u32 {
        self.records.max(self.floor)
    }

    /// National records holding a kind.
    pub fn records_with(&self, k: KeyKind) -> u32 {
        self.kind_counts[k.index()]
    }

    /// Bytes held by the indexes and kind tables.
    pub fn memory_bytes(&self) -> usize {
        self.national.memory_bytes()
            + self.roster.memory_bytes()
            + (self.record_kinds.capacity() + self.subject_kinds.capacity()) * std::mem::size_of::<KindSet>()
    }

    /// Bytes held for the national side alone.
    pub fn national_memory_bytes(&self) -> usize {
        self.national.memory_bytes() + self.record_kinds.capacity() * std::mem::size_of::<KindSet>()
    }

    /// Indexes a national record's tokens.
    pub fn add_record(&mut self, id: u32, tokens: &[(KeyKind, IndexKey)]) {
        self.national.reserve(tokens.len());
        self.national.warm(tokens.iter().map(|(_, k)| k));
        for (_, key) in tokens {
            self.national.insert(*key, id);
        }
        let kinds = kinds_of(tokens);
        for k in kinds.iter() {
            self.kind_counts[k.index()] += 1;
        }
        self.records += 1;
        set_kinds(&mut self.record_kinds, id, kinds);
    }

    /// Removes a national record's tokens (the ones it was added with).
    pub fn remove_record(&mut self, id: u32, tokens: &[(KeyKind, IndexKey)]) {
        for (_, key) in tokens {
            self.national.remove(*key, id);
        }
        if let Some(kinds) = self.record_kinds.get(id as usize).copied() {
            for k in kinds.iter() {
                self.kind_counts[k.index()] = self.kind_counts[k.index()].saturating_sub(1);
            }
        }
        self.records = self.records.saturating_sub(1);
        set_kinds(&mut self.record_kinds, id, KindSet::EMPTY);
    }

    /// Indexes a roster subject's tokens.
    pub fn add_subject(&mut self, id: u32, tokens: &[(KeyKind, IndexKey)]) {
        self.roster.reserve(tokens.len());
        self.roster.warm(tokens.iter().map(|(_, k)| k));
        for (_, key) in tokens {
            self.roster.insert(*key, id);
        }
        set_kinds(&mut self.subject_kinds, id, kinds_of(tokens));
        set_nino(&mut self.subject_nino, id, tokens.iter().find(|(k, _)| *k == KeyKind::Nino).map(|(_, key)| *key));
    }

    /// Removes a roster subject's tokens (the ones it was added with).
    pub fn remove_subject(&mut self, id: u32, tokens: &[(KeyKind, IndexKey)]) {
        for (_, key) in tokens {
            self.roster.remove(*key, id);
        }
        set_kinds(&mut self.subject_kinds, id, KindSet::EMPTY);
        set_nino(&mut self.subject_nino, id, None);
    }

    /// National records agreeing with a subject's (or an applicant's) tokens.
    pub fn probe_national(&mut self, tokens: &[(KeyKind, IndexKey)], out: &mut Vec<Hit>) {
        let mut space = std::mem::take(&mut self.space);
        self.probe_national_with(tokens, out, &mut space);
        self.space = space;
    }

    /// [`Matcher::probe_national`] with the caller's scratch space, so that
    /// several threads can probe at once.
    pub fn probe_national_with(&self, tokens: &[(KeyKind, IndexKey)], out: &mut Vec<Hit>, space: &mut Scratch) {
        let scratch = &mut space.agreements;
        scratch.clear();
        self.national.warm(tokens.iter().map(|(_, k)| k));
        for (pos, (kind, key)) in tokens.iter().enumerate() {
            let start = scratch.len();
            let pos = position(pos);
            let n = self.national.for_each(*key, |rid| scratch.push((rid, kind.index() as u8, 0, pos)));
            for s in &mut scratch[start..] {
                s.2 = n;
            }
        }
        let subject_kinds = kinds_of(tokens);
        let ranges = &mut space.ranges;
        group(scratch, ranges, out, |rid| Evidence {
            agreeing: KindSet::EMPTY,
            shares: [u32::MAX; ALL.len()],
            subject_kinds,
            record_kinds: self.record_kinds.get(rid as usize).copied().unwrap_or_default(),
            records: self.population(),
        });
        // The subject's own other records are the hits that agree on its NI
        // number and on every token this pair agrees on.
        for i in 0..out.len() {
            if needs_own(&out[i].evidence) {
                let mine = &scratch[ranges[i].clone()];
                let own = (0..out.len())
                    .filter(|&j| {
                        j != i
                            && out[j].evidence.agreeing.contains(KeyKind::Nino)
                            && holds_all(&scratch[ranges[j].clone()], mine)
                    })
                    .count() as u32;
                discount_own(&mut out[i].evidence, own);
            }
        }
    }

    /// Subjects agreeing with a national record's tokens. The record should
    /// already be added, so that share counts include it.
    pub fn probe_roster(&mut self, tokens: &[(KeyKind, IndexKey)], out: &mut Vec<Hit>) {
        let mut scratch = std::mem::take(&mut self.space.agreements);
        scratch.clear();
        self.roster.warm(tokens.iter().map(|(_, k)| k));
        for (pos, (kind, key)) in tokens.iter().enumerate() {
            let start = scratch.len();
            let pos = position(pos);
            self.roster.for_each(*key, |sid| scratch.push((sid, kind.index() as u8, 0, pos)));
            if scratch.len() > start {
                let n = self.national.count(*key).max(1);
                for s in &mut scratch[start..] {
                    s.2 = n;
                }
            }
        }
        let record_kinds = kinds_of(tokens);
        let mut ranges = std::mem::take(&mut self.space.ranges);
        group(&mut scratch, &mut ranges, out, |sid| Evidence {
            agreeing: KindSet::EMPTY,
            shares: [u32::MAX; ALL.len()],
            subject_kinds: self.subject_kinds.get(sid as usize).copied().unwrap_or_default(),
            record_kinds,
            records: self.population(),
        });
        for i in 0..out.len() {
            if needs_own(&out[i].evidence)
                && let Some(nino) = self.subject_nino.get(out[i].id as usize).copied().flatten()
            {
                let mut keys: Vec<IndexKey> =
                    scratch[ranges[i].clone()].iter().map(|a| tokens[usize::from(a.3)].1).collect();
                keys.push(nino);
                let holders = self.holders_of_all(&keys);
                // This record is among them when it holds the NI number too.
                let own = holders.saturating_sub(u32::from(out[i].evidence.agreeing.contains(KeyKind::Nino)));
                discount_own(&mut out[i].evidence, own);
            }
        }
        self.space = Scratch { agreements: scratch, ranges };
    }

    /// How many national records hold every one of `keys`.
    fn holders_of_all(&mut self, keys: &[IndexKey]) -> u32 {
        let (mut have, mut next) = (std::mem::take(&mut self.holders), std::mem::take(&mut self.holders_next));
        have.clear();
        if let Some(first) = keys.first() {
            self.national.for_each(*first, |rid| have.push(rid));
            have.sort_unstable();
            have.dedup();
        }
        for key in keys.iter().skip(1) {
            if have.is_empty() {
                break;
            }
            next.clear();
            self.national.for_each(*key, |rid| next.push(rid));
            next.sort_unstable();
            have.retain(|r| next.binary_search(r).is_ok());
        }
        let n = have.len() as u32;
        (self.holders, self.holders_next) = (have, next);
        n
    }
}

/// A token's position in a probe (records and subjects hold at most a few
/// hundred tokens: the coordinator's `max_tokens_per_item`).
fn position(pos: usize) -> u16 {
    u16::try_from(pos).unwrap_or(u16::MAX)
}

/// Whether the subject's own other records may be weakening this pair: the
/// subject has an NI number, the pair agrees on a kind with both names or
/// a name and the postcode (an identity, not just a number or one name and
/// a date), and every agreeing token is shared.
fn needs_own(e: &Evidence) -> bool {
    e.subject_kinds.contains(KeyKind::Nino)
        && e.agreeing.iter().any(|k| {
            !matches!(
                k,
                KeyKind::Nino
                    | KeyKind::NinoHeadYob
                    | KeyKind::NinoTailYob
                    | KeyKind::ForenameDob
                    | KeyKind::SurnameDob
                    | KeyKind::InitialsDob
                    | KeyKind::InitialsPostcode
                    | KeyKind::BirthdayPostcode
            )
        })
        && e.agreeing.iter().all(|k| e.shares[k.index()] > 1)
}

/// Whether the agreements `other` include every token position in `mine`
/// (both sorted by position).
fn holds_all(other: &[Agreement], mine: &[Agreement]) -> bool {
    let mut o = other.iter().map(|a| a.3).peekable();
    mine.iter().all(|m| {
        while o.next_if(|p| *p < m.3).is_some() {}
        o.next_if_eq(&m.3).is_some()
    })
}

/// Leaves out of the shares the `own` other national records of this
/// subject (they hold its NI number and every token this pair agrees on):
/// several allegations about one officer are one person recorded again, not
/// different people sharing common values, and must not weaken each other.
fn discount_own(e: &mut Evidence, own: u32) {
    for k in e.agreeing.iter() {
        let s = &mut e.shares[k.index()];
        *s = s.saturating_sub(own).max(1);
    }
}

/// Groups agreements by id into hits; fills `ranges` with, for each hit,
/// the range of `scratch` holding its agreements (sorted by token position).
fn group(
    scratch: &mut [Agreement],
    ranges: &mut Vec<std::ops::Range<usize>>,
    out: &mut Vec<Hit>,
    fresh: impl Fn(u32) -> Evidence,
) {
    out.clear();
    ranges.clear();
    scratch.sort_unstable_by_key(|s| (s.0, s.3));
    for (i, &(id, kind, share, _)) in scratch.iter().enumerate() {
        if out.last().is_none_or(|h| h.id != id) {
            out.push(Hit { id, evidence: fresh(id) });
            ranges.push(i..i);
        }
        if let Some(r) = ranges.last_mut() {
            r.end = i + 1;
        }
        if let Some(h) = out.last_mut() {
            let k = ALL[kind as usize];
            h.evidence.agreeing.insert(k);
            let slot = &mut h.evidence.shares[kind as usize];
            *slot = (*slot).min(share);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: u32) -> IndexKey {
        IndexKey::from_bytes(blake3::hash(&n.to_le_bytes()).as_bytes())
    }

    #[test]
    fn matches_both_ways_with_shares_and_kinds() {
        let mut m = Matcher::default();
        // record 1: nino 100, name 200; record 2: name 200 (shared), other 300
        m.add_record(1, &[(KeyKind::Nino, k(100)), (KeyKind::NameDob, k(200))]);
        m.add_record(2, &[(KeyKind::NameDob, k(200)), (KeyKind::NameMd, k(300))]);
        let subject = [(KeyKind::Nino, k(100)), (KeyKind::NameDob, k(200)), (KeyKind::NameDistrict, k(400))];
        let mut hits = Vec::new();
        m.probe_national(&subject, &mut hits);
        assert_eq!(hits.len(), 2);
        let h1 = hits[0];
        assert_eq!(h1.id, 1);
        assert!(h1.evidence.agreeing.contains(KeyKind::Nino) && h1.evidence.agreeing.contains(KeyKind::NameDob));
        assert_eq!(h1.evidence.shares[KeyKind::NameDob.index()], 2);
        assert_eq!(h1.evidence.shares[KeyKind::Nino.index()], 1);
        assert!(h1.evidence.subject_kinds.contains(KeyKind::NameDistrict));
        assert!(!h1.evidence.record_kinds.contains(KeyKind::NameDistrict));
        let h2 = hits[1];
        assert_eq!(h2.evidence.agreeing.len(), 1);
        assert!(h2.evidence.record_kinds.contains(KeyKind::NameMd));

        // the other way round: enrol the subject, probe a record
        m.add_subject(7, &subject);
        let rec = [(KeyKind::Nino, k(100)), (KeyKind::NameDob, k(200))];
        m.probe_roster(&rec, &mut hits);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].id, 7);
        assert_eq!(hits[0].evidence.shares[KeyKind::NameDob.index()], 2);
        assert_eq!(hits[0].evidence, {
            let mut e = h1.evidence;
            e.record_kinds = [KeyKind::Nino, KeyKind::NameDob].into_iter().collect();
            e
        });

        // removal
        m.remove_subject(7, &subject);
        m.probe_roster(&rec, &mut hits);
        assert!(hits.is_empty());
        m.remove_record(2, &[(KeyKind::NameDob, k(200)), (KeyKind::NameMd, k(300))]);
        m.probe_national(&subject, &mut hits);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].evidence.shares[KeyKind::NameDob.index()], 1);
    }
}
