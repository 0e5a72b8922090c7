//! The key service end to end: the real `vigil-keyserver` over mutual TLS.
//! A force's node blinds its keys, the service evaluates them under its key
//! with a proof, the node unblinds the key's PRF value; every caller is held
//! to its allowance, and a restart does not reset it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;
use vigil_proto::v1::key_service_client::KeyServiceClient;
use vigil_proto::v1::{EvaluateRequest, PublicKeyRequest};
use vigil_tests::{KEYSERVER_NAME as NAME, Keyserver, World, bin, keyserver_client, ok, run, wait_until};

async fn client(ks: &Keyserver, w: &World, id: &(PathBuf, PathBuf)) -> KeyServiceClient<Channel> {
    keyserver_client(&ks.addr, w.path(), id)
}

fn evaluate(kind: u32, purpose: &str, blinded: &[[u8; 32]]) -> EvaluateRequest {
    EvaluateRequest {
        epoch: 1,
        kind,
        purpose: purpose.into(),
        blinded: blinded.iter().map(|b| b.to_vec().into()).collect(),
        check: false,
    }
}

#[test]
fn the_key_service_evaluates_obliviously_within_durable_allowances() {
    let mut w = World::new();
    let mut ks = w.start_keyserver(
        r#"[quota]
evaluations_per_subject = 4
headcount_multiple = 1.0
force_daily = 2
[headcount]
gmp = 2
[sources]
pnc = 100
"#,
    );
    let dir = w.path().join("keyserver");
    let config = ks.config.clone();
    let out = ok(run(Command::new(bin("vigil-keyserver")).args(["check-config", "--config"]).arg(&config)));
    assert!(out.contains("serving epoch 1"), "{out}");
    let published = w.key_service.clone().unwrap().1;

    let gmp = w.client_identity("force", "gmp");
    let wmp = w.client_identity("force", "wmp");
    let ico = w.client_identity("auditor", "ico");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let seed = vigil_common_seed(&dir.join("seed.key"));
    let reference = vigil_oprf::ServerKey::derive(&seed, 1).unwrap();
    rt.block_on(async {
        let mut c = client(&ks, &w, &gmp).await;
        let pk = c.public_key(PublicKeyRequest { epoch: 1 }).await.unwrap().into_inner();
        let pk: [u8; 32] = pk.public_key.as_ref().try_into().unwrap();
        let hex: String = pk.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, published.trim(), "the key published is the key served");

        // Three keys of one kind: blinded, evaluated, verified, unblinded.
        let inputs: Vec<&[u8]> = vec![b"name_dob:a", b"name_dob:b", b"name_dob:c"];
        let b = vigil_oprf::blind(&inputs).unwrap();
        let r = c.evaluate(evaluate(14, "roster 2026-12-01", &b.elements)).await.unwrap().into_inner();
        assert_eq!((r.used, r.allowance), (3, 8));
        let evaluated: Vec<[u8; 32]> = r.evaluated.iter().map(|e| e.as_ref().try_into().unwrap()).collect();
        let proof: [u8; 64] = r.proof.as_ref().try_into().unwrap();
        let info = vigil_oprf::info(14, 1);
        let out = vigil_oprf::finalize(&inputs, &b, &evaluated, &proof, &pk, &info).unwrap();
        for (o, i) in out.iter().zip(&inputs) {
            assert_eq!(o, &reference.evaluate_direct(i, &info).unwrap());
        }
        // A proof for another kind does not pass as this one.
        assert!(vigil_oprf::finalize(&inputs, &b, &evaluated, &proof, &pk, &vigil_oprf::info(15, 1)).is_err());

        // Refusals name what is wrong and spend nothing.
        let err = |s: tonic::Status| (s.code(), s.message().to_string());
        let one = vigil_oprf::blind(&[b"x"]).unwrap();
        let mut bad = evaluate(14, "r", &one.elements);
        bad.blinded[0] = vec![0u8; 31].into();
        let (code, msg) = err(c.evaluate(bad).await.unwrap_err());
        assert_eq!(code, Code::InvalidArgument);
        assert!(msg.contains("blinded element 0"), "{msg}");
        let mut old = evaluate(14, "r", &one.elements);
        old.epoch = 2;
        assert_eq!(c.evaluate(old).await.unwrap_err().code(), Code::FailedPrecondition);
        assert_eq!(c.evaluate(evaluate(999, "r", &one.elements)).await.unwrap_err().code(), Code::InvalidArgument);
        assert_eq!(
            c.evaluate(evaluate(14, "Jane Smith?", &one.elements)).await.unwrap_err().code(),
            Code::InvalidArgument
        );

        // The allowance: 2 staff x 4 evaluations = 8 for the epoch, then 2 a day.
        let five = vigil_oprf::blind(&[b"1", b"2", b"3", b"4", b"5"]).unwrap();
        assert_eq!(c.evaluate(evaluate(14, "r", &five.elements)).await.unwrap().into_inner().used, 8);
        let two = vigil_oprf::blind(&[b"6", b"7"]).unwrap();
        assert_eq!(c.evaluate(evaluate(14, "r", &two.elements)).await.unwrap().into_inner().used, 10);
        let (code, msg) = err(c.evaluate(evaluate(14, "r", &one.elements)).await.unwrap_err());
        assert_eq!(code, Code::ResourceExhausted);
        assert!(msg.contains("force/gmp") && msg.contains("used 10 of its 8"), "{msg}");

        // Other callers: a force with no declared headcount, an auditor.
        let mut other = client(&ks, &w, &wmp).await;
        let (code, msg) = err(other.evaluate(evaluate(14, "r", &one.elements)).await.unwrap_err());
        assert_eq!(code, Code::PermissionDenied);
        assert!(msg.contains("no allowance"), "{msg}");
        let mut auditor = client(&ks, &w, &ico).await;
        assert_eq!(auditor.public_key(PublicKeyRequest { epoch: 1 }).await.unwrap_err().code(), Code::PermissionDenied);
    });

    // A restart does not reset the allowance.
    drop(ks);
    ks = Keyserver::start(&config);
    let again = wait_until(Duration::from_secs(20), || {
        rt.block_on(async {
            let one = vigil_oprf::blind(&[b"x"]).unwrap();
            matches!(
                client(&ks, &w, &gmp).await.evaluate(evaluate(14, "r", &one.elements)).await,
                Err(s) if s.code() == Code::ResourceExhausted
            )
        })
    });
    assert!(again, "the allowance was spent before the restart and stays spent");

    // A data protection officer verifies the key service's own log with
    // the same tooling: four batches evaluated, by whom and how many.
    let (cert, key) = w.client_identity("auditor", "ico");
    let auditor = dir.join("auditor.toml");
    std::fs::write(
        &auditor,
        format!(
            r#"role = "auditor"
code = "ico"
coordinator = "https://{addr}"
server_name = "{NAME}"
server_role = "keyserver"
data_dir = "auditor-data"
[tls]
cert = "{cert}"
key = "{key}"
ca = "{ca}"
[audit]
origin = "vigil.test/keyserver"
vkey = "log.vkey"
"#,
            addr = ks.addr,
            cert = cert.display(),
            key = key.display(),
            ca = w.path().join("ca.crt").display()
        ),
    )
    .unwrap();
    let out = ok(run(Command::new(bin("vigil-node")).args(["audit", "verify", "--config"]).arg(&auditor)));
    assert!(out.contains("log verified at size 3") && out.contains("3 evaluation"), "{out}");
    drop(rt); // closes this client's connections
    ks.stop(); // and it stops cleanly on SIGTERM
}

fn vigil_common_seed(path: &Path) -> [u8; 32] {
    let text = std::fs::read_to_string(path).unwrap();
    let hex = text.lines().find_map(|l| l.strip_prefix("secret = \"")).unwrap().trim_end_matches('"');
    let v: Vec<u8> = (0..64).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    v.try_into().unwrap()
}

/// The key service honours the CA's revocation list as the coordinator
/// does: a revoked force certificate is refused once the list is re-read
/// (no restart), so a stolen certificate stops spending the force's
/// allowance; other certificates go on working.
#[test]
fn a_revoked_certificate_can_no_longer_evaluate() {
    let mut w = World::new();
    assert!(w.pki_revoke(&[]).contains("0 revoked"));
    let ks = w.start_keyserver("[quota]\nchecks_daily = 1\n[headcount]\ngmp = 10\nmet = 10\n[sources]\n");
    let config = ks.config.clone();
    ks.stop();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen(
            "client_ca = \"../ca.crt\"\n",
            "client_ca = \"../ca.crt\"\ncrl = \"../ca/crl.pem\"\ncrl_reload_seconds = 1\n",
            1,
        ),
    )
    .unwrap();
    let ks = Keyserver::start(&config);
    let (gmp, met) = (w.client_identity("force", "gmp"), w.client_identity("force", "met"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let works = |id: &(PathBuf, PathBuf)| {
        rt.block_on(async {
            let one = vigil_oprf::blind(&[b"x"]).unwrap();
            client(&ks, &w, id).await.evaluate(evaluate(14, "r", &one.elements)).await.is_ok()
        })
    };
    assert!(wait_until(Duration::from_secs(20), || works(&gmp)) && works(&met));
    // Pre-employment checks have their own daily bound as well.
    rt.block_on(async {
        let two = vigil_oprf::blind(&[b"a", b"b"]).unwrap();
        let mut req = evaluate(14, "vetting 7", &two.elements);
        req.check = true;
        let e = client(&ks, &w, &met).await.evaluate(req).await.unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted);
        assert!(e.message().contains("used 0 of its 1 check evaluations today"), "{}", e.message());
        let one = vigil_oprf::blind(&[b"a"]).unwrap();
        let mut req = evaluate(14, "vetting 7", &one.elements);
        req.check = true;
        assert!(client(&ks, &w, &met).await.evaluate(req).await.is_ok());
    });
    assert!(w.pki_revoke(&[std::ffi::OsStr::new("--cert"), gmp.0.as_os_str()]).contains("1 revoked"));
    assert!(wait_until(Duration::from_secs(20), || !works(&gmp)), "the revoked certificate is refused");
    assert!(works(&met), "other certificates still work");
    drop(rt);
    ks.stop();
}
