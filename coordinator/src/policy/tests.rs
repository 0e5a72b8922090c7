use super::*;
use KeyKind::*;

/// Kinds a full identity (names, date, postcode, NI number) has: every
/// kind nodes form.
fn full() -> KindSet {
    ALL.into_iter().filter(|k| !vigil_proto::kinds::RETIRED.contains(k)).collect()
}

/// Kinds without the NI number.
fn no_nino() -> KindSet {
    full().iter().filter(|k| !matches!(k, Nino | NinoHeadYob | NinoTailYob | NinoDigitsBirthday)).collect()
}

fn ev(agree: &[KeyKind], both: KindSet, records: u32) -> Evidence {
    Evidence {
        agreeing: agree.iter().copied().collect(),
        shares: [1; ALL.len()],
        subject_kinds: both,
        record_kinds: both,
        records,
    }
}

/// Every kind whose implied levels `levels` (F, S, D, P, N) reach.
fn agreeing_at(levels: [u8; 5], have: KindSet) -> Vec<KeyKind> {
    have.iter().filter(|k| k.implies().iter().all(|(f, l)| levels[f.index()] >= *l)).collect()
}

const NATIONAL: u32 = 13_000_000;

#[test]
fn default_policy_parses_and_round_trips() {
    let p = Policy::default_policy();
    assert!(p.confirm > p.candidate);
    let again = Policy::from_toml(&p.to_toml()).unwrap();
    let close = |a: &Table, b: &Table| {
        a.iter().flatten().zip(b.iter().flatten()).all(|(x, y)| (x - y).abs() <= 1e-5 * y.max(1e-12))
    };
    assert!(close(&again.m, &p.m) && close(&again.u, &p.u));
    assert!((0..RELATIVES.len()).all(|i| close(&again.r[i], &p.r[i])));
    assert_eq!(again.relatives_per_subject, p.relatives_per_subject);
    assert_eq!(again.version, p.version);
}

/// A side that has not sent again since `name_yob_district` was retired
/// holds it and not `name_district`: a pair with a side that has sent again
/// has neither in common, so the district shows nothing either way, as for
/// a pair whose sides lack a postcode kind in common.
#[test]
fn a_retired_kind_on_one_side_shows_nothing() {
    let new_side = no_nino();
    let old_side: KindSet = no_nino().iter().filter(|k| *k != NameDistrict).chain([NameYobDistrict]).collect();
    let agree = agreeing_at([3, 3, 3, 0, 0], no_nino());
    let e = Evidence { subject_kinds: new_side, record_kinds: old_side, ..ev(&agree, no_nino(), NATIONAL) };
    let (seen, x) = features(&e);
    assert_eq!(seen[3], Some(0));
    // name_postcode still rules out the exact postcode; the district stays open.
    assert_eq!(x.possible[3], 0b011);
    let both_new = features(&ev(&agree, no_nino(), NATIONAL)).1;
    assert_eq!(both_new.possible[3], 0b001, "name_district shows the district differs");
    let p = Policy::default_policy();
    assert!(p.probability(&x) > p.probability(&both_new));
}

#[test]
fn fields_string_and_seen_levels() {
    let e = ev(&agreeing_at([3, 2, 3, 0, 0], no_nino()), no_nino(), NATIONAL);
    let a = Policy::default_policy().assess(&e);
    assert_eq!(a.fields(), "F3 S2 D3 P0 N-");
}

#[test]
fn possible_levels_follow_what_kinds_would_have_shown() {
    // Forename, surname and date agree exactly, postcode not at all: the
    // postcode cannot be exact (name_postcode would agree) nor the district
    // (name_district would), so only level 0 is possible.
    let seen: Seen = [Some(3), Some(3), Some(3), Some(0), None];
    assert_eq!(possible_levels(&seen, no_nino()), [1 << 3, 1 << 3, 1 << 3, 1 << 0, 0]);
    // Nothing agrees on the forename while surname and date agree exactly:
    // initial_surname_dob rules out level 1, phonetic_dob needs the surname
    // at 2 and the date at 3 (so level 2 is ruled out), name_dob level 3.
    let seen: Seen = [Some(0), Some(3), Some(3), Some(0), None];
    assert_eq!(possible_levels(&seen, no_nino())[0], 1);
    // Date seen at year only, names exact: the date is year (1) or maybe
    // nothing else; 2 and 3 would have shown through name_md and name_dob.
    let seen: Seen = [Some(3), Some(3), Some(1), Some(1), None];
    assert_eq!(possible_levels(&seen, no_nino())[2], 1 << 1);
    // Without kinds that could show it, every higher level stays possible.
    let only: KindSet = [BirthdayPostcode].into_iter().collect();
    let seen: Seen = [Some(0), Some(0), Some(3), Some(2), None];
    assert_eq!(possible_levels(&seen, only)[0], 0b1111);
}

/// `possible_levels` as first written: level by level, kind by kind.
fn possible_levels_by_level(seen: &Seen, common: KindSet) -> [u8; FIELDS.len()] {
    let mut out = [0u8; FIELDS.len()];
    for f in FIELDS {
        let i = f.index();
        let Some(lo) = seen[i] else { continue };
        let mut mask = 1u8 << lo;
        for l in lo + 1..=f.max_level() {
            let revealed = common.iter().any(|k| {
                let need = k.implies();
                need.iter().any(|(g, gl)| *g == f && lo < *gl && *gl <= l)
                    && need.iter().all(|(g, gl)| *g == f || seen[g.index()].is_some_and(|s| s >= *gl))
            });
            if !revealed {
                mask |= 1 << l;
            }
        }
        out[i] = mask;
    }
    out
}

proptest::proptest! {
    #[test]
    fn possible_levels_in_one_pass_equal_level_by_level(
        levels in proptest::collection::vec(proptest::option::of(0u8..4), FIELDS.len()),
        kinds in proptest::collection::vec(proptest::bool::ANY, ALL.len()),
    ) {
        let mut seen: Seen = [None; FIELDS.len()];
        for f in FIELDS {
            seen[f.index()] = levels[f.index()].map(|l| l.min(f.max_level()));
        }
        let common: KindSet = ALL.iter().zip(&kinds).filter(|(_, on)| **on).map(|(k, _)| *k).collect();
        proptest::prop_assert_eq!(possible_levels(&seen, common), possible_levels_by_level(&seen, common));
    }
}

/// `log_likelihoods` as first written: 25 logarithms a pair.
fn log_likelihoods_summed(p: &Policy, x: &Features) -> [f64; CLASSES] {
    let pm = p.pair_prior(x.records);
    let n = f64::from(x.records.max(1));
    let pr = p.relatives_per_subject.map(|r| (r / n).min(0.1));
    let pu = 1.0 - pm - pr.iter().sum::<f64>();
    let mut u = p.u;
    if let Some(o) = x.others_of(ForenameDob) {
        u[Field::Forename.index()][3] = p.value_rate(Field::Forename, o, x.records);
    }
    if let Some(o) = x.others_of(SurnameDob) {
        u[Field::Surname.index()][3] = p.value_rate(Field::Surname, o, x.records);
    }
    let mut out = [pm.ln(), pr[0].ln(), pr[1].ln(), pr[2].ln(), pr[3].ln(), pu.ln()];
    for (i, mask) in x.possible.iter().enumerate() {
        out[0] += log_sum(&p.m[i], *mask);
        for r in 0..RELATIVES.len() {
            out[1 + r] += log_sum(&p.r[r][i], *mask);
        }
        out[UNRELATED] += log_sum(&u[i], *mask);
    }
    out[UNRELATED] += p.common_values(&u, x).ln();
    out
}

proptest::proptest! {
    #[test]
    fn log_likelihoods_from_tables_equal_the_sums(
        masks in proptest::collection::vec(0u8..16, FIELDS.len()),
        kinds in proptest::collection::vec(proptest::bool::ANY, ALL.len()),
        others in proptest::collection::vec(0u32..50, ALL.len()),
        records in 1u32..20_000_000,
        trained in proptest::bool::ANY,
    ) {
        let mut p = Policy::default_policy();
        if trained {
            // Tables that differ from the shipped ones, as training leaves them.
            p.m[Field::Dob.index()] = [0.1, 0.2, 0.3, 0.4];
            p.u[Field::Forename.index()] = [0.7, 0.2, 0.06, 0.04];
            p.tables_changed();
        }
        let mut x = Features {
            possible: [0; FIELDS.len()],
            agreeing: ALL.iter().zip(&kinds).filter(|(_, on)| **on).map(|(k, _)| *k).collect(),
            others: [0; ALL.len()],
            records,
        };
        for f in FIELDS {
            x.possible[f.index()] = masks[f.index()] & ((1 << (f.max_level() + 1)) - 1);
        }
        x.others.copy_from_slice(&others);
        let fast = p.log_likelihoods(&x);
        let summed = log_likelihoods_summed(&p, &x);
        proptest::prop_assert_eq!(fast.map(f64::to_bits), summed.map(f64::to_bits));
    }
}

#[test]
fn decisions_at_national_scale() {
    let p = Policy::default_policy();
    let d = |levels: [u8; 5], have: KindSet| {
        let e = ev(&agreeing_at(levels, have), have, NATIONAL);
        p.assess(&e)
    };
    // Everything agrees.
    assert_eq!(d([3, 3, 3, 2, 2], full()).decision, Decision::Confirmed);
    // NI number and names agree, a typo in the date of birth.
    assert_eq!(d([3, 3, 2, 2, 2], full()).decision, Decision::Confirmed);
    // No NI number: names, date and postcode agree.
    assert_eq!(d([3, 3, 3, 2, 0], no_nino()).decision, Decision::Confirmed);
    // A misspelt surname, the rest agrees.
    assert_eq!(d([3, 2, 3, 2, 0], no_nino()).decision, Decision::Confirmed);
    // A twin: different forename, same surname, date and address; NI numbers differ.
    assert_eq!(d([0, 3, 3, 2, 0], full()).decision, Decision::NoMatch);
    // A namesake: same names, everything else differs.
    assert_eq!(d([3, 3, 0, 0, 0], full()).decision, Decision::NoMatch);
    // A sibling at the same address.
    assert_eq!(d([0, 3, 1, 2, 0], no_nino()).decision, Decision::NoMatch);
    // A different NI number on both sides rules out a name-and-date match.
    assert_ne!(d([3, 3, 3, 0, 0], full()).decision, Decision::Confirmed);
}

#[test]
fn the_prior_follows_the_number_of_records() {
    let p = Policy::default_policy();
    let e = |records| ev(&agreeing_at([3, 3, 3, 0, 0], no_nino()), no_nino(), records);
    assert!(p.assess(&e(5_000)).probability > p.assess(&e(NATIONAL)).probability);
}

#[test]
fn a_common_name_counts_for_less_than_a_rare_one() {
    let p = Policy::default_policy();
    let agree = agreeing_at([3, 3, 3, 1, 0], no_nino());
    let mut rare = ev(&agree, no_nino(), NATIONAL);
    let mut common = rare;
    rare.shares[ForenameDob.index()] = 1;
    common.shares[ForenameDob.index()] = 40;
    common.shares[SurnameDob.index()] = 12;
    assert!(p.assess(&rare).probability > p.assess(&common).probability);
}

#[test]
fn bad_policies_are_refused_with_the_reason() {
    let base = DEFAULT_POLICY.to_string();
    let cases = [
        (base.replace("version =", "versio ="), "unknown field"),
        (base.replace("scheme = 2", "scheme = 1"), "scheme 1"),
        (base.replace("confirm_probability = 0.95", "confirm_probability = 1.5"), "between 0 and 1"),
        (base.replace("candidate_probability = 0.5", "candidate_probability = 0.999"), "must not exceed"),
        (base.replace("nino = [0.005, 0.075, 0.92]", "nino = [0.005, 0.995]"), "[same_person] nino needs 3"),
        (base.replace("forename = [0.03, 0.03, 0.04, 0.90]", "forename = [0.03, 0.03, 0.04, 0.80]"), "add up"),
        (format!("{base}\nextra = 1\n"), "extra"),
    ];
    for (text, want) in cases {
        let err = Policy::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains(want), "{err} does not mention {want}");
    }
}
