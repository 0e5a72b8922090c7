//! RFC 9497 test vectors (Appendix A.1.3, POPRF mode, ristretto255-SHA512,
//! https://www.rfc-editor.org/rfc/rfc9497#appendix-A.1.3) and the
//! properties the node relies on.

use super::*;

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

#[test]
fn rfc9497_key_derivation() {
    let k = rfc_key();
    assert_eq!(k.server.serialize()[..32].to_vec(), hex(SK));
    assert_eq!(k.public_key().to_vec(), hex(PK));
}

/// Blinding with the RFC's blinds gives its blinded elements; the key
/// service's evaluation gives its evaluation elements; and the node's
/// finalisation (which verifies our proof) gives its outputs, one at a time
/// and as the batch of vector 3 (blinds 1 and 2).
#[test]
fn rfc9497_poprf_vectors() {
    let key = rfc_key();
    let info = hex(INFO);
    for (input, blind, blinded, evaluation, output) in VECTORS {
        let input = hex(input);
        let scalar = Ristretto255::deserialize_scalar(&hex(blind)).unwrap();
        let r = PoprfClient::<Ristretto255>::deterministic_blind_unchecked(&input, scalar).unwrap();
        let b: [u8; ELEMENT] = arr(&r.message.serialize());
        assert_eq!(b.to_vec(), hex(blinded));
        let (evaluated, proof) = key.evaluate(&[b], &info).unwrap();
        assert_eq!(evaluated[0].to_vec(), hex(evaluation));
        let state = Blinded { states: vec![r.state], elements: vec![b] };
        let out = finalize(&[&input], &state, &evaluated, &proof, &key.public_key(), &info).unwrap();
        assert_eq!(out[0].to_vec(), hex(output));
        assert_eq!(key.evaluate_direct(&input, &info).unwrap().to_vec(), hex(output));
    }
    // Vector 3: both inputs in one batch with one proof.
    let inputs = [hex(VECTORS[0].0), hex(VECTORS[1].0)];
    let mut states = Vec::new();
    let mut elements = Vec::new();
    for (input, blind) in inputs.iter().zip([BLIND1, BLIND2]) {
        let s = Ristretto255::deserialize_scalar(&hex(blind)).unwrap();
        let r = PoprfClient::<Ristretto255>::deterministic_blind_unchecked(input, s).unwrap();
        elements.push(arr::<ELEMENT>(&r.message.serialize()));
        states.push(r.state);
    }
    assert_eq!(elements[1].to_vec(), hex("423a01c072e06eb1cce96d23acce06e1ea64a609d7ec9e9023f3049f2d64e50c"));
    let (evaluated, proof) = key.evaluate(&elements, &info).unwrap();
    assert_eq!(evaluated[1].to_vec(), hex("aa1f16e903841036e38075da8a46655c94fc92341887eb5819f46312adfc0504"));
    let b = Blinded { states, elements };
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let out = finalize(&refs, &b, &evaluated, &proof, &key.public_key(), &info).unwrap();
    assert_eq!(out[0].to_vec(), hex(VECTORS[0].4));
    assert_eq!(out[1].to_vec(), hex(VECTORS[1].4));
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
