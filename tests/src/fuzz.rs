//! Fuzz targets: every parser that meets outside input, as plain functions
//! that must never panic, whatever the bytes. `fuzz/` (cargo-fuzz, nightly)
//! drives them with libFuzzer; the tests below replay the committed corpus
//! (`fuzz/corpus/<target>/`) on every `cargo test`, so a crash found once
//! stays fixed. docs/operations.md, "Fuzzing", has the commands.

use prost::Message;
use std::path::Path;
use vigil_proto::v1::{
    AcknowledgeRequest, CheckRequest, CosignRequest, EvaluateRequest, NationalBatch, RosterBatch, TokenSet,
};

/// A fuzz target: takes any bytes, must not panic.
pub type Target = fn(&[u8]);

/// Every target, by name (the corpus directory's name).
pub const TARGETS: &[(&str, Target)] = &[
    ("csv", csv),
    ("requests", requests),
    ("notes", notes),
    ("entries", entries),
    ("configs", configs),
    ("oprf", oprf),
];

/// The three CSV readers, both passes, with every usable row normalised
/// and turned into tokens.
pub fn csv(data: &[u8]) {
    use vigil_node::input::{self, Kind, Report};
    let key = vigil_identity::tokens::LinkageKey::new(1, [7; 32]);
    let tk = vigil_identity::tokens::Tokenizer::new(&key);
    let mut out = Vec::new();
    let mut tokenise = |id: &vigil_identity::keys::Identity| {
        tk.tokens(id, &mut out);
    };
    for kind in [Kind::Roster, Kind::Extract, Kind::Applicants] {
        let Ok(scan) = input::scan(data, "fuzz.csv", kind) else { continue };
        let mut report = Report::new("fuzz.csv", "fuzz");
        let _ = match kind {
            Kind::Roster => input::read_roster(data, "fuzz.csv", &scan, &mut report, |r| tokenise(&r.identity), |_| {}),
            Kind::Extract => {
                input::read_extract(data, "fuzz.csv", &scan, &mut report, |r| tokenise(&r.identity), |_| {})
            }
            _ => input::read_applicants(data, "fuzz.csv", &scan, &mut report, |r| tokenise(&r.identity)),
        };
    }
}

/// Every request message the coordinator or key service decodes, the token
/// sets inside them, and sealed details with their record-key wraps (what
/// the coordinator forwards of them, what a force opens, and a force's
/// stored wrap secrets).
pub fn requests(data: &[u8]) {
    let unpack = |s: Option<&TokenSet>| {
        if let Some(s) = s {
            let _ = vigil_proto::tokens::unpack(s, 512);
        }
    };
    if let Ok(b) = RosterBatch::decode(data) {
        b.upserts.iter().for_each(|u| unpack(u.tokens.as_ref()));
    }
    if let Ok(b) = NationalBatch::decode(data) {
        b.upserts.iter().for_each(|u| unpack(u.tokens.as_ref()));
        let _ = vigil_proto::audit::national_commitment(&b);
        let secret = vigil_identity::tokens::WrapSecret::from_bytes([3; 32]);
        for (u, s) in b.upserts.iter().filter_map(|u| u.sealed.as_ref().map(|s| (u, s))) {
            let mut fwd = s.clone();
            vigil_proto::tokens::retain_wraps(&mut fwd, |k| k % 2 == 0);
            let cands = [(vigil_proto::KeyKind::Nino, &secret), (vigil_proto::KeyKind::NameDob, &secret)];
            let _ = vigil_identity::seal::open_wrapped("pnc", &u.record_ref, s, &cands);
        }
    }
    let _ = vigil_node::keyservice::unpack_wraps(data);
    if let Ok(c) = CheckRequest::decode(data) {
        c.applicants.iter().for_each(|a| unpack(a.tokens.as_ref()));
        let _ = vigil_proto::audit::check_commitment(&c);
    }
    let _ = AcknowledgeRequest::decode(data);
    let _ = CosignRequest::decode(data);
    let _ = EvaluateRequest::decode(data);
    unpack(TokenSet::decode(data).ok().as_ref());
}

/// Signed notes, checkpoints, verifier and signer keys, cosignatures.
pub fn notes(data: &[u8]) {
    use vigil_proto::tlog::{Checkpoint, Signer, Verifier, checkpoint, cosignature, note};
    let (signer, _) = Signer::from_seed("vigil.test/audit", &[1; 32]).expect("a fixed key");
    let v = signer.verifier();
    let _ = note::open(data, std::slice::from_ref(&v));
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Checkpoint::open(text, "vigil.test/audit", &v);
    let _ = checkpoint::parse_body_lenient(text);
    let _ = Verifier::from_vkey(text);
    let _ = Signer::from_skey(text);
    let _ = cosignature::WitnessKey::from_vkey(text);
    let (w, _) = cosignature::WitnessSigner::from_seed("witness.test/w1", &[2; 32]).expect("a fixed key");
    let _ = w.verifier().verify_line("vigil.test/audit\n1\nAAAA\n", text);
    let _ = cosignature::open_cosigned(text, &v, &[w.verifier()], 1);
}

/// Log entries, one per line, and the log's invariants over them.
pub fn entries(data: &[u8]) {
    let lines: Vec<Vec<u8>> = data.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    let _ = vigil_proto::invariants::check(&lines);
}

/// Every configuration and policy file.
pub fn configs(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let p = Path::new("/fuzz/config.toml");
    let _ = vigil_node::config::NodeConfig::parse(text, p);
    let _ = vigil_coordinator::config::Config::parse(text, p);
    let _ = vigil_keyserver::config::Config::parse(text, p);
    let _ = vigil_coordinator::policy::Policy::from_toml(text);
}

/// The key service's evaluation and the node's finalisation on arbitrary
/// elements and proofs.
pub fn oprf(data: &[u8]) {
    let key = vigil_oprf::ServerKey::derive(&[5; 32], 1).expect("a fixed key");
    let elements: Vec<[u8; 32]> = data.chunks_exact(32).take(8).map(|c| c.try_into().expect("32 bytes")).collect();
    if elements.is_empty() {
        return;
    }
    let _ = key.evaluate(&elements, b"fuzz");
    let inputs: Vec<&[u8]> = elements.iter().map(|e| &e[..]).collect();
    if let Ok(b) = vigil_oprf::blind(&inputs) {
        let mut proof = [0u8; 64];
        let tail = &data[data.len().saturating_sub(64)..];
        proof[..tail.len()].copy_from_slice(tail);
        let _ = vigil_oprf::finalize(&inputs, &b, &elements, &proof, &key.public_key(), b"fuzz");
    }
}

#[cfg(test)]
mod tests {
    /// Replays every committed corpus file through its target.
    #[test]
    fn the_fuzz_corpus_replays_without_a_crash() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let mut replayed = 0;
        for (name, target) in super::TARGETS {
            let dir = root.join(name);
            let files = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            for f in files {
                let path = f.unwrap().path();
                target(&std::fs::read(&path).unwrap());
                replayed += 1;
            }
        }
        assert!(replayed >= super::TARGETS.len(), "every target has a corpus");
    }

    use std::path::Path;
}
