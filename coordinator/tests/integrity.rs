//! Exactly-once batches and cases that follow the senders, under random
//! retries and restarts: the engine and the embedded store, in one process.
//!
//! Random sequences of roster syncs and national feeds (joiners, leavers,
//! rejoiners, changed identities, records fed, changed, withdrawn and fed
//! again, categories changed back and forth) are sent with random retries
//! of the same batch (a lost reply), batches lost before their commit (a
//! crash mid-batch, then the same batch sent again) and restarts. After
//! every run, the coordinator's state and each force's inbox, folded from
//! every disclosure, amendment and retraction it was sent, must equal what
//! a coordinator built afresh from the senders' final state holds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use prost::Message;
use vigil_coordinator::engine::{Applied, BatchIn, Engine, RecordIn, Settings, SubjectIn};
use vigil_coordinator::policy::Policy;
use vigil_coordinator::store::redb::RedbStore;
use vigil_coordinator::store::{Store, StoreRead, StoredToken};
use vigil_proto::KeyKind;
use vigil_proto::tlog::Signer;
use vigil_proto::v1::{Disclosure, DisclosureType, SealedDetails};

const FORCES: [&str; 2] = ["gmp", "wmp"];
const PEOPLE: u8 = 6;

fn settings() -> Settings {
    Settings {
        epoch: 1,
        scheme: 2,
        previous_epoch: None,
        policy: Policy::default_policy(),
        policy_sha256: "p".into(),
        origin: "vigil.test/audit".into(),
        max_roster_size: 1000,
        headcount: Default::default(),
        index_capacity: (0, 0),
        // National scale: a name and date of birth alone do not confirm.
        national_records: 13_000_000,
    }
}

fn signer() -> Signer {
    Signer::from_seed("vigil.test/audit", &[5; 32]).unwrap().0
}

/// The tokens of person `p` as a record or a subject holds them: variant 0
/// is the whole identity (NI number, name and date), variant 1 only a
/// name-and-date token, which confirms nothing on its own.
fn tokens(p: u8, variant: u8) -> Vec<StoredToken> {
    let t = |k: u8| [p.wrapping_mul(16).wrapping_add(k); 16];
    match variant {
        0 => vec![(KeyKind::Nino, t(1)), (KeyKind::NameDob, t(2)), (KeyKind::NameMd, t(3))],
        _ => vec![(KeyKind::NameDob, t(2))],
    }
}

fn sealed(category: u8) -> Vec<u8> {
    SealedDetails {
        epoch: 1,
        nonce: vec![category; 12].into(),
        ciphertext: vec![category; 24].into(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// What a sender means: a subject (force, pseudonym byte) is person p in a
/// variant; a record (reference byte) is person p in a variant with a
/// category.
#[derive(Debug, Clone, Default, PartialEq)]
struct World {
    rosters: BTreeMap<(usize, u8), (u8, u8)>,
    records: BTreeMap<u8, (u8, u8, u8)>,
}

#[derive(Debug, Clone)]
enum Op {
    /// A force's batch: upsert subjects (pseudonym, person, variant), remove pseudonyms.
    Roster(usize, Vec<(u8, u8, u8)>, Vec<u8>),
    /// A source's batch: upsert records (ref, person, variant, category), withdraw refs.
    National(Vec<(u8, u8, u8, u8)>, Vec<u8>),
}

/// How a batch is delivered.
#[derive(Debug, Clone, Copy)]
enum Delivery {
    /// Applied and committed once.
    Once,
    /// Applied, committed, and the reply lost: the same batch is sent again.
    Retried,
    /// Lost before its commit (the process died mid-batch): after a
    /// restart the same batch is sent again.
    LostThenResent,
}

fn op() -> impl Strategy<Value = Op> {
    let subject = (0u8..8, 0..PEOPLE, 0u8..2);
    let record = (0u8..8, 0..PEOPLE, 0u8..2, 1u8..4);
    prop_oneof![
        (0..FORCES.len(), prop::collection::vec(subject, 0..4), prop::collection::vec(0u8..8, 0..3))
            .prop_map(|(f, u, r)| Op::Roster(f, u, r)),
        (prop::collection::vec(record, 0..4), prop::collection::vec(0u8..8, 0..3))
            .prop_map(|(u, r)| Op::National(u, r)),
    ]
}

fn delivery() -> impl Strategy<Value = Delivery> {
    prop_oneof![6 => Just(Delivery::Once), 2 => Just(Delivery::Retried), 2 => Just(Delivery::LostThenResent)]
}

/// A batch holds each reference once: later mentions win, as a sender's
/// diff would produce.
fn dedup<T: Clone>(ups: &[(u8, T)], removes: &[u8]) -> (Vec<(u8, T)>, Vec<u8>) {
    let mut seen = BTreeSet::new();
    let mut u: Vec<(u8, T)> = Vec::new();
    for (r, v) in ups.iter().rev() {
        if seen.insert(*r) {
            u.push((*r, v.clone()));
        }
    }
    let rm: Vec<u8> = removes.iter().copied().filter(|r| seen.insert(*r)).collect();
    (u, rm)
}

fn commitment<T: std::fmt::Debug>(x: &T) -> String {
    format!("{x:?}")
}

enum Batch {
    Roster(usize, BatchIn<SubjectIn>),
    National(BatchIn<RecordIn>),
}

fn apply(e: &mut Engine, store: &RedbStore, b: &Batch, now: i64) -> Applied {
    match b {
        Batch::Roster(f, x) => e.apply_roster(store, FORCES[*f], x.clone(), now).unwrap(),
        Batch::National(x) => e.apply_national(store, "pnc", x.clone(), now).unwrap(),
    }
}

fn load(store: &RedbStore, now: i64) -> Engine {
    let (e, _, c) = Engine::load(store, settings(), signer(), now).unwrap();
    if !c.is_empty() {
        store.commit(&c).unwrap();
    }
    e
}

/// Each force's inbox folded from everything it was sent, in order:
/// (pseudonym byte, record byte) → latest sealed details.
fn inboxes(store: &RedbStore) -> Vec<BTreeMap<(u8, u8), Vec<u8>>> {
    FORCES
        .iter()
        .map(|f| {
            let mut cases: BTreeMap<String, ((u8, u8), Vec<u8>, u32)> = BTreeMap::new();
            for (_, m) in store.pending(f, 0, usize::MAX).unwrap() {
                let d = Disclosure::decode(m.as_slice()).unwrap();
                let pair = (d.subject[0], d.record_ref[0]);
                let details = d.sealed.as_ref().map(Message::encode_to_vec).unwrap_or_default();
                match DisclosureType::try_from(d.r#type).unwrap() {
                    DisclosureType::Disclosure => {
                        assert!(!cases.values().any(|c| c.0 == pair), "a second case for {pair:?} in {f}");
                        cases.insert(d.id.clone(), (pair, details, 1));
                    }
                    DisclosureType::Amendment => {
                        let c = cases.get_mut(&d.amends).expect("an amendment of a case in force");
                        assert_eq!((c.0, c.2 + 1), (pair, d.version));
                        c.1 = details;
                        c.2 = d.version;
                    }
                    DisclosureType::Retraction => {
                        assert_eq!(cases.remove(&d.retracts).expect("a retraction of a case in force").0, pair);
                    }
                    DisclosureType::Unspecified => panic!("unspecified disclosure type"),
                }
            }
            cases.into_values().map(|(pair, details, _)| (pair, details)).collect()
        })
        .collect()
}

/// What the coordinator holds: subjects per force and records, by byte.
fn holdings(store: &RedbStore) -> (BTreeMap<(usize, u8), Vec<StoredToken>>, BTreeMap<u8, (Vec<StoredToken>, Vec<u8>)>) {
    let mut subjects = BTreeMap::new();
    store
        .for_each_subject(&mut |s| {
            let f = FORCES.iter().position(|x| *x == s.force).unwrap();
            subjects.insert((f, s.pseudonym[0]), s.tokens);
        })
        .unwrap();
    let mut refs = Vec::new();
    store.for_each_record(&mut |r| refs.push(r.record_ref)).unwrap();
    let mut records = BTreeMap::new();
    for r in refs {
        let row = store.record("pnc", &r).unwrap().unwrap();
        records.insert(r[0], (row.tokens, row.sealed));
    }
    (subjects, records)
}

/// The reference: a coordinator that receives the senders' final state in
/// one batch each.
fn reference(world: &World) -> (tempfile::TempDir, RedbStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    let mut e = load(&store, 0);
    for (f, force) in FORCES.iter().enumerate() {
        let upserts: Vec<SubjectIn> = world
            .rosters
            .iter()
            .filter(|((ff, _), _)| *ff == f)
            .map(|((_, s), (p, v))| SubjectIn { pseudonym: [*s; 16], tokens: tokens(*p, *v) })
            .collect();
        let b = BatchIn { epoch: 1, sequence: 1, upserts, removes: vec![], commitment: "r".into() };
        if let Applied::Fresh { commit, .. } = e.apply_roster(&store, force, b, 1).unwrap() {
            store.commit(&commit).unwrap();
        }
    }
    let upserts: Vec<RecordIn> = world
        .records
        .iter()
        .map(|(r, (p, v, c))| RecordIn { record_ref: [*r; 16], tokens: tokens(*p, *v), sealed: sealed(*c) })
        .collect();
    let b = BatchIn { epoch: 1, sequence: 1, upserts, removes: vec![], commitment: "n".into() };
    if let Applied::Fresh { commit, .. } = e.apply_national(&store, "pnc", b, 2).unwrap() {
        store.commit(&commit).unwrap();
    }
    (dir, store)
}

fn run(ops: Vec<(Op, Delivery, bool)>) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = RedbStore::open(dir.path()).unwrap();
    let mut e = load(&store, 0);
    let mut world = World::default();
    let mut seq_roster = [0u64; FORCES.len()];
    let mut seq_national = 0u64;
    for (now, (op, delivery, restart_after)) in (1i64..).zip(ops) {
        let batch = match &op {
            Op::Roster(f, ups, rms) => {
                let ups: Vec<(u8, (u8, u8))> = ups.iter().map(|(s, p, v)| (*s, (*p, *v))).collect();
                let (ups, rms) = dedup(&ups, rms);
                for (s, pv) in &ups {
                    world.rosters.insert((*f, *s), *pv);
                }
                for s in &rms {
                    world.rosters.remove(&(*f, *s));
                }
                seq_roster[*f] += 1;
                Batch::Roster(
                    *f,
                    BatchIn {
                        epoch: 1,
                        sequence: seq_roster[*f],
                        commitment: commitment(&(&ups, &rms)),
                        upserts: ups
                            .iter()
                            .map(|(s, (p, v))| SubjectIn { pseudonym: [*s; 16], tokens: tokens(*p, *v) })
                            .collect(),
                        removes: rms.iter().map(|s| [*s; 16]).collect(),
                    },
                )
            }
            Op::National(ups, rms) => {
                let ups: Vec<(u8, (u8, u8, u8))> = ups.iter().map(|(r, p, v, c)| (*r, (*p, *v, *c))).collect();
                let (ups, rms) = dedup(&ups, rms);
                for (r, pvc) in &ups {
                    world.records.insert(*r, *pvc);
                }
                for r in &rms {
                    world.records.remove(r);
                }
                seq_national += 1;
                Batch::National(BatchIn {
                    epoch: 1,
                    sequence: seq_national,
                    commitment: commitment(&(&ups, &rms)),
                    upserts: ups
                        .iter()
                        .map(|(r, (p, v, c))| RecordIn {
                            record_ref: [*r; 16],
                            tokens: tokens(*p, *v),
                            sealed: sealed(*c),
                        })
                        .collect(),
                    removes: rms.iter().map(|r| [*r; 16]).collect(),
                })
            }
        };
        match delivery {
            Delivery::Once => match apply(&mut e, &store, &batch, now) {
                Applied::Fresh { commit, .. } => store.commit(&commit).unwrap(),
                Applied::Replayed(_) => panic!("a first send was taken for a retry"),
            },
            Delivery::Retried => {
                let Applied::Fresh { commit, receipt, .. } = apply(&mut e, &store, &batch, now) else {
                    panic!("a first send was taken for a retry")
                };
                store.commit(&commit).unwrap();
                let Applied::Replayed(again) = apply(&mut e, &store, &batch, now) else {
                    panic!("a retry was applied twice")
                };
                assert!(again.replayed);
                assert_eq!(
                    (again.sequence, again.upserts, again.removes, again.total),
                    (receipt.sequence, receipt.upserts, receipt.removes, receipt.total)
                );
            }
            Delivery::LostThenResent => {
                // Applied in memory, never committed: the process dies.
                let _ = apply(&mut e, &store, &batch, now);
                drop(e);
                drop(store);
                store = RedbStore::open(dir.path()).unwrap();
                e = load(&store, now);
                match apply(&mut e, &store, &batch, now) {
                    Applied::Fresh { commit, .. } => store.commit(&commit).unwrap(),
                    Applied::Replayed(_) => panic!("a batch lost before its commit was taken for applied"),
                }
            }
        }
        if restart_after {
            drop(e);
            drop(store);
            store = RedbStore::open(dir.path()).unwrap();
            e = load(&store, now);
        }
    }
    let (_rdir, want) = reference(&world);
    let (subjects, records) = holdings(&store);
    assert_eq!((subjects, records), holdings(&want), "the coordinator holds what the senders meant");
    let got = inboxes(&store);
    assert_eq!(got, inboxes(&want), "every inbox holds what the senders' final state confirms");
    for (f, inbox) in got.iter().enumerate() {
        for ((s, r), details) in inbox {
            let (p, _) = world.rosters[&(f, *s)];
            let (q, _, c) = world.records[r];
            // Which variants confirm is the policy's business (a record with
            // only a name and date of birth can confirm beside a full one:
            // docs/matching.md); two different people never do.
            assert!(p == q, "{} holds a case for two different people", FORCES[f]);
            assert_eq!(details, &sealed(c), "{} shows stale details", FORCES[f]);
        }
    }
    // A restart rebuilds the same state from the store and the log still
    // matches its signed checkpoint (load checks it).
    drop(e);
    let e = load(&store, 1_000_000);
    for (f, force) in FORCES.iter().enumerate() {
        assert_eq!(e.enrolled(force) as usize, world.rosters.keys().filter(|(ff, _)| *ff == f).count());
    }
    assert_eq!(e.held("pnc") as usize, world.records.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn senders_final_state_is_what_the_coordinator_and_every_inbox_hold(
        ops in prop::collection::vec((op(), delivery(), prop::bool::weighted(0.15)), 1..24)
    ) {
        run(ops);
    }
}

/// The integrity issue's own cases, as one fixed sequence.
#[test]
fn reinstated_records_reverted_categories_and_rejoiners() {
    let o = Delivery::Once;
    run(vec![
        (Op::Roster(0, vec![(1, 1, 0), (2, 2, 0)], vec![]), o, false),
        (Op::National(vec![(10, 1, 0, 1), (20, 2, 0, 1)], vec![]), o, false),
        // withdrawn, then fed again unchanged
        (Op::National(vec![], vec![10]), o, true),
        (Op::National(vec![(10, 1, 0, 1)], vec![]), o, false),
        // category A → B → A
        (Op::National(vec![(20, 2, 0, 2)], vec![]), o, false),
        (Op::National(vec![(20, 2, 0, 1)], vec![]), Delivery::Retried, false),
        // leaves, rejoins, leaves
        (Op::Roster(0, vec![], vec![1]), o, false),
        (Op::Roster(0, vec![(1, 1, 0)], vec![]), Delivery::LostThenResent, false),
        (Op::Roster(0, vec![], vec![1]), o, true),
    ]);
}
