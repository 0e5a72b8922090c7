//! The deployment files: every YAML and TOML file parses, the example
//! configurations load in the real binaries (with real key files behind
//! them), the systemd units call real commands, and the plaintext
//! health-only listener serves health and nothing else.

use std::path::{Path, PathBuf};
use std::process::Command;
use vigil_tests::{World, bin, ok, run};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("deploy")
}

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, ext, out);
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
}

#[test]
fn every_yaml_and_toml_file_parses() {
    let mut yaml = Vec::new();
    files(&deploy(), "yaml", &mut yaml);
    assert!(yaml.len() >= 2);
    for p in &yaml {
        let text = std::fs::read_to_string(p).unwrap();
        let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        for d in &docs {
            for key in ["apiVersion", "kind", "metadata"] {
                assert!(!d[key].is_badvalue(), "{}: a document has no {key}", p.display());
            }
            // Configs embedded in ConfigMaps parse too.
            if d["kind"].as_str() == Some("ConfigMap") {
                for (_, v) in d["data"].as_hash().unwrap() {
                    toml::from_str::<toml::Table>(v.as_str().unwrap())
                        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                }
            }
        }
    }
    let mut tomls = Vec::new();
    files(&deploy(), "toml", &mut tomls);
    assert!(tomls.len() >= 5);
    for p in &tomls {
        toml::from_str::<toml::Table>(&std::fs::read_to_string(p).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
}

/// Places the files an example config names (relative to its directory)
/// and returns the config path with its data_dir moved into `dir`.
fn stage(dir: &Path, config_text: &str, name: &str) -> PathBuf {
    let mut cfg: toml::Table = toml::from_str(config_text).unwrap();
    cfg.insert("data_dir".into(), toml::Value::String(dir.join("data").display().to_string()));
    let path = dir.join(name);
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    path
}

#[test]
fn example_configurations_load_in_the_binaries() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let coord = bin("vigil-coordinator");
    let node = bin("vigil-node");
    // The files the examples name, made by the real commands.
    ok(run(Command::new(&coord).args(["pki", "init", "--dir"]).arg(d.join("tls"))));
    ok(run(Command::new(&coord)
        .args([
            "pki",
            "issue",
            "--trust-domain",
            "vigil.example",
            "--role",
            "coordinator",
            "--dns",
            "coordinator.vigil.example",
            "--dir",
        ])
        .arg(d.join("tls"))
        .arg("--out")
        .arg(d.join("tls/coordinator"))));
    for (role, code) in [("force", "gmp"), ("source", "pnc"), ("auditor", "ico"), ("witness", "ico-w1")] {
        ok(run(Command::new(&coord)
            .args(["pki", "issue", "--trust-domain", "vigil.example", "--role", role, "--code", code, "--dir"])
            .arg(d.join("tls"))
            .arg("--out")
            .arg(d.join(format!("tls/{code}")))));
    }
    ok(run(Command::new(&coord).args(["keygen", "--origin", "vigil.example/audit", "--out"]).arg(d.join("keys"))));
    ok(run(Command::new(&node).args(["keygen", "--out"]).arg(d.join("keys"))));
    ok(run(Command::new(&node)
        .args(["witness", "keygen", "--name", "witness.ico.example/w1", "--out"])
        .arg(d.join("keys/witness.key"))));
    std::fs::copy(deploy().join("config/policy.toml"), d.join("policy.toml")).unwrap();

    let c = stage(d, &std::fs::read_to_string(deploy().join("config/coordinator.toml")).unwrap(), "coordinator.toml");
    let out = ok(run(Command::new(&coord).args(["check-config", "--config"]).arg(&c)));
    assert!(out.contains("configuration and keys load"), "{out}");
    for n in ["node-force.toml", "node-source.toml", "node-auditor.toml", "node-witness.toml"] {
        let p = stage(d, &std::fs::read_to_string(deploy().join("config").join(n)).unwrap(), n);
        let out = ok(run(Command::new(&node).args(["check-config", "--config"]).arg(&p)));
        assert!(out.contains("configuration and keys load"), "{n}: {out}");
    }
    // The key service's example loads, with its certificate and seed.
    ok(run(Command::new(&coord)
        .args([
            "pki",
            "issue",
            "--trust-domain",
            "vigil.example",
            "--role",
            "keyserver",
            "--dns",
            "keyserver.vigil.example",
            "--dir",
        ])
        .arg(d.join("tls"))
        .arg("--out")
        .arg(d.join("tls/keyserver"))));
    ok(run(Command::new(bin("vigil-keyserver"))
        .args(["keygen", "--origin", "vigil.example/keyserver", "--out"])
        .arg(d.join("keys"))));
    let k = stage(d, &std::fs::read_to_string(deploy().join("config/keyserver.toml")).unwrap(), "keyserver.toml");
    let out = ok(run(Command::new(bin("vigil-keyserver")).args(["check-config", "--config"]).arg(&k)));
    assert!(out.contains("configuration and key load"), "{out}");
    // The coordinator config in the Kubernetes ConfigMap loads too.
    let k8s = std::fs::read_to_string(deploy().join("k8s/coordinator.yaml")).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&k8s).unwrap();
    let cm = docs.iter().find(|d| d["kind"].as_str() == Some("ConfigMap")).unwrap();
    let p = stage(d, cm["data"]["coordinator.toml"].as_str().unwrap(), "k8s-coordinator.toml");
    ok(run(Command::new(&coord).args(["check-config", "--config"]).arg(&p)));
    // The active and standby pair's config migrates and checks against a
    // real database (this test's cluster in place of the managed one).
    let pg = vigil_tests::pg::Postgres::start();
    let k8s = std::fs::read_to_string(deploy().join("k8s/coordinator-ha.yaml")).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&k8s).unwrap();
    let cm = docs.iter().find(|d| d["kind"].as_str() == Some("ConfigMap")).unwrap();
    let mut cfg: toml::Table = toml::from_str(cm["data"]["coordinator.toml"].as_str().unwrap()).unwrap();
    let store = cfg["store"].as_table().unwrap().clone();
    assert_eq!(store["backend"].as_str(), Some("postgres"));
    let mut local = store.clone();
    local.insert("host".into(), "127.0.0.1".into());
    local.insert("port".into(), i64::from(pg.port()).into());
    local.remove("tls_ca"); // the test cluster speaks plaintext on loopback
    cfg.insert("store".into(), local.into());
    std::fs::create_dir_all(d.join("db")).unwrap();
    std::fs::write(d.join("db/password"), "unused-with-trust-authentication\n").unwrap();
    let p = stage(d, &toml::to_string(&cfg).unwrap(), "k8s-coordinator-ha.toml");
    let out = ok(run(Command::new(&coord).args(["migrate", "--config"]).arg(&p)));
    assert!(out.contains("schema version 2"), "{out}");
    let out = ok(run(Command::new(&coord).args(["check-config", "--config"]).arg(&p)));
    assert!(out.contains("schema version 2"), "{out}");
    // The example binds metrics to loopback: plain HTTP with counts of
    // disclosures is for the operator's own monitoring.
    let example: toml::Table =
        toml::from_str(&std::fs::read_to_string(deploy().join("config/coordinator.toml")).unwrap()).unwrap();
    let listen: std::net::SocketAddr = example["metrics"]["listen"].as_str().unwrap().parse().unwrap();
    assert!(listen.ip().is_loopback(), "metrics listen {listen}");
    // The shipped policy is the default policy.
    let shipped = std::fs::read_to_string(deploy().join("config/policy.toml")).unwrap();
    assert_eq!(shipped, vigil_coordinator::policy::DEFAULT_POLICY);
}

#[test]
fn systemd_units_call_real_commands() {
    let mut units = Vec::new();
    for ext in ["service", "timer"] {
        files(&deploy().join("systemd"), ext, &mut units);
    }
    assert!(units.len() >= 4);
    for u in &units {
        let text = std::fs::read_to_string(u).unwrap();
        assert!(text.contains("[Unit]"), "{}", u.display());
        for line in text.lines().filter(|l| l.starts_with("ExecStart")) {
            let cmd = line.split_once('=').unwrap().1;
            let mut words = cmd.split_whitespace();
            let prog = words.next().unwrap().rsplit('/').next().unwrap();
            let sub = words.next().unwrap();
            let out = run(Command::new(bin(prog)).args([sub, "--help"]));
            assert!(out.status.success(), "{}: {prog} {sub} is not a command", u.display());
        }
        if u.extension().is_some_and(|e| e == "service") && !text.contains("Type=oneshot") {
            for h in ["NoNewPrivileges=yes", "ProtectSystem=strict", "User=vigil"] {
                assert!(text.contains(h), "{}: missing {h}", u.display());
            }
        }
    }
}

#[test]
fn the_plaintext_listener_serves_health_and_nothing_else() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut w = World::new();
    w.write_coordinator_config(&format!("[health]\nlisten = \"127.0.0.1:{port}\"\n"));
    let _c = w.start_coordinator();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let r = tonic_health::pb::health_client::HealthClient::new(ch.clone())
            .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
            .await
            .unwrap();
        assert_eq!(r.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
        let e = vigil_proto::v1::roster_service_client::RosterServiceClient::new(ch)
            .status(vigil_proto::v1::StatusRequest {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unimplemented);
    });
}

#[test]
fn reflection_lists_the_api_and_an_unreachable_coordinator_exits_69() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut w = World::new();
    let auditor = w.client_identity("auditor", "ico");
    // Before the coordinator runs: a node cannot reach it.
    let node = w.node("auditor", "ico");
    let out = node.run(&["health"]);
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    let _c = w.start_coordinator();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let services = rt.block_on(async {
        let ch = w.channel(Some((&auditor.0, &auditor.1)), None).await.unwrap();
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = ServerReflectionClient::new(ch)
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        match stream.message().await.unwrap().unwrap().message_response {
            Some(MessageResponse::ListServicesResponse(l)) => l.service.into_iter().map(|s| s.name).collect::<Vec<_>>(),
            other => panic!("unexpected reflection answer {other:?}"),
        }
    });
    // The older v1alpha protocol is served too, and a symbol's file comes
    // with the files it imports.
    let files = rt.block_on(async {
        use tonic_reflection::pb::v1alpha as a;
        let ch = w.channel(Some((&auditor.0, &auditor.1)), None).await.unwrap();
        let req = a::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(a::server_reflection_request::MessageRequest::FileContainingSymbol(
                "vigil.v1.RosterService".into(),
            )),
        };
        let mut stream = a::server_reflection_client::ServerReflectionClient::new(ch)
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        match stream.message().await.unwrap().unwrap().message_response {
            Some(a::server_reflection_response::MessageResponse::FileDescriptorResponse(f)) => f
                .file_descriptor_proto
                .iter()
                .map(|b| {
                    <prost_types::FileDescriptorProto as prost::Message>::decode(b.as_slice())
                        .unwrap()
                        .name()
                        .to_string()
                })
                .collect::<Vec<_>>(),
            other => panic!("unexpected reflection answer {other:?}"),
        }
    });
    assert_eq!(files, vec!["vigil/v1/services.proto", "vigil/v1/tokens.proto"]);
    for s in [
        "vigil.v1.RosterService",
        "vigil.v1.FeedService",
        "vigil.v1.DisclosureService",
        "vigil.v1.CheckService",
        "vigil.v1.AuditService",
        "grpc.health.v1.Health",
    ] {
        assert!(services.iter().any(|x| x == s), "reflection does not list {s}: {services:?}");
    }
    let node = w.node("auditor", "ico"); // now with the coordinator's port
    let out = node.run(&["health"]);
    assert!(out.status.success(), "{out:?}");
}
