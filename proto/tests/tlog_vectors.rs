//! Conformance of `vigil_proto::tlog` with every vector in
//! `tests/vectors/tlog-vectors.json` (a copy of the project's shared
//! vectors; each group cites its upstream source and commit).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use vigil_proto::hex;
use vigil_proto::tlog::checkpoint::{self, Checkpoint};
use vigil_proto::tlog::merkle::{self, Hash, Tree, empty_root, leaf_hash, verify_consistency, verify_inclusion};
use vigil_proto::tlog::note::{self, NoteError, Signer, Verifier};
use vigil_proto::tlog::tiles;

fn vectors() -> Value {
    let text = include_str!("vectors/tlog-vectors.json");
    serde_json::from_str(text).expect("vectors parse")
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k} is not a string"))
}

fn h(hexstr: &str) -> Hash {
    hex::decode_array(hexstr).expect("32-byte hex")
}

/// Decodes base64 hashes; `None` if any is not a 32-byte hash (such a
/// proof or root can never verify).
fn b64_hashes(v: &Value) -> Option<Vec<Hash>> {
    match v {
        Value::Null => Some(Vec::new()),
        Value::Array(a) => a.iter().map(|x| B64.decode(x.as_str()?).ok()?.try_into().ok()).collect(),
        _ => None,
    }
}

fn b64_bytes(v: &Value) -> Option<Vec<u8>> {
    B64.decode(v.as_str()?).ok()
}

fn b64_hash(v: &Value) -> Option<Hash> {
    b64_bytes(v)?.try_into().ok()
}

#[test]
fn rfc6962_hasher() {
    let v = vectors();
    for c in v["rfc6962_hasher"]["cases"].as_array().unwrap() {
        let want = h(s(c, "want_hex"));
        let got = match s(c, "kind") {
            "empty_root" => empty_root(),
            "leaf" => {
                let input = match c.get("input_hex") {
                    Some(x) => hex::decode(x.as_str().unwrap()).unwrap(),
                    None => s(c, "input_ascii").as_bytes().to_vec(),
                };
                leaf_hash(&input)
            }
            "node" => merkle::hash_children(s(c, "left_ascii").as_bytes(), s(c, "right_ascii").as_bytes()),
            other => panic!("unknown hasher case {other}"),
        };
        assert_eq!(got, want, "{}", s(c, "desc"));
    }
}

fn reference_tree() -> (Tree, Vec<Hash>) {
    let v = vectors();
    let mut t = Tree::new();
    let mut leaves = Vec::new();
    for l in v["rfc6962_tree"]["leaf_inputs_hex"].as_array().unwrap() {
        let lh = leaf_hash(&hex::decode(l.as_str().unwrap()).unwrap());
        leaves.push(lh);
        t.push(lh);
    }
    (t, leaves)
}

fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            merkle::node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

#[test]
fn rfc6962_tree_roots_and_levels() {
    let v = vectors();
    let (t, leaves) = reference_tree();
    for (size, root) in v["rfc6962_tree"]["root_by_tree_size_hex"].as_array().unwrap().iter().enumerate() {
        assert_eq!(t.root(size as u64).unwrap(), h(root.as_str().unwrap()), "root of size {size}");
    }
    for (level, hashes) in v["rfc6962_tree"]["node_hashes_by_level_hex"].as_array().unwrap().iter().enumerate() {
        for (i, want) in hashes.as_array().unwrap().iter().enumerate() {
            let width = 1usize << level;
            assert_eq!(mth(&leaves[i * width..(i + 1) * width]), h(want.as_str().unwrap()), "node {level}/{i}");
        }
    }
}

#[test]
fn rfc6962_section_2_1_3_example_paths() {
    let v = vectors();
    let sym = &v["rfc6962_section_2_1_3_symbolic"];
    let (t, leaves) = reference_tree();
    let label = |l: &Value| -> Hash {
        let r = sym["labels"][l.as_str().unwrap()].as_array().unwrap();
        let (a, b) = (r[0].as_u64().unwrap() as usize, r[1].as_u64().unwrap() as usize);
        mth(&leaves[a..b])
    };
    for p in sym["audit_paths"].as_array().unwrap() {
        let (i, n) = (p["leaf_index"].as_u64().unwrap(), p["tree_size"].as_u64().unwrap());
        let want: Vec<Hash> = p["path"].as_array().unwrap().iter().map(label).collect();
        assert_eq!(t.inclusion_proof(i, n).unwrap(), want, "audit path {i} in {n}");
        verify_inclusion(&leaves[i as usize], i, n, &want, &t.root(n).unwrap()).unwrap();
    }
    for p in sym["consistency_proofs"].as_array().unwrap() {
        let (m, n) = (p["size1"].as_u64().unwrap(), p["size2"].as_u64().unwrap());
        let want: Vec<Hash> = p["proof"].as_array().unwrap().iter().map(label).collect();
        assert_eq!(t.consistency_proof(m, n).unwrap(), want, "consistency {m} -> {n}");
        verify_consistency(m, n, &want, &t.root(m).unwrap(), &t.root(n).unwrap()).unwrap();
    }
}

#[test]
fn inclusion_probes() {
    let v = vectors();
    let cases = v["inclusion_probes"]["cases"].as_array().unwrap();
    assert!(cases.len() >= 90);
    for c in cases {
        let res = match (b64_hashes(&c["proof"]), b64_bytes(&c["root"]), b64_hash(&c["leafHash"])) {
            (Some(proof), Some(root), Some(leaf)) => {
                let (i, n) = (c["leafIdx"].as_u64().unwrap(), c["treeSize"].as_u64().unwrap());
                verify_inclusion(&leaf, i, n, &proof, &root).is_ok()
            }
            _ => false,
        };
        assert_eq!(res, !c["wantErr"].as_bool().unwrap(), "{} ({})", s(c, "desc"), s(c, "file"));
    }
}

#[test]
fn consistency_probes() {
    let v = vectors();
    let cases = v["consistency_probes"]["cases"].as_array().unwrap();
    assert!(cases.len() >= 90);
    for c in cases {
        let res = match (b64_hashes(&c["proof"]), b64_bytes(&c["root1"]), b64_bytes(&c["root2"])) {
            (Some(proof), Some(r1), Some(r2)) => {
                let (m, n) = (c["size1"].as_u64().unwrap(), c["size2"].as_u64().unwrap());
                verify_consistency(m, n, &proof, &r1, &r2).is_ok()
            }
            _ => false,
        };
        assert_eq!(res, !c["wantErr"].as_bool().unwrap(), "{} ({})", s(c, "desc"), s(c, "file"));
    }
}

#[test]
fn signed_note_c2sp_example() {
    let v = vectors();
    let c = &v["signed_note"]["c2sp_example"];
    let ver = Verifier::from_vkey(s(c, "vkey")).unwrap();
    assert_eq!(format!("{:08x}", ver.key_id), s(c, "key_id_hex"));
    assert_eq!(ver.vkey(), s(c, "vkey"));
    let n = note::open(s(c, "note").as_bytes(), &[ver]).unwrap();
    assert_eq!(n.text, s(c, "want_text"));
    let names: Vec<&str> = n.verified.iter().map(|x| x.name.as_str()).collect();
    let want: Vec<&str> = c["want_verified_names"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    assert_eq!(names, want);
}

#[test]
fn signed_note_go_sumdb() {
    let v = vectors();
    let g = &v["signed_note"]["go_sumdb_note"];
    let signer = Signer::from_skey(s(g, "peter_skey")).unwrap();
    assert_eq!(signer.verifier().vkey(), s(g, "peter_vkey"));
    assert_eq!(signer.sign(s(g, "text")).unwrap(), s(g, "sign_want"));
    assert_eq!(signer.signature_line(s(g, "text")), s(g, "peter_sig_line"));
    Verifier::from_vkey(s(g, "enoch_vkey")).unwrap();
    for b in g["bad_vkeys"].as_array().unwrap() {
        assert!(Verifier::from_vkey(s(b, "vkey")).is_err(), "{}", s(b, "why"));
    }
    // Every proper substring of a good key, and the key with any byte
    // incremented, must be refused.
    let good = s(g, "peter_vkey");
    for i in 0..good.len() {
        for j in i..=good.len() {
            if (i, j) != (0, good.len())
                && let Some(sub) = good.get(i..j)
            {
                assert!(Verifier::from_vkey(sub).is_err(), "substring {sub:?} accepted");
            }
        }
        let mut b = good.as_bytes().to_vec();
        b[i] = b[i].wrapping_add(1);
        if let Ok(m) = String::from_utf8(b) {
            assert!(Verifier::from_vkey(&m).is_err(), "mutation {m:?} accepted");
        }
    }
    for c in g["open_cases"].as_array().unwrap() {
        let known: Vec<Verifier> =
            c["vkeys"].as_array().unwrap().iter().map(|k| Verifier::from_vkey(k.as_str().unwrap()).unwrap()).collect();
        let res = note::open(s(c, "msg").as_bytes(), &known);
        let desc = s(c, "desc");
        assert_eq!(res.is_ok(), c["want_ok"].as_bool().unwrap(), "{desc}: {res:?}");
        if let Ok(n) = res {
            let names = |list: &[note::Signature]| list.iter().map(|x| x.name.clone()).collect::<Vec<_>>();
            let want =
                |k: &str| c[k].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect::<Vec<_>>();
            assert_eq!(names(&n.verified), want("want_verified"), "{desc}");
            assert_eq!(names(&n.unverified), want("want_unverified"), "{desc}");
        }
    }
    let bad = &g["invalid_utf8_case"];
    let msg = hex::decode(s(bad, "msg_hex")).unwrap();
    let known: Vec<Verifier> =
        bad["vkeys"].as_array().unwrap().iter().map(|k| Verifier::from_vkey(k.as_str().unwrap()).unwrap()).collect();
    assert_eq!(note::open(&msg, &known), Err(NoteError::Malformed));
}

#[test]
fn checkpoints() {
    let v = vectors();
    let c = &v["checkpoint"];
    let sum = &c["sum_golang_org"];
    let key = Verifier::from_vkey(s(sum, "vkey")).unwrap();
    let cp = Checkpoint::open(s(sum, "note"), s(sum, "origin"), &key).unwrap();
    assert_eq!(cp.size, sum["want_size"].as_u64().unwrap());
    assert_eq!(B64.encode(cp.root), s(sum, "want_root_b64"));
    assert!(Checkpoint::open(s(sum, "note"), s(sum, "wrong_origin"), &key).is_err());
    // Cosigned: the log key and the three cosigners all verify; unknown
    // signers are ignored.
    let mut known = vec![key.clone()];
    for k in sum["cosigner_vkeys"].as_array().unwrap() {
        known.push(Verifier::from_vkey(k.as_str().unwrap()).unwrap());
    }
    let n = note::open(s(sum, "cosigned_note").as_bytes(), &known).unwrap();
    assert_eq!(n.verified.len(), 4);
    assert_eq!(n.unverified.len(), 2);
    Checkpoint::open(s(sum, "cosigned_note"), s(sum, "origin"), &key).unwrap();

    let ex = &c["c2sp_example_body"];
    let body = s(ex, "note").split("\n\n").next().unwrap().to_string() + "\n";
    let cp = Checkpoint::parse_body(&body).unwrap();
    assert_eq!(cp.origin, s(ex, "want_origin"));
    assert_eq!(cp.size, ex["want_size"].as_u64().unwrap());
    assert_eq!(B64.encode(cp.root), s(ex, "want_root_b64"));

    for pair in c["formats_keypairs"]["pairs"].as_array().unwrap() {
        let (vk, sk) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
        assert_eq!(Signer::from_skey(sk).unwrap().verifier().vkey(), vk);
        assert_eq!(Verifier::from_vkey(vk).unwrap().vkey(), vk);
    }
    for m in c["formats_body_marshal"]["cases"].as_array().unwrap() {
        let got =
            checkpoint::format_body(s(m, "origin"), m["size"].as_u64().unwrap(), s(m, "hash_ascii").as_bytes(), &[]);
        assert_eq!(got, s(m, "want"));
        let (o, size, hash, _) = checkpoint::parse_body_lenient(&got).unwrap();
        assert_eq!(
            (o.as_str(), size, hash.as_slice()),
            (s(m, "origin"), m["size"].as_u64().unwrap(), s(m, "hash_ascii").as_bytes())
        );
    }
    for m in c["formats_body_invalid"]["cases"].as_array().unwrap() {
        assert!(checkpoint::parse_body_lenient(s(m, "m")).is_err(), "{}", s(m, "desc"));
        assert!(Checkpoint::parse_body(s(m, "m")).is_err(), "{}", s(m, "desc"));
    }
    let t = &c["go_sumdb_tree_format"];
    let got = checkpoint::format_body(
        s(t, "origin"),
        t["size"].as_u64().unwrap(),
        &leaf_hash(s(t, "leaf_ascii").as_bytes()),
        &[],
    );
    assert_eq!(got, s(t, "want"));
}

#[test]
fn tiles() {
    let v = vectors();
    for c in v["tiles"]["index_encoding"].as_array().unwrap() {
        assert_eq!(tiles::index_path(c["n"].as_u64().unwrap()), s(c, "want"));
    }
    for c in v["tiles"]["tree_size_examples"].as_array().unwrap() {
        let got = tiles::tiles_for_size(c["tree_size"].as_u64().unwrap());
        let want = c["want_structured"].as_object().unwrap();
        assert_eq!(got.len(), want.len(), "{}", s(c, "want"));
        for (level, (full, partial)) in got.iter().enumerate() {
            let w = &want[&level.to_string()];
            assert_eq!((*full, *partial), (w["full"].as_u64().unwrap(), w["partial_width"].as_u64().unwrap()));
        }
    }
}

#[test]
fn our_own_checkpoints_round_trip() {
    let (signer, skey) = Signer::from_seed("vigil.test/audit", &[9; 32]).unwrap();
    assert_eq!(Signer::from_skey(&skey).unwrap().verifier(), signer.verifier());
    let (t, _) = reference_tree();
    let cp = Checkpoint {
        origin: "vigil.test/audit".into(),
        size: t.size(),
        root: t.root(t.size()).unwrap(),
        extensions: vec![],
    };
    let signed = cp.sign(&signer).unwrap();
    assert_eq!(Checkpoint::open(&signed, "vigil.test/audit", &signer.verifier()).unwrap(), cp);
    let other = Signer::from_seed("vigil.test/audit", &[8; 32]).unwrap().0;
    assert!(Checkpoint::open(&signed, "vigil.test/audit", &other.verifier()).is_err());
    let tampered = signed.replacen(&format!("\n{}\n", cp.size), &format!("\n{}\n", cp.size + 1), 1);
    assert!(Checkpoint::open(&tampered, "vigil.test/audit", &signer.verifier()).is_err());
}
