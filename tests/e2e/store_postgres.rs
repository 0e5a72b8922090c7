//! The PostgreSQL store against a real PostgreSQL (a private cluster per
//! test): its migrations, the store contract the engine relies on (the same
//! as the embedded store's), and the coordinator refusing a database whose
//! schema is not its own. The crash test (`crash.rs`) runs the whole system
//! on it.

use std::process::Command;
use std::time::Duration;

use vigil_coordinator::store::postgres::{self, PgSettings, PgStore};
use vigil_coordinator::store::{
    ActiveRow, Commit, DisclosureRow, Lease, RecordRow, SenderState, Store, StoreRead, SubjectRow,
};
use vigil_proto::KeyKind;
use vigil_proto::kinds::KindSet;
use vigil_tests::pg::Postgres;
use vigil_tests::{World, bin, ok, run, wait_until};

use crate::common::{active_pairs, expected, synth_set};

fn settings(pg: &Postgres) -> PgSettings {
    PgSettings {
        host: "127.0.0.1".into(),
        port: pg.port(),
        dbname: "vigil".into(),
        user: "vigil".into(),
        password_file: None,
        tls_ca: None,
        connect_timeout: Duration::from_secs(10),
    }
}

#[test]
fn the_coordinator_needs_the_schema_migrated_and_migrating_twice_is_harmless() {
    let pg = Postgres::start();
    let w = World::new();
    w.write_coordinator_config(&pg.store_section());
    let serve = run(Command::new(bin("vigil-coordinator")).args(["serve", "--config"]).arg(&w.coordinator_config));
    let err = String::from_utf8_lossy(&serve.stderr);
    assert!(!serve.status.success());
    assert!(err.contains("schema version 0") && err.contains("vigil-coordinator migrate"), "{err}");

    let migrate =
        || ok(run(Command::new(bin("vigil-coordinator")).args(["migrate", "--config"]).arg(&w.coordinator_config)));
    let first = migrate();
    assert!(
        first.contains("applied migration 1: initial schema")
            && first.contains("applied migration 2: the active coordinator's lease")
            && first.contains("schema version 2"),
        "{first}"
    );
    let again = migrate();
    assert!(again.contains("nothing to apply"), "{again}");
    assert_eq!(pg.psql("SELECT version FROM vigil_schema ORDER BY version").trim(), "1\n2");

    // check-config reaches the database too.
    let check =
        ok(run(Command::new(bin("vigil-coordinator")).args(["check-config", "--config"]).arg(&w.coordinator_config)));
    assert!(check.contains("schema version 2"), "{check}");

    // A database from a newer coordinator is refused, naming both versions.
    pg.psql("INSERT INTO vigil_schema (version, name) VALUES (99, 'from the future')");
    let serve = run(Command::new(bin("vigil-coordinator")).args(["serve", "--config"]).arg(&w.coordinator_config));
    let err = String::from_utf8_lossy(&serve.stderr);
    assert!(!serve.status.success() && err.contains("schema version 99") && err.contains("newer"), "{err}");
}

#[test]
fn the_postgres_store_keeps_the_store_contract() {
    let pg = Postgres::start();
    let s = settings(&pg);
    assert!(PgStore::open(&s).is_err(), "an empty database is not a store");
    assert_eq!(postgres::migrate(&s).unwrap(), vec![(1, "initial schema"), (2, "the active coordinator's lease")]);
    let store = PgStore::open(&s).unwrap();
    let e = store.commit(&Commit::default()).unwrap_err();
    assert!(e.to_string().contains("does not hold the lease"), "only the lease holder writes: {e}");
    assert_eq!(store.take_lease("test").unwrap(), Lease::Held(1));
    // Enough records that they go by COPY.
    let records: Vec<RecordRow> = (0..200u8)
        .map(|i| RecordRow {
            source: "pnc".into(),
            record_ref: [i; 16],
            tokens: vec![(KeyKind::NameDob, [i; 16]), (KeyKind::Nino, [i ^ 1; 16])],
            sealed: vec![i, i],
        })
        .collect();
    let c = Commit {
        subjects_put: vec![SubjectRow {
            force: "gmp".into(),
            pseudonym: [1; 16],
            tokens: vec![(KeyKind::Nino, [9; 16])],
        }],
        records_put: records,
        batches: vec![SenderState {
            caller: "force/gmp".into(),
            sequence: 1,
            commitment: "c1".into(),
            receipt: vec![1, 2],
        }],
        disclosures: vec![
            DisclosureRow { force: "gmp".into(), seq: 1, message: vec![7] },
            DisclosureRow { force: "gmp".into(), seq: 2, message: vec![8] },
        ],
        active_put: vec![ActiveRow {
            force: "gmp".into(),
            pseudonym: [1; 16],
            source: "pnc".into(),
            record_ref: [2; 16],
            disclosure_id: "gmp-1".into(),
            version: 2,
            agreeing: KindSet(0b101),
            probability: 0.995,
        }],
        log: vec![(0, b"e0".to_vec()), (1, b"e1".to_vec())],
        checkpoint: Some((2, "cp".into())),
        meta: vec![("epoch".into(), vec![1])],
        ..Default::default()
    };
    store.commit(&c).unwrap();
    drop(store);

    // Everything committed is there after reopening.
    let store = PgStore::open(&s).unwrap();
    assert_eq!(store.take_lease("test").unwrap(), Lease::Held(2));
    assert_eq!(store.subject("gmp", &[1; 16]).unwrap().unwrap(), vec![(KeyKind::Nino, [9; 16])]);
    assert_eq!(store.record("pnc", &[2; 16]).unwrap().unwrap().sealed, vec![2, 2]);
    let mut n = 0;
    store
        .for_each_record(&mut |r| {
            assert!(r.sealed.is_empty(), "loading records does not read their sealed details");
            n += 1;
        })
        .unwrap();
    assert_eq!(n, 200);
    // A changed record replaces the old one; a removed one is gone; one
    // named twice in a batch keeps the last.
    let change =
        |sealed: u8| RecordRow { source: "pnc".into(), record_ref: [2; 16], tokens: vec![], sealed: vec![sealed] };
    store
        .commit(&Commit {
            records_put: vec![change(5), change(6)],
            records_del: vec![("pnc".into(), [3; 16])],
            ..Default::default()
        })
        .unwrap();
    let mut n = 0;
    store.for_each_record(&mut |_| n += 1).unwrap();
    assert_eq!((n, store.record("pnc", &[2; 16]).unwrap().unwrap().sealed), (199, vec![6]));
    assert!(store.record("pnc", &[3; 16]).unwrap().is_none());
    let sender = store.sender("force/gmp").unwrap().unwrap();
    assert_eq!((sender.sequence, sender.commitment.as_str(), sender.receipt), (1, "c1", vec![1, 2]));
    assert_eq!(store.sender("force/wmp").unwrap(), None);
    assert_eq!(store.meta("epoch").unwrap(), Some(vec![1]));

    // Delivery: pending pages, acknowledgements, counts, sequences.
    assert_eq!(store.pending("gmp", 0, 10).unwrap(), vec![(1, vec![7]), (2, vec![8])]);
    assert_eq!(store.pending("gmp", 1, 10).unwrap(), vec![(2, vec![8])]);
    assert_eq!(store.pending("gmp", 0, 1).unwrap(), vec![(1, vec![7])]);
    assert_eq!(store.acknowledge("gmp", &[1, 1, 9]).unwrap(), 1);
    store.flush().unwrap();
    assert_eq!(store.pending_count("gmp").unwrap(), 1);
    assert_eq!(store.last_sequences().unwrap(), vec![("gmp".into(), 2)]);
    let mut active = Vec::new();
    store.for_each_active(&mut |a| active.push(a)).unwrap();
    assert_eq!(
        (active[0].disclosure_id.as_str(), active[0].version, active[0].agreeing, active[0].probability),
        ("gmp-1", 2, KindSet(0b101), 0.995)
    );
    assert_eq!(store.log_entries(0, 5).unwrap(), vec![b"e0".to_vec(), b"e1".to_vec()]);
    let mut entries = Vec::new();
    store.for_each_log_entry(&mut |i, e| entries.push((i, e.to_vec()))).unwrap();
    assert_eq!(entries, vec![(0, b"e0".to_vec()), (1, b"e1".to_vec())]);
    assert_eq!(store.latest_checkpoint().unwrap(), Some((2, "cp".into())));

    // A log entry that does not follow the log is refused, and nothing of
    // that commit is applied.
    let bad = Commit {
        subjects_del: vec![("gmp".into(), [1; 16])],
        disclosures: vec![DisclosureRow { force: "gmp".into(), seq: 3, message: vec![9] }],
        log: vec![(5, b"gap".to_vec())],
        ..Default::default()
    };
    let e = store.commit(&bad).unwrap_err();
    assert!(e.to_string().contains("does not follow"), "{e}");
    assert!(store.subject("gmp", &[1; 16]).unwrap().is_some());
    assert_eq!(store.pending_count("gmp").unwrap(), 1);
    // ... and the store goes on working after the refused commit.
    store.commit(&Commit { log: vec![(2, b"e2".to_vec())], ..Default::default() }).unwrap();
    assert_eq!(store.log_entries(2, 3).unwrap(), vec![b"e2".to_vec()]);

    // Shredding an epoch's parity drops its tokens, and the subjects and
    // records left with none.
    store
        .commit(&Commit {
            subjects_put: vec![SubjectRow {
                force: "gmp".into(),
                pseudonym: [4; 16],
                tokens: vec![(KeyKind::Nino, [8; 16]), (KeyKind::NameDob, [9; 16])],
            }],
            ..Default::default()
        })
        .unwrap();
    store.commit(&Commit { shred_parity: Some(1), ..Default::default() }).unwrap();
    assert_eq!(store.subject("gmp", &[1; 16]).unwrap(), None, "only odd tokens: removed");
    assert_eq!(store.subject("gmp", &[4; 16]).unwrap().unwrap(), vec![(KeyKind::Nino, [8; 16])]);
    // record i held tokens [i] and [i ^ 1]: one of them odd
    assert_eq!(store.record("pnc", &[10; 16]).unwrap().unwrap().tokens, vec![(KeyKind::NameDob, [10; 16])]);
    assert_eq!(store.record("pnc", &[11; 16]).unwrap().unwrap().tokens, vec![(KeyKind::Nino, [10; 16])]);
}

/// Two coordinators' stores on one database: one lease holder at a time,
/// the other told who holds it; and a holder that lost its lease without
/// noticing (its session cut, another took over) cannot write: the
/// generation in `vigil_lease` fences it.
#[test]
fn one_lease_holder_writes_and_a_fenced_one_cannot() {
    let pg = Postgres::start();
    let s = settings(&pg);
    postgres::migrate(&s).unwrap();
    let (a, b) = (PgStore::open(&s).unwrap(), PgStore::open(&s).unwrap());
    assert_eq!(a.take_lease("a").unwrap(), Lease::Held(1));
    assert_eq!(b.take_lease("b").unwrap(), Lease::Elsewhere("a".into()));
    assert!(a.holds_lease() && !b.holds_lease());
    assert!(b.commit(&Commit::default()).is_err(), "the standby writes nothing");
    a.commit(&Commit { meta: vec![("k".into(), vec![1])], ..Default::default() }).unwrap();

    // Releasing hands over at once.
    a.release_lease();
    assert_eq!(b.take_lease("b").unwrap(), Lease::Held(2));
    assert!(a.commit(&Commit::default()).is_err());
    assert_eq!(a.take_lease("a").unwrap(), Lease::Elsewhere("b".into()));

    // The database ends b's lease session (as when b's machine vanishes);
    // a takes over; b, not having checked, tries to commit: fenced.
    pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'vigil-coordinator-lease' AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)");
    assert!(wait_until(Duration::from_secs(10), || a.take_lease("a").unwrap() == Lease::Held(3)));
    let e = b.commit(&Commit { meta: vec![("k".into(), vec![2])], ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("another coordinator took the lease"), "{e}");
    assert!(!b.holds_lease());
    assert_eq!(a.meta("k").unwrap(), Some(vec![1]), "the fenced commit wrote nothing");
    a.commit(&Commit { meta: vec![("k".into(), vec![3])], ..Default::default() }).unwrap();
    assert_eq!(b.meta("k").unwrap(), Some(vec![3]));
}

/// One force's synthetic data and the disclosures it should receive.
struct Data {
    force: String,
    roster: std::path::PathBuf,
    extract: std::path::PathBuf,
    expect: std::collections::BTreeSet<crate::common::Pair>,
}

/// A private PostgreSQL cluster, migrated, with a coordinator running on it
/// and one force's synthetic data.
fn running_on_postgres(seed: u64, staff: usize, national: usize) -> (Postgres, World, Data, vigil_tests::Coordinator) {
    let pg = Postgres::start();
    let mut w = World::new();
    let dir = w.path().join("synth");
    let s = synth_set(&dir, seed, 1, staff, national);
    let force = s.forces[0].clone();
    let expect = expected(&dir, &s.forces, &["extract.csv"]).remove(&force).unwrap_or_default();
    w.write_coordinator_config(&pg.store_section());
    ok(run(Command::new(bin("vigil-coordinator")).args(["migrate", "--config"]).arg(&w.coordinator_config)));
    let coordinator = w.start_coordinator();
    let data =
        Data { roster: dir.join(format!("roster-{force}.csv")), extract: dir.join("extract.csv"), force, expect };
    (pg, w, data, coordinator)
}

/// The database restarts under a running coordinator (every connection
/// cut, as in a failover): the coordinator connects again by itself, a
/// feed interrupted by it is refused whole and runs again safely, and every
/// disclosure reaches the force once.
#[test]
fn the_coordinator_carries_on_when_the_database_restarts() {
    let (pg, w, data, coordinator) = running_on_postgres(3, 400, 4000);
    let (force, expect) = (&data.force, &data.expect);
    let (node, pnc) = (w.node("force", force), w.node("source", "pnc"));
    ok(node.run(&["sync", "--roster", data.roster.to_str().unwrap()]));
    let watcher = node.watch();

    pg.restart();
    let extract = &data.extract;
    let feed = pnc.run(&["feed", "--extract", extract.to_str().unwrap()]);
    if !feed.status.success() {
        // The batch that met the cut connection was refused whole.
        let err = String::from_utf8_lossy(&feed.stderr);
        assert!(err.contains("running the same feed again is safe"), "{err}");
        ok(pnc.run(&["feed", "--extract", extract.to_str().unwrap()]));
    }
    let converged = wait_until(Duration::from_secs(60), || &active_pairs(&node.inbox()) == expect);
    assert!(converged, "inbox did not converge after the database restarted; watch log:\n{}", watcher.log_text());
    assert_eq!(node.inbox().len(), expect.len(), "a disclosure was duplicated");
    assert!(coordinator.log_text().contains("connecting again"), "{}", coordinator.log_text());
    watcher.stop();
    coordinator.stop();
}

/// The database goes down under a running coordinator: calls that need it
/// fail, health says NOT_SERVING (so an orchestrator or a node can tell),
/// and once the database is back the coordinator serves again by itself;
/// nothing is lost.
#[test]
fn the_coordinator_reports_not_serving_while_the_database_is_down_and_recovers() {
    let (pg, w, data, coordinator) = running_on_postgres(4, 300, 3000);
    let (force, expect) = (&data.force, &data.expect);
    let (node, pnc, auditor) = (w.node("force", force), w.node("source", "pnc"), w.node("auditor", "ico"));
    ok(node.run(&["sync", "--roster", data.roster.to_str().unwrap()]));

    pg.stop();
    let extract = &data.extract;
    let feed = pnc.run(&["feed", "--extract", extract.to_str().unwrap()]);
    assert!(!feed.status.success(), "a feed cannot be applied with the database down");
    let not_serving = wait_until(Duration::from_secs(30), || !auditor.run(&["health"]).status.success());
    assert!(not_serving, "health should say NOT_SERVING; log:\n{}", coordinator.log_text());

    pg.start_again();
    ok(auditor.run(&["health", "--wait", "60"]));
    ok(pnc.run(&["feed", "--extract", extract.to_str().unwrap()]));
    let watcher = node.watch();
    let converged = wait_until(Duration::from_secs(60), || &active_pairs(&node.inbox()) == expect);
    assert!(converged, "inbox did not converge after the database came back; watch log:\n{}", watcher.log_text());
    // With the database gone the lease went too: the coordinator stepped
    // down, and took the lease again once the database was back.
    let log = coordinator.log_text();
    assert!(log.contains("stepping down") && log.contains("took over"), "{log}");
    // Torn down by dropping (killed): a clean SIGTERM exit is asserted by
    // the other tests; once in a full parallel run here, one of the two
    // exited non-zero after SIGTERM, not reproduced since (issue 13 note).
    drop(watcher);
    drop(coordinator);
}
