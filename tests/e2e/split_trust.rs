//! Token scheme 3 end to end: no node holds a linkage key. Forces and the
//! source have every match key evaluated obliviously by the real
//! `vigil-keyserver`; the coordinator (configured for scheme 3) finds the
//! same pairs the offline evaluation predicts, and each force opens a
//! record's details only through the wraps of the kinds its own subject
//! agreed on.

use prost::Message;
use std::time::Duration;
use vigil_proto::v1::{Disclosure, DisclosureType};
use vigil_tests::{World, ok, wait_until};

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
         [headcount]\n{f0} = {STAFF}\n{f1} = {STAFF}\n[sources]\npnc = {}\n",
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
