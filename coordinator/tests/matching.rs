//! Matching end to end in one process: the real normaliser, tokeniser,
//! pepper, index and default policy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use vigil_coordinator::eval;
use vigil_coordinator::matcher::{Hit, Matcher};
use vigil_coordinator::pepper::{Pepper, index_key};
use vigil_coordinator::policy::{Decision, Policy};
use vigil_node::keys::{Identity, Phonetic, RawIdentity};
use vigil_node::synth;
use vigil_node::tokens::{LinkageKey, Tokenizer};

fn decide_self(raw: &RawIdentity<'_>) -> (Identity, Option<Decision>) {
    let mut issues = Vec::new();
    let id = Identity::from_raw(raw, &mut Phonetic::default(), &mut issues);
    let tk = Tokenizer::new(&LinkageKey::new(1, [3; 32]));
    let pepper = Pepper::new([4; 32]);
    let mut toks = Vec::new();
    tk.tokens(&id, &mut toks);
    let keys: Vec<_> = toks.iter().map(|(k, t)| (*k, index_key(&pepper.rekey(t)))).collect();
    let mut m = Matcher::default();
    m.add_record(0, &keys);
    let mut hits: Vec<Hit> = Vec::new();
    m.probe_national(&keys, &mut hits);
    let policy = Policy::default_policy();
    (id, hits.first().map(|h| policy.decide(policy.score(&h.evidence))))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// A record with a name, a date of birth and a corroborating identifier
    /// (NI number or postcode) always confirms against itself; any record
    /// from which a key can be formed is at least a candidate against itself.
    #[test]
    fn a_record_confirms_against_itself(
        forenames in "(Dr |Mr )?[A-Z][a-zé]{1,9}( [A-Z][a-z]{2,8})?",
        surname in "(O')?[A-Z][a-zü]{1,10}(-[A-Z][a-z]{2,8})?",
        y in 1920u16..2008, m in 1u8..13, d in 1u8..29,
        nino in proptest::option::of("[ACEHJLMPRSW][ABCEGHJKLMNPRSTWXYZ][0-9]{6}[A-D]"),
        postcode in proptest::option::of("(LS|M|B|SW|CF)[1-9] [0-9][ABDEFGHJLNPQRSTUWXYZ]{2}"),
    ) {
        let dob = format!("{y:04}-{m:02}-{d:02}");
        let raw = RawIdentity {
            forenames: &forenames,
            surname: &surname,
            date_of_birth: &dob,
            ni_number: nino.as_deref().unwrap_or(""),
            postcode: postcode.as_deref().unwrap_or(""),
            ..Default::default()
        };
        let (id, decision) = decide_self(&raw);
        prop_assert!(id.can_match());
        let corroborated = id.nino.is_some() || id.postcode.is_some();
        if corroborated {
            prop_assert_eq!(decision, Some(Decision::Confirmed));
        } else {
            prop_assert!(matches!(decision, Some(Decision::Confirmed | Decision::Candidate)));
        }
    }
}

#[test]
fn an_identifier_alone_is_a_candidate_against_itself() {
    let raw = RawIdentity { ni_number: "AB123456C", ..Default::default() };
    assert_eq!(decide_self(&raw).1, Some(Decision::Candidate));
}

/// The floors the default policy must meet on a synthetic set with hard
/// negatives: precision at least 0.995 and recall at least 0.97.
#[test]
fn default_policy_meets_precision_and_recall_floors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let params = synth::Params {
        seed: 11,
        forces: 3,
        staff_per_force: 2500,
        national: 40_000,
        overlap: 0.08,
        hard_negatives: 0.03,
        ..synth::Params::default()
    };
    let s = synth::generate(&params, dir.path()).expect("synth");
    let rosters: Vec<_> = s.forces.iter().map(|f| dir.path().join(format!("roster-{f}.csv"))).collect();
    let r = eval::run(
        &rosters,
        &[dir.path().join("extract.csv")],
        &dir.path().join("truth.csv"),
        &Policy::default_policy(),
    )
    .expect("eval");
    println!("{}", r.to_text());
    assert_eq!(r.subjects, 7500);
    assert!(r.true_positives + r.false_negatives >= 500, "too few true pairs to measure: {}", r.true_positives);
    assert!(r.hard_negatives.values().map(|(n, _)| n).sum::<usize>() >= 200);
    assert!(r.precision >= 0.995, "precision {}", r.precision);
    assert!(r.recall >= 0.97, "recall {}", r.recall);
    assert!(r.candidates > 0, "candidates are counted");
}
