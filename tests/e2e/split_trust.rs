//! Token scheme 3 end to end: no node holds a linkage key. Forces and the
//! source have every match key evaluated obliviously by the real
//! `vigil-keyserver`; the coordinator (configured for scheme 3) finds the
//! same pairs the offline evaluation predicts, and each force opens a
//! record's details only through the wraps of the kinds its own subject
//! agreed on.

use prost::Message;
use std::time::Duration;
use vigil_proto::v1::{Disclosure, DisclosureType};
use vigil_tests::{World, ok, run, wait_until};

use crate::common::{active_pairs, expected, synth_set};

const STAFF: usize = 150;
const NATIONAL: usize = 1500;

#[test]
fn key_service_tokens_confirm_the_same_pairs_and_open_details_only_for_matching_identities() {
    let mut w = World::new();
    let data = w.path().join("synth");
    let s = synth_set(&data, 41, 2, STAFF, NATIONAL);
    let want = expected(&data, &s.forces, &["extract.csv"]);
    // Each force may evaluate its staff's keys once over (64 per person at
    // most, about 40 in practice) and a little more a day: a second full
    // evaluation of an unchanged roster would not fit.
    let (f0, f1) = (s.forces[0].clone(), s.forces[1].clone());
    let ks = w.start_keyserver(&format!(
        "[quota]\nevaluations_per_subject = 64\nheadcount_multiple = 1.0\nforce_daily = 2000\nsource_daily = 0\n\
         [headcount]\n{f0} = {STAFF}\n{f1} = {STAFF}\ntiny = 1\n[sources]\npnc = {}\n",
        NATIONAL * 64
    ));
    let _c = w.start_coordinator();
    let forces: Vec<_> = s.forces.iter().map(|f| w.node("force", f)).collect();
    let pnc = w.node("source", "pnc");
    let toml = std::fs::read_to_string(&pnc.config).unwrap();
    assert!(toml.contains("[keyserver]") && !toml.contains("linkage"), "scheme 3 nodes hold no linkage key");

    for (node, f) in forces.iter().zip(&s.forces) {
        let roster = data.join(format!("roster-{f}.csv"));
        let out = ok(node.run(&["sync", "--roster", roster.to_str().unwrap()]));
        assert!(out.contains(&format!("{STAFF} added")), "{out}");
    }
    let watchers: Vec<_> = forces.iter().map(|n| n.watch()).collect();
    ok(pnc.run(&["feed", "--extract", data.join("extract.csv").to_str().unwrap()]));
    for (node, f) in forces.iter().zip(&s.forces) {
        let done = wait_until(Duration::from_secs(60), || active_pairs(&node.inbox()) == want[f]);
        assert!(done, "force {f}: {:?} != {:?}", active_pairs(&node.inbox()), want[f]);
        // The details opened (the record ids compared above are inside the
        // sealed boxes).
        for item in node.inbox().iter().filter(|i| i["state"] == "active") {
            assert!(item["record_id"].as_str().unwrap().starts_with("PNC"), "{item}");
        }
    }
    assert!(want.values().map(|p| p.len()).sum::<usize>() > 0, "the set has matches to find");

    // What reached each force: the wraps of agreeing kinds only, never all
    // of the record's.
    for node in &forces {
        let store = vigil_node::local::LocalStore::open(&node.dir.join("data")).unwrap();
        for (_, bytes, _) in store.inbox().unwrap() {
            let d = Disclosure::decode(bytes.as_slice()).unwrap();
            if d.r#type != DisclosureType::Disclosure as i32 {
                continue;
            }
            let sealed = d.sealed.unwrap();
            assert!(!sealed.wrap_kinds.is_empty());
            assert!(
                sealed.wrap_kinds.iter().all(|k| d.agreeing.contains(k)),
                "{:?} ⊄ {:?}",
                sealed.wrap_kinds,
                d.agreeing
            );
            assert_eq!(sealed.wraps.len(), 16 * sealed.wrap_kinds.len());
        }
    }

    // An unchanged roster is not evaluated again (it would not fit in the
    // allowance): the node compares a keyed digest of its match keys.
    let roster0 = data.join(format!("roster-{f0}.csv"));
    let out = ok(forces[0].run(&["sync", "--roster", roster0.to_str().unwrap()]));
    assert!(out.contains("0 added") && out.contains(&format!("{STAFF} unchanged")), "{out}");

    // A pre-employment check evaluates its applicants and opens what
    // matches them.
    let out = ok(forces[0].run(&[
        "check",
        "--purpose",
        "vetting 2026/7",
        "--applicants",
        data.join("applicants.csv").to_str().unwrap(),
        "--format",
        "json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let matches = v["matches"].as_array().unwrap();
    assert!(!matches.is_empty(), "{v}");
    assert!(matches.iter().all(|m| m["record_id"].as_str().unwrap().starts_with("PNC")), "{v}");

    // A force whose allowance does not cover its roster is refused by the
    // key service before anything reaches the coordinator.
    let tiny = w.node("force", "tiny");
    let out = tiny.run(&["sync", "--roster", roster0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("key service evaluation") && err.contains("force/tiny") && err.contains("of its 64"), "{err}");
    assert!(err.contains("Nothing was sent"), "{err}");

    // A node of the other scheme is refused, naming the scheme, and sends
    // nothing.
    let (addr, pk) = w.key_service.take().unwrap();
    let old = w.node("force", "old");
    let out = old.run(&["sync", "--roster", roster0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scheme 2") && err.contains("accepts scheme 3"), "{err}");

    // A node whose pinned key is not the one the key service uses evaluates
    // nothing.
    let mut other = pk.clone().into_bytes();
    other[0] = if other[0] == b'0' { b'1' } else { b'0' };
    w.key_service = Some((addr, String::from_utf8(other).unwrap()));
    let wrong = w.node("force", "wrong");
    let out = wrong.run(&["sync", "--roster", roster0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another public key"), "{err}");

    for watcher in watchers {
        watcher.stop();
    }
    ks.stop();
}

/// Rewrites a config file, replacing `from` by `to` (which must be there).
fn edit(path: &std::path::Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn a_new_key_epoch_moves_every_party_without_losing_a_case_then_drops_the_old_tokens() {
    let mut w = World::new();
    let data = w.path().join("synth");
    let s = synth_set(&data, 43, 1, 100, 800);
    let f = s.forces[0].clone();
    let want = expected(&data, &s.forces, &["extract.csv"]);
    assert!(!want[&f].is_empty());
    let ks = w.start_keyserver(&format!(
        "[quota]\nevaluations_per_subject = 64\nheadcount_multiple = 1.0\n[headcount]\n{f} = 100\n[sources]\npnc = 60000\n"
    ));
    let c = w.start_coordinator();
    let force = w.node("force", &f);
    let pnc = w.node("source", "pnc");
    let roster = data.join(format!("roster-{f}.csv"));
    let extract = data.join("extract.csv");
    ok(force.run(&["sync", "--roster", roster.to_str().unwrap()]));
    let watcher = force.watch();
    ok(pnc.run(&["feed", "--extract", extract.to_str().unwrap()]));
    assert!(wait_until(Duration::from_secs(60), || active_pairs(&force.inbox()) == want[&f]));
    let cases: Vec<String> = force.inbox().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect();

    // The ceremony: the key service serves epoch 2 and still epoch 1; the
    // coordinator accepts both; parties move one by one.
    let ks_config = ks.config.clone();
    ks.stop();
    edit(&ks_config, "epoch = 1\n", "epoch = 2\nprevious_epoch = 1\n");
    let key2 = ok(run(std::process::Command::new(vigil_tests::bin("vigil-keyserver"))
        .args(["public-key", "--config"])
        .arg(&ks_config)))
    .trim()
    .to_string();
    let ks = vigil_tests::Keyserver::start(&ks_config);
    c.stop();
    w.write_coordinator_config("epoch = 2\nprevious_epoch = 1\n");
    let c = w.start_coordinator();
    let old_key = w.key_service.clone().unwrap().1;
    for node in [&force, &pnc] {
        edit(
            &node.config,
            &format!("epoch = 1\npublic_key = \"{old_key}\""),
            &format!("epoch = 2\npublic_key = \"{key2}\""),
        );
    }
    // Each re-sends everything under epoch 2 (the digests include the
    // epoch); no case is lost or duplicated on the way.
    let out = ok(force.run(&["sync", "--roster", roster.to_str().unwrap()]));
    assert!(out.contains("100 changed"), "{out}");
    assert_eq!(active_pairs(&force.inbox()), want[&f]);
    let out = ok(pnc.run(&["feed", "--extract", extract.to_str().unwrap()]));
    assert!(out.contains("0 added, 800 changed"), "{out}");
    assert_eq!(active_pairs(&force.inbox()), want[&f]);

    // Everyone has moved: epoch 1 is no longer served, and the next start
    // drops its tokens. The cases stand, still opened, and the log says it.
    ks.stop();
    edit(&ks_config, "previous_epoch = 1\n", "");
    let ks = vigil_tests::Keyserver::start(&ks_config);
    c.stop();
    w.write_coordinator_config("epoch = 2\n");
    let c = w.start_coordinator();
    let settled = wait_until(Duration::from_secs(30), || active_pairs(&force.inbox()) == want[&f]);
    assert!(settled, "{:?}", active_pairs(&force.inbox()));
    let inbox = force.inbox();
    assert!(inbox.iter().all(|i| i["state"] != "retracted"), "no case was retracted");
    for id in &cases {
        assert!(inbox.iter().any(|i| &i["id"] == id), "case {id} is still in the inbox");
    }
    let ico = w.node("auditor", "ico");
    let out = ok(ico.run(&["audit", "verify"]));
    assert!(out.contains("3 epoch"), "{out}");
    let report = ok(ico.run(&["audit", "report", "--format", "json"]));
    assert!(report.contains("previous epoch's tokens dropped"), "{report}");
    // Matching goes on in epoch 2 alone: a delta's records reach the force.
    let want2 = expected(&data, &s.forces, &["extract.csv", "delta.csv"]);
    assert!(want2[&f].len() > want[&f].len(), "the delta names staff");
    ok(pnc.run(&["feed", "--delta", data.join("delta.csv").to_str().unwrap()]));
    assert!(wait_until(Duration::from_secs(30), || active_pairs(&force.inbox()) == want2[&f]));
    watcher.stop();
    c.stop();
    ks.stop();
}
