//! Active and standby coordinators sharing one PostgreSQL database (a
//! private cluster started for the test). The active one is killed with
//! SIGKILL mid-feed, then (after it comes back as the standby) the other is
//! killed mid-delivery: each time the standby takes over, nodes given both
//! addresses move to it by themselves, retried batches apply once, the
//! force's inbox ends equal to the generator's truth with no duplicate, and
//! an auditor's stored checkpoint is consistent with the log the new active
//! coordinator serves (no fork, no gap).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use vigil_proto::v1::StatusRequest;
use vigil_proto::v1::feed_service_client::FeedServiceClient;
use vigil_tests::pg::Postgres;
use vigil_tests::{Coordinator, Node, World, bin, free_port, ok, plain_health, run, wait_until};

use crate::common::{assert_inbox_converges, expected, synth_set};

/// National records held by whichever coordinator is active.
fn records_held(w: &World, addrs: &[SocketAddr]) -> Option<u64> {
    let id = w.client_identity("source", "pnc");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        for a in addrs {
            let Ok(ch) = vigil_tests::channel_to(a, w.path(), Some((&id.0, &id.1))).await else { continue };
            if let Ok(r) = FeedServiceClient::new(ch).status(StatusRequest {}).await {
                return Some(r.into_inner().total);
            }
        }
        None
    })
}

/// Points a node at both coordinators, and lets it retry for `retry` s.
fn use_both(node: &Node, addrs: &[SocketAddr], retry: u64) {
    let text = std::fs::read_to_string(&node.config).unwrap();
    let list: Vec<String> = addrs.iter().map(|a| format!("\"https://{a}\"")).collect();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("coordinator = ") {
                format!("coordinator = [{}]", list.join(", "))
            } else if l.starts_with("retry_seconds = ") {
                format!("retry_seconds = {retry}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&node.config, text).unwrap();
}

/// Waits until a coordinator's health listener says `serving`.
fn wait_health(c: &Coordinator, health: &SocketAddr, serving: bool, what: &str) {
    let ok = wait_until(Duration::from_secs(60), || plain_health(health) == Some(serving));
    assert!(
        ok,
        "{what}: health never said {}; log:\n{}",
        if serving { "SERVING" } else { "NOT_SERVING" },
        c.log_text()
    );
}

#[test]
fn the_standby_takes_over_when_the_active_coordinator_is_killed() {
    let pg = Postgres::start();
    let mut w = World::new();
    let data = w.path().join("synth");
    let s = synth_set(&data, 12, 1, 600, 10_000);
    let force = s.forces[0].clone();
    let want = expected(&data, &s.forces, &["extract.csv"]);
    let expect = &want[&force];

    // Coordinator a, active; coordinator b, the same keys and database.
    let (health_a, health_b): (SocketAddr, SocketAddr) =
        (([127, 0, 0, 1], free_port()).into(), ([127, 0, 0, 1], free_port()).into());
    w.write_coordinator_config(&format!("{}[health]\nlisten = \"{health_a}\"\n", pg.store_section()));
    ok(run(Command::new(bin("vigil-coordinator")).args(["migrate", "--config"]).arg(&w.coordinator_config)));
    let a = w.start_coordinator();
    let b_config: PathBuf = w.coordinator_config.with_file_name("coordinator-b.toml");
    let a_text = std::fs::read_to_string(&w.coordinator_config).unwrap();
    std::fs::write(
        &b_config,
        a_text
            .replace(&format!("listen = \"{}\"", a.addr), "listen = \"127.0.0.1:0\"")
            .replace(&health_a.to_string(), &health_b.to_string())
            .replace("data_dir = \"data\"", "data_dir = \"data-b\""),
    )
    .unwrap();
    let b = w.start_another_coordinator(&b_config);
    wait_health(&b, &health_b, false, "the standby");
    assert!(b.log_text().contains("standby: another coordinator holds the lease"), "{}", b.log_text());
    let addrs = [a.addr, b.addr];
    let a_config = w.coordinator_config.clone();

    let (node, pnc, auditor) = (w.node("force", &force), w.node("source", "pnc"), w.node("auditor", "ico"));
    for n in [&node, &pnc, &auditor] {
        use_both(n, &addrs, 90);
    }
    ok(node.run(&["sync", "--roster", data.join(format!("roster-{force}.csv")).to_str().unwrap()]));
    ok(auditor.run(&["audit", "verify"]));

    // Mid-feed: 10,000 records in batches of 200; a is killed once some
    // are in. The feed rides through: its retries reach b once b took over.
    let feed = pnc
        .cmd(&["feed", "--extract", data.join("extract.csv").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = 0;
    assert!(wait_until(Duration::from_secs(60), || {
        seen = records_held(&w, &addrs).unwrap_or(0);
        seen >= 2000
    }));
    a.kill9();
    println!("killed the active coordinator with {seen} of 10000 records in");
    wait_health(&b, &health_b, true, "the standby taking over");
    let out = feed.wait_with_output().unwrap();
    assert!(out.status.success(), "the feed should complete through b: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(records_held(&w, &addrs), Some(10_000), "every record once, none lost");
    assert!(b.log_text().contains("took over"), "{}", b.log_text());
    // The log b serves extends what the auditor verified before.
    ok(auditor.run(&["audit", "verify"]));

    // a comes back: now the standby.
    let a = w.start_another_coordinator(&a_config);
    wait_health(&a, &health_a, false, "the restarted coordinator");

    // Mid-delivery: b is killed while the inbox fills; a takes over and the
    // watcher reconnects to it by itself.
    assert!(expect.len() >= 20, "need enough disclosures to interrupt: {}", expect.len());
    let watcher = node.watch();
    assert!(wait_until(Duration::from_secs(60), || !node.inbox().is_empty()));
    b.kill9();
    println!("killed the active coordinator with {} of {} disclosures in the inbox", node.inbox().len(), expect.len());
    wait_health(&a, &health_a, true, "the standby taking over again");
    assert_inbox_converges(&node, &watcher, expect, "after the takeover");
    ok(auditor.run(&["audit", "verify"]));
    ok(node.run(&["audit", "verify"]));

    // The database's log is whole: indexes from 0 with no gap, and the
    // last checkpoint covers all of it.
    let counts = pg.psql("SELECT count(*), coalesce(max(idx) + 1, 0) FROM log");
    let (n, next) = counts.trim().split_once('|').unwrap();
    assert_eq!(n, next, "the log has a gap: {counts}");
    assert_eq!(pg.psql("SELECT max(size) FROM checkpoints").trim(), n);
    assert_eq!(pg.psql("SELECT generation FROM vigil_lease").trim(), "3", "taken three times: a, b, a");
    watcher.stop();
    a.stop();
}
