//! The engine's unit tests, against the in-memory store.

use super::*;
use crate::policy::Policy;
use crate::store::Store;
use crate::store::memory::MemoryStore;
use vigil_proto::KeyKind;
use vigil_proto::tlog::{Signer, leaf_hash, verify_inclusion};
use vigil_proto::v1::{Disclosure, DisclosureType};

/// Settings for tests: epoch 1, scheme 2, the default policy.
pub(crate) fn settings() -> Settings {
    Settings {
        epoch: 1,
        scheme: 2,
        previous_epoch: None,
        policy: Policy::default_policy(),
        policy_sha256: "p1".into(),
        origin: "vigil.test/audit".into(),
        max_roster_size: 100,
        headcount: Default::default(),
        index_capacity: (64, 64),
        national_records: 0,
    }
}

fn signer() -> Signer {
    Signer::from_seed("vigil.test/audit", &[3; 32]).unwrap().0
}

fn t(n: u8) -> [u8; 16] {
    [n; 16]
}

/// Tokens of a person `p`: NINO and name/date kinds all agree.
fn person(p: u8) -> Vec<StoredToken> {
    vec![(KeyKind::Nino, t(p)), (KeyKind::NameDob, t(p.wrapping_add(100))), (KeyKind::NameMd, t(p.wrapping_add(200)))]
}

fn commit(store: &MemoryStore, a: Applied) -> BatchReceipt {
    match a {
        Applied::Fresh { receipt, commit, .. } => {
            store.commit(&commit).unwrap();
            receipt
        }
        Applied::Replayed(r) => r,
    }
}

/// A commitment that differs whenever the content does.
fn commitment<T: std::fmt::Debug>(upserts: &T, removes: &[u8]) -> String {
    format!("{upserts:?}{removes:?}")
}

fn roster(seq: u64, upserts: Vec<(u8, Vec<StoredToken>)>, removes: Vec<u8>) -> BatchIn<SubjectIn> {
    BatchIn {
        epoch: 1,
        sequence: seq,
        commitment: commitment(&upserts, &removes),
        upserts: upserts.into_iter().map(|(p, tokens)| SubjectIn { pseudonym: [p; 16], tokens }).collect(),
        removes: removes.into_iter().map(|p| [p; 16]).collect(),
    }
}

fn national_with(seq: u64, upserts: Vec<(u8, Vec<StoredToken>, Vec<u8>)>, removes: Vec<u8>) -> BatchIn<RecordIn> {
    BatchIn {
        epoch: 1,
        sequence: seq,
        commitment: commitment(&upserts, &removes),
        upserts: upserts
            .into_iter()
            .map(|(r, tokens, sealed)| RecordIn { record_ref: [r; 16], tokens, sealed })
            .collect(),
        removes: removes.into_iter().map(|r| [r; 16]).collect(),
    }
}

fn national(seq: u64, upserts: Vec<(u8, Vec<StoredToken>)>, removes: Vec<u8>) -> BatchIn<RecordIn> {
    national_with(seq, upserts.into_iter().map(|(r, t)| (r, t, vec![])).collect(), removes)
}

fn pending(store: &MemoryStore, force: &str) -> Vec<Disclosure> {
    store.pending(force, 0, 1000).unwrap().into_iter().map(|(_, m)| Disclosure::decode(m.as_slice()).unwrap()).collect()
}

fn fresh() -> (MemoryStore, Engine) {
    let store = MemoryStore::new();
    let (e, _, c) = Engine::load(&store, settings(), signer(), 0).unwrap();
    store.commit(&c).unwrap();
    (store, e)
}

fn sealed(category: u8) -> Vec<u8> {
    SealedDetails {
        epoch: 1,
        nonce: vec![category; 12].into(),
        ciphertext: vec![category; 20].into(),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn continuous_matching_disclosures_retractions_and_restart() {
    let (store, mut e) = fresh();

    // Two forces enrol; person 1 works for gmp, person 2 for wmp.
    let r = commit(
        &store,
        e.apply_roster(&store, "gmp", roster(1, vec![(1, person(1)), (3, person(3))], vec![]), 1).unwrap(),
    );
    assert_eq!((r.upserts, r.total, r.replayed, r.sequence), (2, 2, false, 1));
    commit(&store, e.apply_roster(&store, "wmp", roster(1, vec![(2, person(2))], vec![]), 2).unwrap());
    // The national feed names persons 1 and 2, and someone else.
    let first = national(1, vec![(10, person(1)), (20, person(2)), (30, person(9))], vec![]);
    let a = e.apply_national(&store, "pnc", first.clone(), 3).unwrap();
    let Applied::Fresh { ref forces, .. } = a else { panic!() };
    assert_eq!(forces, &vec!["gmp".to_string(), "wmp".to_string()]);
    commit(&store, a);
    // The store remembers how many tokens the indexes hold, to size them
    // at the next start: 9 national (3 records x 3), 9 roster.
    let sizes = store.meta("index_tokens").unwrap().unwrap();
    assert_eq!(sizes, [9u64.to_be_bytes(), 9u64.to_be_bytes()].concat());
    let gmp = pending(&store, "gmp");
    assert_eq!(gmp.len(), 1);
    assert_eq!((gmp[0].subject.as_ref(), gmp[0].version), (&[1; 16][..], 1));
    assert_eq!(gmp[0].record_ref.as_ref(), &[10; 16]);
    assert_eq!(pending(&store, "wmp")[0].record_ref.as_ref(), &[20; 16]);

    // A retry of batch 1 (same sequence, same content) changes nothing
    // and gets the first receipt back.
    let r = commit(&store, e.apply_national(&store, "pnc", first, 4).unwrap());
    assert!(r.replayed);
    assert_eq!((r.upserts, r.total), (3, 3));
    assert_eq!(pending(&store, "gmp").len(), 1);
    // The same sequence with other content, or a gap, is refused.
    let other = national(1, vec![(40, person(3))], vec![]);
    assert!(matches!(e.apply_national(&store, "pnc", other, 4), Err(EngineError::Sequence(_))));
    let gap = national(3, vec![(40, person(3))], vec![]);
    assert!(matches!(e.apply_national(&store, "pnc", gap, 4), Err(EngineError::Sequence(_))));

    // Re-sending an unchanged record in a later batch changes nothing:
    // no retraction, no second disclosure.
    let a = e.apply_national(&store, "pnc", national(2, vec![(10, person(1))], vec![]), 4).unwrap();
    let Applied::Fresh { commit: c, .. } = a else { panic!() };
    assert!(c.disclosures.is_empty() && c.records_put.is_empty());
    store.commit(&c).unwrap();

    // A delta naming person 3 reaches gmp only.
    commit(&store, e.apply_national(&store, "pnc", national(3, vec![(40, person(3))], vec![]), 5).unwrap());
    assert_eq!(pending(&store, "gmp").len(), 2);
    assert_eq!(pending(&store, "wmp").len(), 1);

    // A leaver: person 1 leaves gmp, the disclosure is retracted.
    let r = commit(&store, e.apply_roster(&store, "gmp", roster(2, vec![], vec![1, 99]), 6).unwrap());
    assert_eq!((r.removes, r.removes_unknown, r.total), (1, 1, 1));
    let g = pending(&store, "gmp");
    assert_eq!(g.len(), 3);
    assert_eq!(g[2].r#type, DisclosureType::Retraction as i32);
    assert_eq!(g[2].retracts, g[0].id);
    // Withdrawing record 20 retracts wmp's disclosure.
    commit(&store, e.apply_national(&store, "pnc", national(4, vec![], vec![20]), 7).unwrap());
    assert_eq!(pending(&store, "wmp").len(), 2);

    // Every disclosure's entry is in the log, and the log matches its checkpoint.
    let (_, view, c) = Engine::load(&store, settings(), signer(), 8).unwrap();
    assert!(c.is_empty(), "restart with the same policy and epoch appends nothing");
    let root = view.tree.root(view.tree.size()).unwrap();
    for d in pending(&store, "gmp") {
        let a = d.audit.unwrap();
        let proof = view.tree.inclusion_proof(a.leaf_index, view.tree.size()).unwrap();
        verify_inclusion(&leaf_hash(&a.entry), a.leaf_index, view.tree.size(), &proof, &root).unwrap();
        let entry = Entry::parse(&a.entry).unwrap();
        assert!(matches!(entry, Entry::Disclosure { .. } | Entry::Retraction { .. }));
    }
    // After a restart the engine knows what is in force and which
    // sequence comes next: re-sending person 3 unchanged discloses
    // nothing new.
    let (mut e2, _, _) = Engine::load(&store, settings(), signer(), 9).unwrap();
    assert_eq!(Engine::last_sequence(&store, "force/gmp").unwrap(), 2);
    let a = e2.apply_roster(&store, "gmp", roster(3, vec![(3, person(3))], vec![]), 10).unwrap();
    let Applied::Fresh { commit: c, .. } = a else { panic!() };
    assert!(c.disclosures.is_empty());
}

/// The cases the integrity issue found: the same content sent again in
/// a later batch is applied again. A withdrawn record fed again is
/// disclosed again; a leaver who rejoins and leaves again is gone; a
/// category changed A → B → A amends the case twice and ends at A.
#[test]
fn the_same_content_sent_again_later_is_applied() {
    let (store, mut e) = fresh();
    commit(&store, e.apply_roster(&store, "gmp", roster(1, vec![(1, person(1))], vec![]), 1).unwrap());
    let feed = |seq| national_with(seq, vec![(10, person(1), sealed(1))], vec![]);
    commit(&store, e.apply_national(&store, "pnc", feed(1), 2).unwrap());
    commit(&store, e.apply_national(&store, "pnc", national(2, vec![], vec![10]), 3).unwrap());
    let r = commit(&store, e.apply_national(&store, "pnc", feed(3), 4).unwrap());
    assert!(!r.replayed);
    assert_eq!(r.total, 1, "the re-instated record is held again");
    let g = pending(&store, "gmp");
    let types: Vec<i32> = g.iter().map(|d| d.r#type).collect();
    let (d, x) = (DisclosureType::Disclosure as i32, DisclosureType::Retraction as i32);
    assert_eq!(types, vec![d, x, d], "disclosed, retracted, disclosed again");
    assert_ne!(g[0].id, g[2].id);

    // A → B → A: two amendments of the same case, versions 2 and 3.
    let change = |seq, cat| national_with(seq, vec![(10, person(1), sealed(cat))], vec![]);
    commit(&store, e.apply_national(&store, "pnc", change(4, 2), 5).unwrap());
    commit(&store, e.apply_national(&store, "pnc", change(5, 1), 6).unwrap());
    let g = pending(&store, "gmp");
    let amendments: Vec<&Disclosure> = g.iter().filter(|d| d.r#type == DisclosureType::Amendment as i32).collect();
    assert_eq!(amendments.len(), 2);
    assert!(amendments.iter().all(|a| a.amends == g[2].id));
    assert_eq!(amendments.iter().map(|a| a.version).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(amendments[1].sealed.as_ref().unwrap().encode_to_vec(), sealed(1));
    assert_eq!(store.record("pnc", &[10; 16]).unwrap().unwrap().sealed, sealed(1));
    let mut active = Vec::new();
    store.for_each_active(&mut |a| active.push(a)).unwrap();
    assert_eq!((active.len(), active[0].version, active[0].disclosure_id.clone()), (1, 3, g[2].id.clone()));

    // Leave, rejoin, leave: enrolled 0, and the rejoiner's case is
    // retracted again.
    commit(&store, e.apply_roster(&store, "gmp", roster(2, vec![], vec![1]), 7).unwrap());
    commit(&store, e.apply_roster(&store, "gmp", roster(3, vec![(1, person(1))], vec![]), 8).unwrap());
    let r = commit(&store, e.apply_roster(&store, "gmp", roster(4, vec![], vec![1]), 9).unwrap());
    assert_eq!((r.removes, r.total, r.replayed), (1, 0, false));
    assert_eq!(e.enrolled("gmp"), 0);
    let mut active = Vec::new();
    store.for_each_active(&mut |a| active.push(a)).unwrap();
    assert!(active.is_empty());
}

#[test]
fn limits_and_inconsistent_batches_change_nothing() {
    let store = MemoryStore::new();
    let mut s = settings();
    s.max_roster_size = 2;
    let (mut e, _, c) = Engine::load(&store, s, signer(), 0).unwrap();
    store.commit(&c).unwrap();
    let err = e.apply_roster(&store, "gmp", roster(1, vec![(1, person(1)), (2, person(2)), (3, person(3))], vec![]), 1);
    assert!(matches!(err, Err(EngineError::Limit(_))));
    let err = e.apply_roster(&store, "gmp", roster(1, vec![(1, person(1)), (1, person(1))], vec![]), 1);
    assert!(matches!(err, Err(EngineError::Invalid(_))));
    let err = e.apply_roster(&store, "gmp", roster(1, vec![(1, person(1))], vec![1]), 1);
    assert!(matches!(err, Err(EngineError::Invalid(_))));
    assert_eq!(e.enrolled("gmp"), 0);
    assert_eq!(Engine::last_sequence(&store, "force/gmp").unwrap(), 0);
}

#[test]
fn refuses_a_store_signed_with_another_key_or_origin() {
    let store = MemoryStore::new();
    let (_, _, c) = Engine::load(&store, settings(), signer(), 0).unwrap();
    store.commit(&c).unwrap();
    let other = Signer::from_seed("vigil.test/audit", &[4; 32]).unwrap().0;
    assert!(matches!(Engine::load(&store, settings(), other, 1), Err(EngineError::Integrity(_))));
    let mut s = settings();
    s.origin = "elsewhere/audit".into();
    assert!(matches!(Engine::load(&store, s, signer(), 1), Err(EngineError::Integrity(_))));
}

#[test]
fn checks_return_confirmed_matches_and_keep_no_tokens() {
    let (store, mut e) = fresh();
    commit(&store, e.apply_national(&store, "pnc", national(1, vec![(10, person(1))], vec![]), 1).unwrap());
    let (nat, ros) = e.token_counts();
    let checked = e
        .check(
            &store,
            "gmp",
            CheckMeta { request_id: "00ff".into(), purpose: "case 1".into(), commitment: "c".into() },
            vec![
                ApplicantIn { applicant: vec![1], tokens: person(1) },
                ApplicantIn { applicant: vec![2], tokens: person(2) },
            ],
            2,
        )
        .unwrap();
    assert_eq!(checked.matches.len(), 1);
    assert_eq!(checked.matches[0].applicant.as_ref(), &[1]);
    assert_eq!(e.token_counts(), (nat, ros), "applicant tokens are not kept");
    assert!(checked.commit.subjects_put.is_empty() && checked.commit.disclosures.is_empty());
    let entry = Entry::parse(&checked.commit.log[0].1).unwrap();
    assert!(matches!(entry, Entry::Check { applicants: 2, confirmed: 1, .. }));
}

/// The features of one (subject, record) pair among `records` national records.
fn features_of(subject: &[StoredToken], record: &[StoredToken], records: u32) -> crate::policy::Features {
    let mut m = crate::matcher::Matcher::with_capacity(4, 4);
    m.set_records_floor(records);
    m.add_record(0, &keys(record));
    let mut hits = Vec::new();
    m.probe_national(&keys(subject), &mut hits);
    crate::policy::features(&hits[0].evidence).1
}

/// A subject's candidates in one source are decided together. Where nearly
/// every subject has one record there and seldom two, a lone moderate
/// candidate confirms (pair by pair it would not), and when a near-certain
/// record of the same subject arrives, the weaker one is explained away and
/// retracted in the open.
#[test]
fn a_stronger_record_explains_away_a_weaker_one() {
    let store = MemoryStore::new();
    let mut s = settings();
    s.national_records = 1_000_000;
    s.policy.matches_per_subject = 1.0;
    s.policy.subject_has_record = 0.99;
    s.policy.further_record = 0.001;
    // A threshold the weak pair alone falls short of.
    s.policy.confirm = 0.99;
    let (mut e, _, c) = Engine::load(&store, s.clone(), signer(), 0).unwrap();
    store.commit(&c).unwrap();
    commit(&store, e.apply_roster(&store, "gmp", roster(1, vec![(1, person(1))], vec![]), 1).unwrap());
    // Names, month and day only: pair by pair about 0.98, short of 0.99.
    let weak = vec![(KeyKind::NameMd, t(201))];
    let x = features_of(&person(1), &weak, 1_000_000);
    assert!(s.policy.probability(&x) < s.policy.confirm, "pair by pair it does not confirm");
    commit(&store, e.apply_national(&store, "pnc", national(1, vec![(40, weak)], vec![]), 2).unwrap());
    let g = pending(&store, "gmp");
    assert_eq!(g.len(), 1, "the subject surely has a record, and this is the only candidate");
    assert_eq!(g[0].record_ref.as_ref(), &[40; 16]);
    commit(&store, e.apply_national(&store, "pnc", national(2, vec![(41, person(1))], vec![]), 3).unwrap());
    let g = pending(&store, "gmp");
    assert_eq!(g.len(), 3, "{g:?}");
    assert_eq!((g[1].r#type, g[1].record_ref.as_ref()), (DisclosureType::Retraction as i32, &[40; 16][..]));
    assert_eq!((g[2].r#type, g[2].record_ref.as_ref()), (DisclosureType::Disclosure as i32, &[41; 16][..]));
}

/// The record's side: where nearly every national record belongs to an
/// enrolled subject, a moderate candidate whose record no one else claims
/// confirms (the subject's side alone does not confirm it). When a subject
/// in another force claims the record just as strongly, the pair is
/// retracted in the open, and disclosed again when that subject leaves.
#[test]
fn a_record_no_one_else_claims_confirms_in_a_dense_source_until_someone_does() {
    let store = MemoryStore::new();
    let mut s = settings();
    s.national_records = 1_000_000;
    s.policy.matches_per_subject = 1.0;
    s.policy.subject_has_record = 0.5;
    s.policy.further_record = 0.001;
    s.policy.record_has_subject = 0.97;
    // A threshold the subject's side alone falls short of.
    s.policy.confirm = 0.99;
    let (mut e, _, c) = Engine::load(&store, s.clone(), signer(), 0).unwrap();
    store.commit(&c).unwrap();
    commit(&store, e.apply_roster(&store, "gmp", roster(1, vec![(1, person(1))], vec![]), 1).unwrap());
    // Names, month and day only.
    let weak = vec![(KeyKind::NameMd, t(201))];
    let x = features_of(&person(1), &weak, 1_000_000);
    let subject_side =
        crate::policy::subject::posterior(&[s.policy.log_weight(&x)], 1_000_000.0, s.policy.subject_prior()).each[0];
    assert!(subject_side > 0.9 && subject_side < 0.99, "the subject's side alone: {subject_side}");
    commit(&store, e.apply_national(&store, "pnc", national(1, vec![(40, weak)], vec![]), 2).unwrap());
    let g = pending(&store, "gmp");
    assert_eq!(g.len(), 1, "no one else claims the record");
    assert!(g[0].probability >= 0.99, "{}", g[0].probability);

    // Someone in another force holds the same names, month and day.
    let other = vec![(KeyKind::Nino, t(2)), (KeyKind::NameMd, t(201))];
    commit(&store, e.apply_roster(&store, "wmp", roster(1, vec![(2, other)], vec![]), 3).unwrap());
    let g = pending(&store, "gmp");
    assert_eq!(g.len(), 2, "{g:?}");
    assert_eq!((g[1].r#type, g[1].record_ref.as_ref()), (DisclosureType::Retraction as i32, &[40; 16][..]));
    assert!(pending(&store, "wmp").is_empty(), "neither subject is the record's more surely");

    // They leave: the record is unclaimed again.
    commit(&store, e.apply_roster(&store, "wmp", roster(2, vec![], vec![2]), 4).unwrap());
    let g = pending(&store, "gmp");
    assert_eq!(g.len(), 3, "{g:?}");
    assert_eq!((g[2].r#type, g[2].record_ref.as_ref()), (DisclosureType::Disclosure as i32, &[40; 16][..]));
}

/// Tokens of `epoch`: other values than another epoch's (another key made
/// them), and the epoch's parity in the last bit (as the pepper sets it).
fn in_epoch(tokens: Vec<StoredToken>, epoch: u32) -> Vec<StoredToken> {
    tokens
        .into_iter()
        .map(|(k, mut t)| {
            t[0] ^= (epoch as u8) << 4;
            t[15] = (t[15] & !1) | (epoch & 1) as u8;
            (k, t)
        })
        .collect()
}

fn reload(store: &MemoryStore, epoch: u32, previous: Option<u32>) -> Result<Engine, EngineError> {
    let s = Settings { epoch, previous_epoch: previous, ..settings() };
    let (e, _, c) = Engine::load(store, s, signer(), 100)?;
    store.commit(&c).unwrap();
    Ok(e)
}

fn epoch_entries(store: &MemoryStore) -> Vec<Entry> {
    let mut out = Vec::new();
    store
        .for_each_log_entry(&mut |_, b| {
            if let Ok(e @ Entry::Epoch { .. }) = Entry::parse(b) {
                out.push(e);
            }
        })
        .unwrap();
    out
}

#[test]
fn parties_move_to_a_new_epoch_while_matching_goes_on_then_the_old_tokens_are_dropped() {
    let (store, mut e) = fresh();
    let mut r1 = roster(1, vec![(1, in_epoch(person(1), 1)), (3, in_epoch(person(3), 1))], vec![]);
    r1.epoch = 1;
    commit(&store, e.apply_roster(&store, "gmp", r1, 1).unwrap());
    let n1 = national(1, vec![(10, in_epoch(person(1), 1)), (30, in_epoch(person(3), 1))], vec![]);
    commit(&store, e.apply_national(&store, "pnc", n1, 2).unwrap());
    assert_eq!(pending(&store, "gmp").len(), 2);

    // Epoch 2, with epoch 1 still served while parties move.
    let mut e = reload(&store, 2, Some(1)).unwrap();
    assert!(matches!(
        epoch_entries(&store).last(),
        Some(Entry::Epoch { epoch: 2, previous: Some(1), shredded: None, .. })
    ));
    // The force moves: each subject now holds tokens of both epochs, and
    // its cases stand (tokens of epoch 2 agree with nothing yet).
    let mut r2 = roster(2, vec![(1, in_epoch(person(1), 2)), (3, in_epoch(person(3), 2))], vec![]);
    r2.epoch = 2;
    commit(&store, e.apply_roster(&store, "gmp", r2, 3).unwrap());
    assert_eq!(store.subject("gmp", &[1; 16]).unwrap().unwrap().len(), 6);
    let retracted =
        |s: &MemoryStore| pending(s, "gmp").iter().filter(|d| d.r#type == DisclosureType::Retraction as i32).count();
    assert_eq!(retracted(&store), 0);
    // A source still in epoch 1 is still matched: a new record of person 1.
    let mut late = national(2, vec![(11, in_epoch(person(1), 1))], vec![]);
    late.epoch = 1;
    commit(&store, e.apply_national(&store, "pnc", late, 4).unwrap());
    assert_eq!(pending(&store, "gmp").len(), 3, "matching goes on in the old epoch");
    // The source moves, re-sending records 10 and 11 but not 30.
    let mut n2 = national(3, vec![(10, in_epoch(person(1), 2)), (11, in_epoch(person(1), 2))], vec![]);
    n2.epoch = 2;
    commit(&store, e.apply_national(&store, "pnc", n2, 5).unwrap());
    assert_eq!(retracted(&store), 0);

    // Epochs advance one at a time.
    assert!(matches!(reload(&store, 4, None), Err(EngineError::Integrity(_))));
    // Every party has moved: the next start drops epoch 1's tokens. Record
    // 30 was not re-sent, so it goes, and its case is retracted in the open.
    let _e = reload(&store, 2, None).unwrap();
    let last = epoch_entries(&store).pop().unwrap();
    assert!(
        matches!(
            last,
            Entry::Epoch {
                epoch: 2,
                previous: None,
                shredded: Some(1),
                dropped_subjects: 0,
                dropped_records: 1,
                retractions: 1,
                ..
            }
        ),
        "{last:?}"
    );
    let g = pending(&store, "gmp");
    let r = g.iter().find(|d| d.r#type == DisclosureType::Retraction as i32).unwrap();
    assert_eq!(r.record_ref.as_ref(), &[30; 16][..]);
    let mut reasons = Vec::new();
    store
        .for_each_log_entry(&mut |_, b| {
            if let Ok(Entry::Retraction { reason, .. }) = Entry::parse(b) {
                reasons.push(reason);
            }
        })
        .unwrap();
    assert_eq!(reasons, vec!["epoch_changed".to_string()]);
    assert!(store.record("pnc", &[30; 16]).unwrap().is_none());
    for p in [10u8, 11] {
        let toks = store.record("pnc", &[p; 16]).unwrap().unwrap().tokens;
        assert!(toks.iter().all(|(_, t)| crate::pepper::parity(t) == 0), "only epoch 2's tokens are left");
    }
    assert!(store.subject("gmp", &[3; 16]).unwrap().unwrap().len() == 3);
    // A start after that changes nothing more.
    let before = epoch_entries(&store).len();
    let _e = reload(&store, 2, None).unwrap();
    assert_eq!(epoch_entries(&store).len(), before);
}

#[test]
fn a_retry_of_either_of_the_last_two_batches_is_answered_with_its_receipt() {
    // Two batches in flight, both applied, both replies lost: the node
    // retries both, in either order.
    let (store, mut e) = fresh();
    commit(&store, e.apply_roster(&store, "gmp", roster(1, vec![(1, person(1))], vec![]), 1).unwrap());
    let one = national(1, vec![(10, person(1)), (30, person(9))], vec![]);
    let two = national(2, vec![(20, person(2))], vec![]);
    let r1 = commit(&store, e.apply_national(&store, "pnc", one.clone(), 2).unwrap());
    let r2 = commit(&store, e.apply_national(&store, "pnc", two.clone(), 3).unwrap());
    let again = commit(&store, e.apply_national(&store, "pnc", one.clone(), 4).unwrap());
    assert!(again.replayed);
    assert_eq!((again.sequence, again.upserts, again.total), (r1.sequence, r1.upserts, r1.total));
    let again = commit(&store, e.apply_national(&store, "pnc", two, 4).unwrap());
    assert!(again.replayed);
    assert_eq!((again.sequence, again.upserts, again.total), (r2.sequence, r2.upserts, r2.total));
    // Batch 1 with other content is still refused, and once batch 3 is in,
    // batch 1 is too old to be a retry.
    let other = national(1, vec![(40, person(3))], vec![]);
    assert!(matches!(e.apply_national(&store, "pnc", other, 5), Err(EngineError::Sequence(_))));
    commit(&store, e.apply_national(&store, "pnc", national(3, vec![(50, person(5))], vec![]), 5).unwrap());
    assert!(matches!(e.apply_national(&store, "pnc", one, 6), Err(EngineError::Sequence(_))));
    assert_eq!(pending(&store, "gmp").len(), 1, "nothing was applied twice");
}

/// Subjects re-decided together are assessed on several threads; the
/// assessments are the same, in the same order, as on one.
#[test]
fn subjects_assessed_on_several_threads_read_as_on_one() {
    let key = |n: u32| crate::index::IndexKey::from_bytes(blake3::hash(&n.to_le_bytes()).as_bytes());
    let kinds = [KeyKind::Nino, KeyKind::NameDob, KeyKind::NameMd, KeyKind::NameYob, KeyKind::ForenameDob];
    let mut matcher = Matcher::default();
    let mut registry = Registry::default();
    // 2,000 records in two sources; record r holds token r % m of kind m,
    // so that subjects share tokens with many records, some with all.
    for r in 0..2000u32 {
        let mut rref = [0u8; 16];
        rref[..4].copy_from_slice(&r.to_le_bytes());
        let rid = registry.add_record(if r % 3 == 0 { "pnd" } else { "pnc" }, rref);
        let toks: Vec<_> =
            kinds.iter().enumerate().map(|(m, k)| (*k, key(m as u32 * 100_000 + r % (7 + 40 * m as u32)))).collect();
        matcher.add_record(rid, &toks);
    }
    let work: Vec<(u32, Vec<(KeyKind, crate::index::IndexKey)>)> = (0..300u32)
        .map(|s| {
            (
                s,
                kinds
                    .iter()
                    .enumerate()
                    .map(|(m, k)| (*k, key(m as u32 * 100_000 + s % (7 + 40 * m as u32))))
                    .collect(),
            )
        })
        .collect();
    let policy = Policy::default_policy();
    let one = assess_subjects(&matcher, &registry, &policy, &work, 1);
    let three = assess_subjects(&matcher, &registry, &policy, &work, 3);
    assert!(one.iter().map(|(h, _)| h.len()).sum::<usize>() > 10_000, "subjects have many candidates");
    assert_eq!(one.len(), work.len());
    assert_eq!(one, three);
}
