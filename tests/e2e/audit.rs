//! The transparency log end to end: invariants after every step, the
//! reports, the export verified independently, no personal data anywhere
//! on the coordinator's side, and a split view stopping a node.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use vigil_proto::audit::Entry;
use vigil_tests::{Node, World, ok, wait_until};

use crate::common::{active_pairs, expected, synth_set};

/// Exports the log with the auditor and checks it independently: the root
/// of entries.jsonl equals the signed checkpoint's. Returns the entries.
fn export_and_check(auditor: &Node, dir: &Path) -> Vec<Entry> {
    ok(auditor.run(&["audit", "export", dir.to_str().unwrap()]));
    let note = std::fs::read_to_string(dir.join("checkpoint")).unwrap();
    let vkey = std::fs::read_to_string(dir.join("vkey")).unwrap();
    let origin = std::fs::read_to_string(dir.join("origin")).unwrap();
    let v = vigil_proto::tlog::Verifier::from_vkey(vkey.trim()).unwrap();
    let cp = vigil_proto::tlog::Checkpoint::open(&note, origin.trim(), &v).unwrap();
    let text = std::fs::read_to_string(dir.join("entries.jsonl")).unwrap();
    let mut tree = vigil_proto::tlog::Tree::new();
    let mut entries = Vec::new();
    for line in text.lines() {
        tree.push(vigil_proto::tlog::leaf_hash(line.as_bytes()));
        entries.push(Entry::parse(line.as_bytes()).unwrap());
    }
    assert_eq!(tree.size(), cp.size);
    assert_eq!(tree.root(cp.size), Some(cp.root), "the exported entries do not hash to the checkpoint");
    entries
}

/// Exactly one disclosure entry per disclosure delivered, one retraction
/// entry per retraction, for each force.
fn one_entry_per_delivery(entries: &[Entry], nodes: &[Node]) {
    for n in nodes {
        let inbox = n.inbox();
        let delivered = inbox.len();
        let retracted = inbox.iter().filter(|i| i["state"] == "retracted").count();
        let logged =
            entries.iter().filter(|e| matches!(e, Entry::Disclosure { force, .. } if force == &n.code)).count();
        let logged_r =
            entries.iter().filter(|e| matches!(e, Entry::Retraction { force, .. } if force == &n.code)).count();
        assert_eq!(logged, delivered, "{}: {logged} disclosure entries, {delivered} disclosures delivered", n.code);
        assert_eq!(logged_r, retracted, "{}: {logged_r} retraction entries, {retracted} retractions", n.code);
        ok(n.run(&["audit", "verify"]));
    }
}

#[test]
fn log_invariants_reports_export_and_privacy() {
    let mut w = World::new();
    let data = w.path().join("synth");
    let s = synth_set(&data, 21, 2, 300, 4000);
    let want = expected(&data, &s.forces, &["extract.csv"]);
    let coordinator = w.start_coordinator();
    let nodes: Vec<_> = s.forces.iter().map(|f| w.node("force", f)).collect();
    let pnc = w.node("source", "pnc");
    let dpo = w.node("auditor", "ico");
    let step = |name: &str| {
        let out = ok(dpo.run(&["audit", "verify"]));
        assert!(out.contains("log verified"), "{name}: {out}");
    };
    step("start");
    for n in &nodes {
        ok(n.run(&["sync", "--roster", data.join(format!("roster-{}.csv", n.code)).to_str().unwrap()]));
    }
    step("after sync");
    let watchers: Vec<_> = nodes.iter().map(|n| n.watch()).collect();
    ok(pnc.run(&["feed", "--extract", data.join("extract.csv").to_str().unwrap()]));
    for n in &nodes {
        assert!(wait_until(Duration::from_secs(60), || active_pairs(&n.inbox()) == want[&n.code]));
    }
    step("after feed");
    let entries = export_and_check(&dpo, &w.path().join("export1"));
    one_entry_per_delivery(&entries, &nodes);

    // A pre-employment check is logged as counts only.
    let out = ok(nodes[0].run(&[
        "check",
        "--purpose",
        "vetting 2026/114",
        "--applicants",
        data.join("applicants.csv").to_str().unwrap(),
    ]));
    assert!(out.contains("30 applicants checked"), "{out}");
    step("after check");

    // Withdraw a disclosed record: a retraction, logged and delivered.
    let (emp, record) = want[&nodes[0].code].iter().next().unwrap().clone();
    let withdraw = w.path().join("withdraw.csv");
    std::fs::write(&withdraw, format!("record_id\n{record}\n")).unwrap();
    ok(pnc.run(&["feed", "--withdraw", withdraw.to_str().unwrap()]));
    assert!(wait_until(Duration::from_secs(30), || nodes[0]
        .inbox()
        .iter()
        .any(|i| i["employee_id"] == emp.as_str() && i["record_id"] == record.as_str() && i["state"] == "retracted")));
    step("after withdrawal");
    let entries = export_and_check(&dpo, &w.path().join("export2"));
    one_entry_per_delivery(&entries, &nodes);
    assert!(
        w.path().join("export2/consistency").read_dir().unwrap().next().is_some(),
        "a consistency proof from the earlier checkpoint"
    );
    // A check is logged with its counts, and no candidate count: that would
    // tell the force whether national data holds someone like an applicant.
    assert!(entries.iter().any(|e| matches!(e, Entry::Check { applicants: 30, candidates: None, .. })));
    // ...with the force's purpose and a commitment to what it sent, which
    // the node verified when it made the check.
    assert!(entries.iter().any(|e| matches!(e, Entry::Check { purpose, commitment, .. }
        if purpose == "vetting 2026/114" && commitment.len() == 64)));
    assert!(
        entries.iter().any(|e| matches!(e, Entry::Policy { .. }))
            && entries.iter().any(|e| matches!(e, Entry::Epoch { epoch: 1, .. }))
    );

    // Reports: the auditor's (all forces) and a force's own (with categories).
    let html = w.path().join("report.html");
    ok(dpo.run(&["audit", "report", "--format", "html", "--out", html.to_str().unwrap()]));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.starts_with("<!doctype html>")
            && page.contains("<svg")
            && !page.contains("<script")
            && !page.contains("http")
    );
    let json: serde_json::Value = serde_json::from_str(&ok(dpo.run(&["audit", "report", "--format", "json"]))).unwrap();
    let total_disclosures: u64 = want.values().map(|p| p.len() as u64).sum();
    assert_eq!(json["totals"]["disclosure"], total_disclosures);
    assert_eq!(json["totals"]["retraction"], 1);
    let own: serde_json::Value =
        serde_json::from_str(&ok(nodes[0].run(&["audit", "report", "--format", "json"]))).unwrap();
    assert!(own["by_category"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum::<u64>() > 0);
    assert!(own["by_force"].as_object().unwrap().keys().all(|k| k == &nodes[0].code));
    let csv = ok(dpo.run(&["audit", "report", "--format", "csv", "--force", &nodes[1].code]));
    assert!(csv.lines().skip(1).all(|l| l.contains(&format!(",{},", nodes[1].code))));

    for wt in watchers {
        wt.stop();
    }
    coordinator.stop();

    // No name, date of birth, NI number or postcode from the inputs appears
    // in the coordinator's data directory, its logs, or an audit export.
    let mut needles: Vec<String> = Vec::new();
    for f in std::fs::read_dir(&data).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "csv") && !p.ends_with("truth.csv") {
            let mut rdr = csv::Reader::from_path(&p).unwrap();
            let h = rdr.headers().unwrap().clone();
            for row in rdr.records() {
                let row = row.unwrap();
                for (k, v) in h.iter().zip(row.iter()) {
                    let v = v.trim();
                    let keep = match k {
                        "forenames" | "surname" | "previous_surnames" => v.len() >= 7,
                        "date_of_birth" | "ni_number" => v.len() >= 8,
                        "postcode" => v.contains(' '),
                        _ => false,
                    };
                    if keep {
                        needles.push(v.to_string());
                    }
                }
            }
        }
    }
    needles.sort();
    needles.dedup();
    assert!(needles.len() > 1000, "enough identity values to look for: {}", needles.len());
    let mut haystacks: HashMap<String, Vec<u8>> = HashMap::new();
    let mut add_dir = |dir: &Path| {
        for e in walk(dir) {
            haystacks.insert(e.display().to_string(), std::fs::read(&e).unwrap());
        }
    };
    add_dir(&w.path().join("coordinator"));
    add_dir(&w.path().join("export2"));
    add_dir(&w.path().join("nodes/ico"));
    let page_bytes = std::fs::read(&html).unwrap();
    haystacks.insert("report.html".into(), page_bytes);
    // One pass per needle length, looking each window up in a set.
    let mut by_len: HashMap<usize, std::collections::HashSet<&[u8]>> = HashMap::new();
    for n in &needles {
        by_len.entry(n.len()).or_default().insert(n.as_bytes());
    }
    for (name, bytes) in &haystacks {
        for (len, set) in &by_len {
            if let Some(w) = bytes.windows(*len).find(|w| set.contains(w)) {
                panic!("{name} contains an identity value from the inputs ({} bytes)", w.len());
            }
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_split_view_stops_the_node() {
    let mut w = World::new();
    let data = w.path().join("synth");
    let s = synth_set(&data, 3, 1, 200, 2000);
    let coordinator = w.start_coordinator();
    let node = w.node("force", &s.forces[0]);
    ok(node.run(&["sync", "--roster", data.join(format!("roster-{}.csv", s.forces[0])).to_str().unwrap()]));
    ok(node.run(&["audit", "verify"]));
    // The coordinator loses its history and starts a new log with the same
    // key: what it shows now is not an extension of what the node verified.
    coordinator.stop();
    std::fs::remove_dir_all(w.path().join("coordinator/data")).unwrap();
    let _coordinator = w.start_coordinator();
    let out = node.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("SPLIT VIEW"));
    // The alarm is durable: watch refuses to accept disclosures.
    let out = node.run(&["watch"]);
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("split view"));
    // After investigation the operator clears it; the old checkpoints are kept on file.
    assert_eq!(node.run(&["audit", "clear-alarm"]).status.code(), Some(64), "needs --confirm");
    let out = ok(node.run(&["audit", "clear-alarm", "--confirm"]));
    assert!(out.contains("alarm cleared"), "{out}");
    ok(node.run(&["audit", "verify"]));
}

/// Every checkpoint is dated, and a quiet log is signed again now and then,
/// so that a node can refuse a coordinator that holds it on an old view.
#[test]
fn a_quiet_log_gets_freshly_dated_checkpoints() {
    use vigil_proto::tlog::{Checkpoint, Verifier};
    use vigil_proto::v1::CheckpointRequest;
    use vigil_proto::v1::audit_service_client::AuditServiceClient;
    let mut w = World::new();
    let text = std::fs::read_to_string(&w.coordinator_config).unwrap();
    std::fs::write(&w.coordinator_config, text.replacen("[audit]\n", "[audit]\ncheckpoint_refresh_seconds = 1\n", 1))
        .unwrap();
    let _c = w.start_coordinator();
    let vkey = std::fs::read_to_string(&w.vkey).unwrap();
    let verifier = Verifier::from_vkey(vkey.lines().find(|l| !l.starts_with('#') && !l.is_empty()).unwrap()).unwrap();
    let ids = w.client_identity("auditor", "ico");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let time = || {
        rt.block_on(async {
            let ch = w.channel(Some((&ids.0, &ids.1)), None).await.unwrap();
            let note = AuditServiceClient::new(ch)
                .checkpoint(CheckpointRequest::default())
                .await
                .unwrap()
                .into_inner()
                .checkpoint;
            let cp = Checkpoint::open(&note, vigil_tests::ORIGIN, &verifier).unwrap();
            cp.time_ms().expect("a dated checkpoint")
        })
    };
    let first = time();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((now - first).abs() < 60_000, "dated now");
    assert!(wait_until(Duration::from_secs(10), || time() > first), "signed again while nothing happened");
}

/// Witnesses cosign the round's checkpoint after checking it against what
/// they saw before; an audit that requires k of n witnesses trusts only a
/// checkpoint that k configured witnesses cosigned; a witness that is not
/// configured is refused, and one shown a log that does not extend what it
/// saw refuses to cosign.
#[test]
fn audits_require_k_of_n_witness_cosignatures() {
    let mut w = World::new();
    let data = w.path().join("synth");
    let s = synth_set(&data, 22, 1, 100, 1000);
    let keys: Vec<String> = ["w1", "w2", "w3"].iter().map(|c| w.witness_key(c)).collect();
    let tables: String = ["w1", "w2", "w3"]
        .iter()
        .zip(&keys)
        .map(|(c, k)| format!("[[audit.witnesses]]\ncode = \"{c}\"\nvkey = \"{k}\"\n"))
        .collect();
    w.write_coordinator_config(&tables);
    let text = std::fs::read_to_string(&w.coordinator_config).unwrap();
    std::fs::write(&w.coordinator_config, text.replacen("[audit]\n", "[audit]\nwitness_round_seconds = 3600\n", 1))
        .unwrap();
    let coordinator = w.start_coordinator();
    let force = w.node("force", &s.forces[0]);
    ok(force.run(&["sync", "--roster", data.join(format!("roster-{}.csv", s.forces[0])).to_str().unwrap()]));
    let dpo = w.node("auditor", "ico");
    let list = keys.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ");
    let cfg = std::fs::read_to_string(&dpo.config).unwrap();
    std::fs::write(
        &dpo.config,
        cfg.replacen("[audit]\n", &format!("[audit]\nwitnesses = [{list}]\nwitness_quorum = 2\n"), 1),
    )
    .unwrap();

    // No witness has cosigned yet: the audit refuses to trust the log.
    let out = dpo.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cosigned by 2 witnesses"), "{out:?}");
    let w1 = w.node("witness", "w1");
    let out = ok(w1.run(&["witness", "run", "--once"]));
    assert!(out.contains("configured witnesses who have cosigned it: 1"), "{out}");
    assert_eq!(dpo.run(&["audit", "verify"]).status.code(), Some(70), "one of two is not enough");

    // The log moves on between the two witnesses; the round does not, so
    // both cosign the same checkpoint.
    ok(force.run(&["sync", "--roster", data.join(format!("roster-{}.csv", s.forces[0])).to_str().unwrap()]));
    let w2 = w.node("witness", "w2");
    let out = ok(w2.run(&["witness", "run", "--once"]));
    assert!(out.contains("configured witnesses who have cosigned it: 2"), "{out}");
    let out = ok(dpo.run(&["audit", "verify"]));
    assert!(out.contains("cosigned by witnesses: witness.test/w1, witness.test/w2"), "{out}");

    // A witness the coordinator does not know is refused.
    let stranger = w.node("witness", "w9");
    let out = stranger.run(&["witness", "run", "--once"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not configured"), "{out:?}");

    // The coordinator loses its history: w1 is shown a log that does not
    // extend the one it cosigned, and cosigns nothing.
    coordinator.stop();
    std::fs::remove_dir_all(w.path().join("coordinator/data")).unwrap();
    let _coordinator = w.start_coordinator();
    let out = w1.run(&["witness", "run", "--once"]);
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    let out = w1.run(&["witness", "run", "--once"]);
    assert_eq!(out.status.code(), Some(70), "and goes on refusing: {out:?}");
}
