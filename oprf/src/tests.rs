//! RFC 9497 test vectors (Appendix A.1.3, POPRF mode, ristretto255-SHA512,
//! https://www.rfc-editor.org/rfc/rfc9497#appendix-A.1.3) and the
//! properties the node relies on.

use super::*;
use curve25519_dalek::scalar::Scalar;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn arr<const N: usize>(v: &[u8]) -> [u8; N] {
    v.try_into().unwrap()
}

const SEED: &str = "a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3";
const KEY_INFO: &str = "74657374206b6579";
const SK: &str = "145c79c108538421ac164ecbe131942136d5570b16d8bf41a24d4337da981e07";
const PK: &str = "c647bef38497bc6ec077c22af65b696efa43bff3b4a1975a3e8e0a1c5a79d631";
const INFO: &str = "7465737420696e666f";
const BLIND1: &str = "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706";
const BLIND2: &str = "222a5e897cf59db8145db8d16e597e8facb80ae7d4e26d9881aa6f61d645fc0e";

/// (input, blind, blinded element, evaluation element, output): vectors 1
/// and 2 (batch size 1), which vector 3 batches together.
const VECTORS: [(&str, &str, &str, &str, &str); 2] = [
    (
        "00",
        BLIND1,
        "c8713aa89241d6989ac142f22dba30596db635c772cbf25021fdd8f3d461f715",
        "1a4b860d808ff19624731e67b5eff20ceb2df3c3c03b906f5693e2078450d874",
        "ca688351e88afb1d841fde4401c79efebb2eb75e7998fa9737bd5a82a152406d38bd29f680504e54fd4587eddcf2f37a2617ac2fbd2993f7bdf45442ace7d221",
    ),
    (
        "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
        BLIND1,
        "f0f0b209dd4d5f1844dac679acc7761b91a2e704879656cb7c201e82a99ab07d",
        "8c3c9d064c334c6991e99f286ea2301d1bde170b54003fb9c44c6d7bd6fc1540",
        "7c6557b276a137922a0bcfc2aa2b35dd78322bd500235eb6d6b6f91bc5b56a52de2d65612d503236b321f5d0bebcbc52b64b92e426f29c9b8b69f52de98ae507",
    ),
];

fn rfc_key() -> ServerKey {
    ServerKey::from_seed(&hex(SEED), &hex(KEY_INFO)).unwrap()
}

fn sc(h: &str) -> Scalar {
    Option::from(Scalar::from_canonical_bytes(arr(&hex(h)))).unwrap()
}

#[test]
fn rfc9497_key_derivation() {
    let k = rfc_key();
    assert_eq!(k.sk.as_bytes().to_vec(), hex(SK));
    assert_eq!(k.public_key().to_vec(), hex(PK));
}

/// Vectors 1 and 2 (batch size 1) and 3 (both in one batch), byte for
/// byte: blinded elements, evaluation elements, the proof (with the
/// vectors' random scalar) and the outputs.
#[test]
fn rfc9497_poprf_vectors() {
    let key = rfc_key();
    let info = hex(INFO);
    let proofs = [
        (
            "222a5e897cf59db8145db8d16e597e8facb80ae7d4e26d9881aa6f61d645fc0e",
            "41ad1a291aa02c80b0915fbfbb0c0afa15a57e2970067a602ddb9e8fd6b7100de32e1ecff943a36f0b10e3dae6bd266cdeb8adf825d86ef27dbc6c0e30c52206",
        ),
        (
            "222a5e897cf59db8145db8d16e597e8facb80ae7d4e26d9881aa6f61d645fc0e",
            "4c39992d55ffba38232cdac88fe583af8a85441fefd7d1d4a8d0394cd1de77018bf135c174f20281b3341ab1f453fe72b0293a7398703384bed822bfdeec8908",
        ),
    ];
    for ((input, blind, blinded, evaluation, output), (r, proof)) in VECTORS.iter().zip(proofs) {
        let input = hex(input);
        let b = blind_with(&[&input], || sc(blind)).unwrap();
        assert_eq!(b.elements[0].to_vec(), hex(blinded));
        let (evaluated, p) = poprf::evaluate(&key.sk, &b.elements, &info, sc(r)).unwrap();
        assert_eq!(evaluated[0].to_vec(), hex(evaluation));
        assert_eq!(p.to_vec(), hex(proof));
        let out = finalize(&[&input], &b, &evaluated, &p, &key.public_key(), &info).unwrap();
        assert_eq!(out[0].to_vec(), hex(output));
        assert_eq!(key.evaluate_direct(&input, &info).unwrap().to_vec(), hex(output));
    }
    // Vector 3: both inputs in one batch with one proof.
    let inputs = [hex(VECTORS[0].0), hex(VECTORS[1].0)];
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let mut blinds = [BLIND1, BLIND2].into_iter();
    let b = blind_with(&refs, || sc(blinds.next().unwrap())).unwrap();
    assert_eq!(b.elements[1].to_vec(), hex("423a01c072e06eb1cce96d23acce06e1ea64a609d7ec9e9023f3049f2d64e50c"));
    let r = sc("419c4f4f5052c53c45f3da494d2b67b220d02118e0857cdbcf037f9ea84bbe0c");
    let (evaluated, p) = poprf::evaluate(&key.sk, &b.elements, &info, r).unwrap();
    assert_eq!(evaluated[1].to_vec(), hex("aa1f16e903841036e38075da8a46655c94fc92341887eb5819f46312adfc0504"));
    assert_eq!(
        p.to_vec(),
        hex(
            "43fdb53be399cbd3561186ae480320caa2b9f36cca0e5b160c4a677b8bbf4301b28f12c36aa8e11e5a7ef551da0781e863a6dc8c0b2bf5a149c9e00621f02006"
        )
    );
    let out = finalize(&refs, &b, &evaluated, &p, &key.public_key(), &info).unwrap();
    assert_eq!(out[0].to_vec(), hex(VECTORS[0].4));
    assert_eq!(out[1].to_vec(), hex(VECTORS[1].4));
}

/// Interoperates with the `voprf` crate both ways: its client accepts this
/// service's batch and proof, and this client accepts its service's.
#[test]
fn agrees_with_the_voprf_crate_both_ways() {
    use voprf::{BlindedElement, EvaluationElement, Group, PoprfClient, PoprfServer, Proof, Ristretto255};
    let seed = [9u8; 32];
    let ours = ServerKey::derive(&seed, 3).unwrap();
    let theirs = PoprfServer::<Ristretto255>::new_from_seed(&seed, &key_info(3)).unwrap();
    assert_eq!(Ristretto255::serialize_elem(theirs.get_public_key()).to_vec(), ours.public_key().to_vec());
    let info = info(14, 3);
    let inputs: Vec<&[u8]> = vec![b"name_dob:a", b"nino:b", b"name_md:c"];
    let pk = Ristretto255::deserialize_elem(&ours.public_key()).unwrap();

    // Their client, our service.
    let mut states = Vec::new();
    let mut elements = Vec::new();
    for i in &inputs {
        let r = PoprfClient::<Ristretto255>::blind(i, &mut rand_core::OsRng).unwrap();
        elements.push(arr::<ELEMENT>(&r.message.serialize()));
        states.push(r.state);
    }
    let (evaluated, proof) = ours.evaluate(&elements, &info).unwrap();
    let msgs: Vec<_> = evaluated.iter().map(|e| EvaluationElement::<Ristretto255>::deserialize(e).unwrap()).collect();
    let proof = Proof::<Ristretto255>::deserialize(&proof).unwrap();
    let theirs_out: Vec<Vec<u8>> =
        PoprfClient::batch_finalize(inputs.iter().copied(), &states, &msgs, &proof, pk, Some(&info))
            .unwrap()
            .map(|o| o.unwrap().to_vec())
            .collect();

    // Our client, their service.
    let b = blind(&inputs).unwrap();
    let be: Vec<_> = b.elements.iter().map(|e| BlindedElement::<Ristretto255>::deserialize(e).unwrap()).collect();
    let r = theirs.batch_blind_evaluate(&mut rand_core::OsRng, &be, Some(&info)).unwrap();
    let evaluated: Vec<[u8; ELEMENT]> = r.messages.iter().map(|m| arr(&m.serialize())).collect();
    let ours_out = finalize(&inputs, &b, &evaluated, &arr(&r.proof.serialize()), &ours.public_key(), &info).unwrap();
    assert_eq!(ours_out.iter().map(|o| o.to_vec()).collect::<Vec<_>>(), theirs_out);
}

/// What the node relies on: outputs do not depend on the blinds, differ by
/// kind and epoch, and a proof made with another key, for another public
/// input, or over altered elements is refused.
#[test]
fn outputs_are_the_prf_and_proofs_bind_key_and_input() {
    let key = ServerKey::derive(&[7; 32], 1).unwrap();
    let inputs: Vec<&[u8]> = vec![b"name_dob:alice", b"nino:QQ123456C", b"name_dob:bob"];
    let info = info(14, 1);
    let run = |key: &ServerKey, info: &[u8]| {
        let b = blind(&inputs).unwrap();
        let (e, p) = key.evaluate(&b.elements, info).unwrap();
        finalize(&inputs, &b, &e, &p, &key.public_key(), info).unwrap()
    };
    let a = run(&key, &info);
    assert_eq!(a, run(&key, &info), "fresh blinds, the same outputs");
    assert_ne!(a[0], a[2]);
    assert_eq!(a[1], key.evaluate_direct(inputs[1], &info).unwrap());
    assert_ne!(a, run(&key, &super::info(15, 1)), "another kind");
    assert_ne!(a, run(&ServerKey::derive(&[7; 32], 2).unwrap(), &super::info(14, 2)), "another epoch");

    let b = blind(&inputs).unwrap();
    let (e, p) = key.evaluate(&b.elements, &info).unwrap();
    let other = ServerKey::derive(&[8; 32], 1).unwrap();
    assert_eq!(finalize(&inputs, &b, &e, &p, &other.public_key(), &info), Err(OprfError::Proof), "another key");
    assert_eq!(finalize(&inputs, &b, &e, &p, &key.public_key(), &super::info(15, 1)), Err(OprfError::Proof));
    let mut swapped = e.clone();
    swapped.swap(0, 2);
    assert_eq!(finalize(&inputs, &b, &swapped, &p, &key.public_key(), &info), Err(OprfError::Proof));
    let (e2, _) = other.evaluate(&b.elements, &info).unwrap();
    assert_eq!(finalize(&inputs, &b, &e2, &p, &key.public_key(), &info), Err(OprfError::Proof), "mixed batches");
}

#[test]
fn bad_batches_and_elements_are_refused_by_index() {
    let key = ServerKey::derive(&[7; 32], 1).unwrap();
    assert_eq!(key.evaluate(&[], b"i").unwrap_err(), OprfError::Batch);
    let b = blind(&[b"a", b"b"]).unwrap();
    let mut bad = b.elements.clone();
    bad[1] = [0xff; ELEMENT];
    assert_eq!(key.evaluate(&bad, b"i").unwrap_err(), OprfError::Element(1));
    // The identity element is refused too.
    assert_eq!(key.evaluate(&[[0; ELEMENT]], b"i").unwrap_err(), OprfError::Element(0));
    assert_eq!(blind(&[b""]).unwrap_err(), OprfError::Input);
    let (e, p) = key.evaluate(&b.elements, b"i").unwrap();
    assert_eq!(finalize(&[b"a"], &b, &e, &p, &key.public_key(), b"i").unwrap_err(), OprfError::Batch);
    assert!(!format!("{key:?}{b:?}").contains("a3a3"), "Debug shows no secret");
}
