//! Who may do what, and the bounds on every input: each refusal is checked
//! against the real coordinator with a real certificate.

use std::path::PathBuf;
use tonic::Code;
use vigil_coordinator::pki::{Ca, Leaf};
use vigil_proto::v1::audit_service_client::AuditServiceClient;
use vigil_proto::v1::check_service_client::CheckServiceClient;
use vigil_proto::v1::disclosure_service_client::DisclosureServiceClient;
use vigil_proto::v1::feed_service_client::FeedServiceClient;
use vigil_proto::v1::roster_service_client::RosterServiceClient;
use vigil_proto::v1::*;
use vigil_tests::World;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn token_set(n: usize) -> TokenSet {
    TokenSet { kinds: vec![KeyKind::NameDob as i32; n], tokens: vec![7u8; 32 * n].into() }
}

fn roster_batch(sequence: u64, subjects: usize) -> RosterBatch {
    RosterBatch {
        sequence,
        epoch: 1,
        scheme: 2,
        upserts: (0..subjects)
            .map(|i| EnrolSubject { subject: vec![i as u8; 16].into(), tokens: Some(token_set(1)) })
            .collect(),
        removes: vec![],
        allow_removals: false,
    }
}

fn national_batch(sequence: u64) -> NationalBatch {
    NationalBatch {
        sequence,
        epoch: 1,
        scheme: 2,
        upserts: vec![NationalRecord {
            record_ref: vec![1; 16].into(),
            tokens: Some(token_set(1)),
            sealed: Some(SealedDetails {
                epoch: 1,
                nonce: vec![0; 12].into(),
                ciphertext: vec![1; 40].into(),
                ..Default::default()
            }),
        }],
        removes: vec![],
    }
}

fn write_identity(w: &World, name: &str, ca: &Ca, leaf: &Leaf) -> (PathBuf, PathBuf) {
    let (c, k) = ca.issue(leaf).unwrap();
    let (cp, kp) = (w.path().join(format!("{name}.crt")), w.path().join(format!("{name}.key")));
    std::fs::write(&cp, c).unwrap();
    std::fs::write(&kp, k).unwrap();
    (cp, kp)
}

#[test]
fn every_rpc_is_authorised_by_role() {
    let mut w = World::new();
    let _c = w.start_coordinator();
    let force = w.client_identity("force", "gmp");
    let other_force = w.client_identity("force", "met");
    let source = w.client_identity("source", "pnc");
    let auditor = w.client_identity("auditor", "ico");
    rt().block_on(async {
        let f = w.channel(Some((&force.0, &force.1)), None).await.unwrap();
        let s = w.channel(Some((&source.0, &source.1)), None).await.unwrap();
        let a = w.channel(Some((&auditor.0, &auditor.1)), None).await.unwrap();
        let denied = |r: Result<(), tonic::Status>, what: &str| {
            let e = r.expect_err(what);
            assert_eq!(e.code(), Code::PermissionDenied, "{what}: {e:?}");
        };
        // A source cannot sync a roster, subscribe or check.
        denied(RosterServiceClient::new(s.clone()).sync(roster_batch(1, 1)).await.map(|_| ()), "source sync");
        denied(
            DisclosureServiceClient::new(s.clone()).subscribe(SubscribeRequest {}).await.map(|_| ()),
            "source subscribe",
        );
        denied(
            CheckServiceClient::new(s.clone())
                .check(CheckRequest {
                    request_id: "0123456789abcdef".into(),
                    epoch: 1,
                    scheme: 2,
                    applicants: vec![],
                    purpose: "case 1".into(),
                })
                .await
                .map(|_| ()),
            "source check",
        );
        // A force cannot feed national data or read log entries.
        denied(FeedServiceClient::new(f.clone()).feed(national_batch(1)).await.map(|_| ()), "force feed");
        denied(
            AuditServiceClient::new(f.clone()).entries(EntriesRequest { start: 0, end: 1 }).await.map(|_| ()),
            "force entries",
        );
        // An auditor can only read audit data.
        denied(RosterServiceClient::new(a.clone()).sync(roster_batch(1, 1)).await.map(|_| ()), "auditor sync");
        denied(FeedServiceClient::new(a.clone()).feed(national_batch(1)).await.map(|_| ()), "auditor feed");
        denied(
            DisclosureServiceClient::new(a.clone()).subscribe(SubscribeRequest {}).await.map(|_| ()),
            "auditor subscribe",
        );
        let entries = AuditServiceClient::new(a.clone())
            .entries(EntriesRequest { start: 0, end: 10 })
            .await
            .unwrap()
            .into_inner();
        assert!(!entries.entries.is_empty(), "the log starts with policy and epoch entries");
        let cp =
            AuditServiceClient::new(a.clone()).checkpoint(CheckpointRequest::default()).await.unwrap().into_inner();
        assert!(cp.checkpoint.starts_with("vigil.test/audit\n"));
        // Forces read checkpoints and proofs (to verify their disclosures);
        // a source may not: how far the log grew after its batch would tell
        // it how many disclosures the batch caused.
        AuditServiceClient::new(f.clone()).checkpoint(CheckpointRequest::default()).await.unwrap();
        let mut sa = AuditServiceClient::new(s.clone());
        denied(sa.checkpoint(CheckpointRequest::default()).await.map(|_| ()), "source checkpoint");
        denied(
            sa.inclusion_proof(InclusionProofRequest { leaf_index: 0, tree_size: 1 }).await.map(|_| ()),
            "source inclusion proof",
        );
        denied(
            sa.consistency_proof(ConsistencyProofRequest { size1: 1, size2: 2 }).await.map(|_| ()),
            "source consistency proof",
        );

        // A force cannot acknowledge another force's disclosures: ids of
        // another force are not its own, so nothing is acknowledged.
        let m = w.channel(Some((&other_force.0, &other_force.1)), None).await.unwrap();
        let r = DisclosureServiceClient::new(m)
            .acknowledge(AcknowledgeRequest { ids: vec!["gmp-0000000001".into()] })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.acknowledged, 0);
        // The receipt a source gets carries counts only, and no position in
        // the log.
        let r = FeedServiceClient::new(s.clone()).feed(national_batch(1)).await.unwrap().into_inner();
        assert_eq!((r.upserts, r.total, r.log_index), (1, 1, 0));
    });
}

#[test]
fn certificates_that_are_missing_foreign_expired_or_from_another_domain_are_refused() {
    let mut w = World::new();
    let _c = w.start_coordinator();
    let (other_ca, _) = Ca::create("Another CA", 30).unwrap();
    let foreign = write_identity(&w, "foreign", &other_ca, &Leaf::valid_for("spiffe://vigil.test/force/gmp", 30));
    let mut expired_leaf = Leaf::valid_for("spiffe://vigil.test/force/gmp", 30);
    expired_leaf.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(60);
    expired_leaf.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    let expired = write_identity(&w, "expired", &w.ca, &expired_leaf);
    let domain = write_identity(&w, "domain", &w.ca, &Leaf::valid_for("spiffe://elsewhere.test/force/gmp", 30));
    rt().block_on(async {
        // Under TLS 1.3 a refused client certificate shows on the first call.
        let first_call = |ch: Result<tonic::transport::Channel, tonic::transport::Error>| async move {
            match ch {
                Err(_) => Err(()),
                Ok(ch) => RosterServiceClient::new(ch).status(StatusRequest {}).await.map(|_| ()).map_err(|_| ()),
            }
        };
        assert!(first_call(w.channel(None, None).await).await.is_err(), "no certificate");
        assert!(first_call(w.channel(Some((&foreign.0, &foreign.1)), None).await).await.is_err(), "another CA");
        assert!(first_call(w.channel(Some((&expired.0, &expired.1)), None).await).await.is_err(), "expired");
        let ch = w.channel(Some((&domain.0, &domain.1)), None).await.unwrap();
        let e = RosterServiceClient::new(ch).status(StatusRequest {}).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        // A good certificate works.
        let good = w.client_identity("force", "gmp");
        assert!(first_call(w.channel(Some((&good.0, &good.1)), None).await).await.is_ok());
    });
}

#[test]
fn inputs_are_bounded() {
    let mut w = World::new();
    w.write_coordinator_config(
        "[limits]\nmax_batch_items = 5\nmax_tokens_per_item = 4\nmax_roster_size = 3\nchecks_per_minute = 3\nmax_message_bytes = 65536\n",
    );
    let _c = w.start_coordinator();
    let force = w.client_identity("force", "gmp");
    rt().block_on(async {
        let ch = w.channel(Some((&force.0, &force.1)), None).await.unwrap();
        let mut r = RosterServiceClient::new(ch.clone());
        let code = |res: Result<tonic::Response<BatchReceipt>, tonic::Status>| res.map(|_| ()).unwrap_err();
        assert_eq!(code(r.sync(roster_batch(1, 6)).await).code(), Code::ResourceExhausted);
        assert_eq!(code(r.sync(roster_batch(1, 4)).await).code(), Code::ResourceExhausted);
        let mut fat = roster_batch(1, 1);
        fat.upserts[0].tokens = Some(token_set(5));
        let e = code(r.sync(fat).await);
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("upsert 0") && e.message().contains("limit of 4"), "{}", e.message());
        let mut bad = roster_batch(1, 1);
        bad.upserts[0].tokens = Some(TokenSet { kinds: vec![1, 2], tokens: vec![0; 32].into() });
        let e = code(r.sync(bad).await);
        assert!(
            e.message().contains("upsert 0") && e.message().contains("2 kinds but 32 token bytes"),
            "{}",
            e.message()
        );
        let mut epoch = roster_batch(1, 1);
        epoch.epoch = 2;
        assert_eq!(code(r.sync(epoch).await).code(), Code::FailedPrecondition);
        let mut big = roster_batch(1, 1);
        big.upserts[0].subject = vec![0; 100_000].into();
        assert!(r.sync(big).await.is_err(), "a message over the size limit is refused");
        // Nothing above changed anything; a valid batch applies.
        let ok = r.sync(roster_batch(1, 3)).await.unwrap().into_inner();
        assert_eq!(ok.total, 3);
        // A sequence of 0, a gap or a repeat with other content is refused
        // and changes nothing.
        assert_eq!(code(r.sync(roster_batch(0, 1)).await).code(), Code::InvalidArgument);
        let e = code(r.sync(roster_batch(3, 1)).await);
        assert_eq!(e.code(), Code::Aborted);
        assert!(e.message().contains("next must be 2"), "{}", e.message());
        let e = code(r.sync(roster_batch(1, 1)).await);
        assert_eq!(e.code(), Code::Aborted, "{}", e.message());
        let again = r.sync(roster_batch(1, 3)).await.unwrap().into_inner();
        assert!(again.replayed && again.total == 3);
        // A request id is a random or digest value in hex, never free text
        // (it lands in the permanent log).
        let mut c = CheckServiceClient::new(ch.clone());
        for bad in ["", "c1", "Officer Smith asked for this one", "0123456789ABCDEF"] {
            let e = c
                .check(CheckRequest {
                    request_id: bad.into(),
                    epoch: 1,
                    scheme: 2,
                    applicants: vec![],
                    purpose: "case 1".into(),
                })
                .await
                .unwrap_err();
            assert!(e.message().starts_with("request_id must be 16 to 64 lowercase hex digits"), "{}", e.message());
        }
        // A purpose is a case reference, never free text with a name in it.
        for bad in ["", "Jane Smith's case!", &"x".repeat(65)] {
            let e = c
                .check(CheckRequest {
                    request_id: "0123456789abcdef".into(),
                    epoch: 1,
                    scheme: 2,
                    applicants: vec![],
                    purpose: bad.to_string(),
                })
                .await
                .unwrap_err();
            assert!(e.message().contains("purpose must be 1 to 64 letters"), "{}", e.message());
        }
        // An applicant carries at most what one identity forms of each kind:
        // two NI numbers are two guesses, not one person.
        let two_ninos =
            TokenSet { kinds: vec![KeyKind::Nino as i32; 2], tokens: [[1u8; 32], [2u8; 32]].concat().into() };
        let e = c
            .check(CheckRequest {
                request_id: "00112233445566778899aabbccddeeff".into(),
                epoch: 1,
                scheme: 2,
                purpose: "case 1".into(),
                applicants: vec![Applicant { applicant: vec![1].into(), tokens: Some(two_ninos) }],
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(
            e.message().contains("applicant 0") && e.message().contains("2 tokens of kind nino"),
            "{}",
            e.message()
        );
        // Checks are rate limited per force (the refused check counted too).
        let req = || CheckRequest {
            request_id: "0123456789abcdef".into(),
            epoch: 1,
            scheme: 2,
            purpose: "case 1".into(),
            applicants: vec![Applicant { applicant: vec![1].into(), tokens: Some(token_set(1)) }],
        };
        c.check(req()).await.unwrap();
        c.check(req()).await.unwrap();
        assert_eq!(c.check(req()).await.unwrap_err().code(), Code::ResourceExhausted);
    });
}

/// A certificate from the deployment's CA with the coordinator's DNS name
/// but another party's SPIFFE id: a node must not send it a single token.
#[test]
fn a_node_sends_nothing_to_a_server_that_is_not_the_coordinator() {
    let mut w = World::new();
    let mut fake = Leaf::valid_for("spiffe://vigil.test/force/bb", 30);
    fake.dns = vec![vigil_tests::SERVER_NAME.into()];
    fake.server = true;
    let (cert, key) = w.ca.issue(&fake).unwrap();
    std::fs::write(w.path().join("coordinator/coordinator.crt"), cert).unwrap();
    std::fs::write(w.path().join("coordinator/coordinator.key"), key).unwrap();
    let c = w.start_coordinator();
    let gmp = w.node("force", "gmp");
    let roster = w.path().join("roster.csv");
    std::fs::write(
        &roster,
        "employee_id,forenames,surname,previous_surnames,date_of_birth,ni_number,postcode,role\nE1,Ann,Lee,,1980-01-02,AB123456C,,x\n",
    )
    .unwrap();
    let out = gmp.run(&["sync", "--roster", roster.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("spiffe://vigil.test/force/bb") && err.contains("not spiffe://vigil.test/coordinator"),
        "{err}"
    );
    assert!(!c.log_text().contains("roster batch"), "the fake coordinator received a batch");
}

/// A node whose certificate is another party's, or expired, refuses to
/// start, and `check-config` says why.
#[test]
fn a_node_checks_its_own_certificate_against_its_configuration() {
    let w = World::new();
    let aa = w.node("force", "aa");
    let bb = w.client_identity("force", "bb");
    std::fs::copy(&bb.0, aa.dir.join("node.crt")).unwrap();
    std::fs::copy(&bb.1, aa.dir.join("node.key")).unwrap();
    for args in [&["check-config"][..], &["health"][..]] {
        let out = aa.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert!(err.contains("is for spiffe://vigil.test/force/bb") && err.contains("\"aa\""), "{err}");
    }
    let gmp = w.node("force", "gmp");
    let out = gmp.run(&["check-config"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("spiffe://vigil.test/coordinator"), "{out:?}");
    let mut expired = Leaf::valid_for("spiffe://vigil.test/force/gmp", 30);
    expired.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(60);
    expired.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    let (c, k) = w.ca.issue(&expired).unwrap();
    std::fs::write(gmp.dir.join("node.crt"), c).unwrap();
    std::fs::write(gmp.dir.join("node.key"), k).unwrap();
    let out = gmp.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expired"), "{out:?}");
}

/// A certificate from another CA fails at once with the TLS reason and exit
/// code 64 (it was retried for 30 s and ended as "transport error"), and
/// the coordinator logs the refused handshake and refused calls with the
/// peer's address.
#[test]
fn tls_refusals_are_reported_at_once_and_logged_by_the_coordinator() {
    let mut w = World::new();
    let c = w.start_coordinator();
    let gmp = w.node("force", "gmp");
    let (other_ca, _) = Ca::create("Another CA", 30).unwrap();
    let foreign = write_identity(&w, "foreign", &other_ca, &Leaf::valid_for("spiffe://vigil.test/force/gmp", 30));
    // The node's own check would refuse a certificate its CA did not issue,
    // so point its CA at the other CA too: the coordinator must refuse it.
    std::fs::copy(&foreign.0, gmp.dir.join("node.crt")).unwrap();
    std::fs::copy(&foreign.1, gmp.dir.join("node.key")).unwrap();
    let text = std::fs::read_to_string(&gmp.config).unwrap();
    let other_ca_path = w.path().join("other-ca.crt");
    std::fs::write(&other_ca_path, other_ca.cert_pem()).unwrap();
    let both = w.path().join("both-ca.crt");
    std::fs::write(
        &both,
        format!("{}{}", std::fs::read_to_string(w.path().join("ca.crt")).unwrap(), other_ca.cert_pem()),
    )
    .unwrap();
    std::fs::write(
        &gmp.config,
        text.replace(&w.path().join("ca.crt").display().to_string(), &both.display().to_string()),
    )
    .unwrap();
    let out = gmp.run(&["health"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("TLS") && err.contains("UnknownCA"), "{err}");
    assert!(!err.contains("retrying"), "a refused certificate is not retried: {err}");
    assert!(
        vigil_tests::wait_until(std::time::Duration::from_secs(10), || c.log_text().contains("TLS handshake refused")),
        "{}",
        c.log_text()
    );
    let log = c.log_text();
    assert!(!log.contains('\u{1b}'), "a log written to a file has no colour codes");
    let line = log.lines().find(|l| l.contains("TLS handshake refused")).unwrap();
    assert!(line.contains("peer=127.0.0.1:") && line.contains("unknown_ca"), "{line}");
    // A refused call (a source asking for a force's roster status).
    let source = w.client_identity("source", "pnc");
    rt().block_on(async {
        let ch = w.channel(Some((&source.0, &source.1)), None).await.unwrap();
        RosterServiceClient::new(ch).status(StatusRequest {}).await.unwrap_err();
    });
    let log = c.log_text();
    let line = log.lines().find(|l| l.contains("call refused")).unwrap_or_default();
    assert!(line.contains("role=\"source\"") || line.contains("role=source"), "{line}");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
}

/// At most `max_connections` client connections are open at once: one more
/// is closed at once (and counted), and a slot frees when a connection
/// closes.
#[test]
fn connections_are_bounded() {
    let mut w = World::new();
    w.write_coordinator_config("[limits]\nmax_connections = 2\n");
    let _c = w.start_coordinator();
    let force = w.client_identity("force", "gmp");
    rt().block_on(async {
        // A connection that answers a call (retried while the start-up health
        // probe's connection is still closing).
        let open = || async {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                if let Ok(ch) = w.channel(Some((&force.0, &force.1)), None).await
                    && AuditServiceClient::new(ch.clone()).checkpoint(CheckpointRequest::default()).await.is_ok()
                {
                    return Some(ch);
                }
                if std::time::Instant::now() > deadline {
                    return None;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        };
        let a = open().await.expect("first connection");
        let b = open().await.expect("second connection");
        let third = match w.channel(Some((&force.0, &force.1)), None).await {
            Err(_) => true,
            Ok(ch) => AuditServiceClient::new(ch).checkpoint(CheckpointRequest::default()).await.is_err(),
        };
        assert!(third, "a third connection is refused while two are open");
        drop(a);
        assert!(open().await.is_some(), "a slot frees when a connection closes");
        drop(b);
    });
}

/// A copy of a force's certificate in other hands: the coordinator keeps
/// one live subscription per force (the newest; the one it replaces ends
/// with ABORTED), and the real node raises its alarm (exit 70) when the
/// delivery sequence jumps past disclosures someone else acknowledged.
#[test]
fn a_copied_force_certificate_is_noticed() {
    use crate::common::{active_pairs, expected, synth_set};
    use std::time::Duration;
    use vigil_tests::{ok, wait_until};
    let mut w = World::new();
    let data = w.path().join("synth");
    let s = synth_set(&data, 47, 1, 300, 3000);
    let force = s.forces[0].clone();
    let first = expected(&data, &s.forces, &["extract.csv"]);
    let all = expected(&data, &s.forces, &["extract.csv", "delta.csv"]);
    assert!(all[&force].len() > first[&force].len() + 1, "the delta brings at least two new disclosures");
    let _c = w.start_coordinator();
    let node = w.node("force", &force);
    let pnc = w.node("source", "pnc");
    ok(node.run(&["sync", "--roster", data.join(format!("roster-{force}.csv")).to_str().unwrap()]));
    ok(pnc.run(&["feed", "--extract", data.join("extract.csv").to_str().unwrap()]));
    let watcher = node.watch();
    assert!(wait_until(Duration::from_secs(30), || active_pairs(&node.inbox()) == first[&force]));
    watcher.stop();

    // The delta's disclosures wait for the force. Someone holding a copy of
    // its certificate takes all but the last, and acknowledges them.
    ok(pnc.run(&["feed", "--delta", data.join("delta.csv").to_str().unwrap()]));
    let copy = w.client_identity("force", &force);
    rt().block_on(async {
        let ch = w.channel(Some((&copy.0, &copy.1)), None).await.unwrap();
        let mut d = DisclosureServiceClient::new(ch.clone());
        let mut stream = d.subscribe(SubscribeRequest {}).await.unwrap().into_inner();
        loop {
            let m = stream.message().await.unwrap().expect("a pending disclosure");
            let left = d.acknowledge(AcknowledgeRequest { ids: vec![m.id.clone()] }).await.unwrap().into_inner();
            if left.pending <= 1 {
                break;
            }
        }
        // The real node starts watching: the copy's subscription is ended.
        let mut watcher = node.watch();
        // (what was already in flight to it may still arrive first)
        let e = loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the replaced subscription ends with an error, not quietly"),
                Err(e) => break e,
            }
        };
        assert_eq!(e.code(), Code::Aborted, "{e:?}");
        assert!(e.message().contains("another subscription for this force"), "{}", e.message());
        // It receives the last disclosure, sees the jump, and stops with the
        // audit exit code, refusing to go on until an operator clears it.
        assert!(wait_until(Duration::from_secs(30), || watcher.exited().is_some()), "watch stops");
        assert_eq!(watcher.exited().unwrap().code(), Some(70));
        assert!(watcher.log_text().contains("SEQUENCE GAP"), "{}", watcher.log_text());
        let again = node.run(&["watch"]);
        assert_eq!(again.status.code(), Some(70));
        assert!(String::from_utf8_lossy(&again.stderr).contains("sequence gap) was recorded earlier"));
    });
}

/// A force may check a bounded number of applicants a day, and a restart of
/// the coordinator does not reset the count (it is read back from the log).
#[test]
fn the_daily_quota_of_applicants_survives_a_restart() {
    let mut w = World::new();
    w.write_coordinator_config("[limits]\napplicants_per_day = 3\nchecks_per_minute = 100\n");
    let force = w.client_identity("force", "gmp");
    let check = |n: u8, id: &str| CheckRequest {
        request_id: id.into(),
        epoch: 1,
        scheme: 2,
        purpose: "case 1".into(),
        applicants: (0..n).map(|i| Applicant { applicant: vec![i + 1].into(), tokens: Some(token_set(1)) }).collect(),
    };
    let c = w.start_coordinator();
    rt().block_on(async {
        let mut c = CheckServiceClient::new(w.channel(Some((&force.0, &force.1)), None).await.unwrap());
        c.check(check(2, "00000000000000000000000000000001")).await.unwrap();
        let e = c.check(check(2, "00000000000000000000000000000002")).await.unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted);
        assert!(e.message().contains("at most 3 applicants a day (2 checked"), "{}", e.message());
    });
    drop(c);
    let _c = w.start_coordinator();
    rt().block_on(async {
        let mut c = CheckServiceClient::new(w.channel(Some((&force.0, &force.1)), None).await.unwrap());
        let e = c.check(check(2, "00000000000000000000000000000003")).await.unwrap_err();
        assert!(e.message().contains("(2 checked in the last 24 hours"), "{}", e.message());
        c.check(check(1, "00000000000000000000000000000004")).await.unwrap();
    });
}

/// Enrolment is bounded per force by its declared headcount, and a roster
/// batch that removes a large share of a force's enrolled staff is refused
/// by the coordinator too, unless the sender says the removals are meant.
#[test]
fn enrolment_is_bounded_by_headcount_and_large_removals_need_consent() {
    let mut w = World::new();
    w.write_coordinator_config("[limits]\nmax_removal_share = 0.5\n[headcount]\ngmp = 4\n");
    let _c = w.start_coordinator();
    let (gmp, met) = (w.client_identity("force", "gmp"), w.client_identity("force", "met"));
    rt().block_on(async {
        let mut r = RosterServiceClient::new(w.channel(Some((&gmp.0, &gmp.1)), None).await.unwrap());
        let e = r.sync(roster_batch(1, 5)).await.unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted);
        assert!(e.message().contains("more than the limit of 4 for force gmp"), "{}", e.message());
        assert_eq!(r.sync(roster_batch(1, 4)).await.unwrap().into_inner().total, 4);
        // Another force keeps the general limit.
        let mut m = RosterServiceClient::new(w.channel(Some((&met.0, &met.1)), None).await.unwrap());
        assert_eq!(m.sync(roster_batch(1, 5)).await.unwrap().into_inner().total, 5);
        // Removing 3 of 4 (75% > 50%) needs the sender's consent.
        let mut leave =
            RosterBatch { sequence: 2, epoch: 1, scheme: 2, upserts: vec![], removes: vec![], allow_removals: false };
        leave.removes = (0..3u8).map(|i| vec![i; 16].into()).collect();
        let e = r.sync(leave.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted);
        assert!(e.message().contains("would remove 3 of the 4 subjects enrolled"), "{}", e.message());
        leave.allow_removals = true;
        assert_eq!(r.sync(leave).await.unwrap().into_inner().total, 1);
    });
}

/// A certificate revoked with `vigil-coordinator pki revoke` is refused at
/// its next handshake once the coordinator has re-read the revocation list,
/// without a restart, and the connections it already had are ended; other
/// certificates go on working.
#[test]
fn a_revoked_certificate_is_refused_after_the_list_is_reloaded() {
    use std::time::Duration;
    use vigil_tests::wait_until;
    let mut w = World::new();
    // An empty list to start with.
    assert!(w.pki_revoke(&[]).contains("0 revoked"));
    let config = std::fs::read_to_string(&w.coordinator_config).unwrap();
    let config = config.replacen("[tls]\n", "[tls]\ncrl = \"../ca/crl.pem\"\ncrl_reload_seconds = 1\n", 1);
    std::fs::write(&w.coordinator_config, config).unwrap();
    let _c = w.start_coordinator();
    let (met, gmp) = (w.client_identity("force", "met"), w.client_identity("force", "gmp"));
    let works = |id: &(PathBuf, PathBuf)| {
        rt().block_on(async {
            match w.channel(Some((&id.0, &id.1)), None).await {
                Ok(ch) => AuditServiceClient::new(ch).checkpoint(CheckpointRequest::default()).await.is_ok(),
                Err(_) => false,
            }
        })
    };
    assert!(works(&met) && works(&gmp));
    // A subscription the certificate opened before the revocation ends too.
    let runtime = rt();
    let mut live = runtime.block_on(async {
        let ch = w.channel(Some((&met.0, &met.1)), None).await.unwrap();
        DisclosureServiceClient::new(ch).subscribe(SubscribeRequest {}).await.unwrap().into_inner()
    });
    assert!(w.pki_revoke(&[std::ffi::OsStr::new("--cert"), met.0.as_os_str()]).contains("1 revoked"));
    let ended = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(20), live.message()).await });
    assert!(matches!(ended, Ok(Err(_)) | Ok(Ok(None))), "the open subscription is ended: {ended:?}");
    assert!(wait_until(Duration::from_secs(20), || !works(&met)), "the revoked certificate is refused");
    assert!(works(&gmp), "other certificates still work");
    let log = std::fs::read_to_string(w.path().join("coordinator/coordinator.log")).unwrap();
    assert!(log.contains("revocation list reloaded") && log.contains("revoked"), "{log}");
}

/// A party's TLS key never has to leave its machine: `vigil-node csr`
/// makes the key and a signing request, `vigil-coordinator pki sign` issues
/// a short-lived certificate for it with the identity the CA chose (not
/// the one the request claims), and the pair works.
#[test]
fn certificates_are_issued_from_signing_requests() {
    use std::process::Command;
    use vigil_tests::{TRUST_DOMAIN, bin, ok, run};
    let mut w = World::new();
    let _c = w.start_coordinator();
    let out = w.path().join("party/node");
    // The request claims gmp; the CA issues for nfk.
    ok(run(Command::new(bin("vigil-node"))
        .args(["csr", "--trust-domain", TRUST_DOMAIN, "--role", "force", "--code", "gmp", "--out"])
        .arg(&out)));
    let signed = ok(run(Command::new(bin("vigil-coordinator"))
        .args(["pki", "sign", "--dir"])
        .arg(w.path().join("ca"))
        .args(["--trust-domain", TRUST_DOMAIN, "--role", "force", "--code", "nfk", "--csr"])
        .arg(out.with_extension("csr"))
        .arg("--out")
        .arg(&out)));
    assert!(signed.contains("valid 30 days"), "{signed}");
    let pem = std::fs::read_to_string(out.with_extension("crt")).unwrap();
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let id = vigil_coordinator::service::identity_of(der.as_ref()).unwrap();
    assert_eq!(id.code, "nfk");
    rt().block_on(async {
        let ch = w.channel(Some((&out.with_extension("crt"), &out.with_extension("key"))), None).await.unwrap();
        AuditServiceClient::new(ch).checkpoint(CheckpointRequest::default()).await.unwrap();
    });
}
