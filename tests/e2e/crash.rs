//! Crash safety: `kill -9` of the coordinator mid-feed and mid-delivery,
//! then a restart. Nothing acknowledged is lost and nothing is duplicated.
//! In token scheme 3 (the key service makes the tokens), as deployed, on the
//! embedded store and on PostgreSQL (a private cluster started for the
//! test).

use std::process::Stdio;
use std::time::Duration;
use vigil_proto::v1::StatusRequest;
use vigil_proto::v1::feed_service_client::FeedServiceClient;
use vigil_tests::pg::Postgres;
use vigil_tests::{World, bin, ok, run, wait_until};

use crate::common::{assert_inbox_converges, expected, synth_set};

fn records_at_coordinator(w: &World) -> Option<u64> {
    let id = w.client_identity("source", "pnc");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let ch = w.channel(Some((&id.0, &id.1)), None).await.ok()?;
        FeedServiceClient::new(ch).status(StatusRequest {}).await.ok().map(|r| r.into_inner().total)
    })
}

#[test]
fn kill_9_mid_feed_and_mid_delivery_loses_and_duplicates_nothing() {
    kill_9_scenario(None);
}

#[test]
fn kill_9_with_the_postgres_store_loses_and_duplicates_nothing() {
    let pg = Postgres::start();
    kill_9_scenario(Some(&pg));
    // What the coordinator committed is in the database, and its log is
    // whole: leaf indexes from 0 with no gap, and a checkpoint over all of it.
    let counts = pg.psql("SELECT count(*), coalesce(max(idx) + 1, 0) FROM log");
    let (n, next) = counts.trim().split_once('|').unwrap();
    assert_eq!(n, next, "the log has a gap: {counts}");
    let signed = pg.psql("SELECT max(size) FROM checkpoints");
    assert_eq!(signed.trim(), n, "the last checkpoint does not cover the whole log");
}

fn kill_9_scenario(pg: Option<&Postgres>) {
    let mut w = World::new();
    let data = w.path().join("synth");
    let s = synth_set(&data, 9, 1, 600, 10_000);
    let force = s.forces[0].clone();
    let want = expected(&data, &s.forces, &["extract.csv"]);
    let _ks = w.start_keyserver(&format!(
        "[quota]\nevaluations_per_subject = 64\nheadcount_multiple = 1.0\n[headcount]\n{force} = 600\n\
         [sources]\npnc = {}\n",
        2 * 10_000 * 64
    ));
    if let Some(pg) = pg {
        w.write_coordinator_config(&pg.store_section());
        let out = ok(run(std::process::Command::new(bin("vigil-coordinator"))
            .args(["migrate", "--config"])
            .arg(&w.coordinator_config)));
        assert!(out.contains("applied migration 1"), "{out}");
    }
    let coordinator = w.start_coordinator();
    let node = w.node("force", &force);
    let pnc = w.node("source", "pnc");
    ok(node.run(&["sync", "--roster", data.join(format!("roster-{force}.csv")).to_str().unwrap()]));

    // Mid-feed: 10,000 records in batches of 200; kill the coordinator once
    // some batches are in.
    let feed_err = w.path().join("feed.err");
    let mut feed = pnc
        .cmd(&["feed", "--extract", data.join("extract.csv").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&feed_err).unwrap())
        .spawn()
        .unwrap();
    let mut seen = 0;
    assert!(wait_until(Duration::from_secs(60), || {
        seen = records_at_coordinator(&w).unwrap_or(0);
        seen >= 1000
    }));
    coordinator.kill9();
    println!("killed mid-feed with {seen} of 10000 records acknowledged");
    let interrupted = wait_until(Duration::from_secs(30), || feed.try_wait().unwrap().is_some());
    assert!(interrupted, "the feed should give up once the coordinator is gone");
    let status = feed.wait().unwrap();

    // Restart: everything the coordinator acknowledged is still there.
    let coordinator = w.start_coordinator();
    let held = records_at_coordinator(&w).unwrap();
    assert!(held >= seen, "acknowledged batches were lost: {held} records after restart, {seen} before");
    if !status.success() {
        assert!(held < 10_000);
        // The stop says what was applied, and that running again is safe.
        let err = std::fs::read_to_string(&feed_err).unwrap();
        assert_eq!(status.code(), Some(69), "{err}");
        assert!(err.contains("batches were applied") && err.contains("running the same feed again is safe"), "{err}");
    }
    // The source node itself killed mid-feed: batches the coordinator
    // acknowledged but the node had not yet recorded locally (it records
    // several at a time) are sent again by the next run and taken as
    // unchanged.
    let mut refeed = pnc
        .cmd(&["feed", "--extract", data.join("extract.csv").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let before = held;
    let progressed = wait_until(Duration::from_secs(60), || {
        records_at_coordinator(&w).unwrap_or(0) >= (before + 600).min(10_000) || refeed.try_wait().unwrap().is_some()
    });
    assert!(progressed, "the second feed made no progress");
    refeed.kill().ok();
    refeed.wait().unwrap();
    println!("source node killed with {:?} records at the coordinator", records_at_coordinator(&w));
    // Feeding again completes the load; already-applied batches are not re-sent.
    let out = ok(pnc.run(&["feed", "--extract", data.join("extract.csv").to_str().unwrap()]));
    assert_eq!(records_at_coordinator(&w), Some(10_000), "{out}");

    // Mid-delivery: start the watcher, kill the coordinator while the inbox
    // is filling, restart; the watcher reconnects by itself.
    let expect = &want[&force];
    assert!(expect.len() >= 20, "need enough disclosures to interrupt: {}", expect.len());
    let watcher = node.watch();
    assert!(wait_until(Duration::from_secs(60), || !node.inbox().is_empty()));
    coordinator.kill9();
    println!("killed with {} of {} disclosures in the inbox", node.inbox().len(), expect.len());
    let coordinator = w.start_coordinator();
    assert_inbox_converges(&node, &watcher, expect, "after restart");
    watcher.stop();
    coordinator.stop();
}
