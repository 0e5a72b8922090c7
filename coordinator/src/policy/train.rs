//! Training a policy without labels, from what the coordinator holds. Pure:
//! the caller collects the pairs (`vigil-coordinator calibrate` from a
//! store, `vigil-lab eval` from files) and gets a new [`Policy`].
//!
//! Two steps, both expectation–maximisation over the policy's three classes
//! (same person, relative, unrelated):
//!
//! 1. **Chance agreement** (`u`) from pairs of national records. A national
//!    record probed against the other national records shows how often
//!    unrelated people agree by chance on forename and date of birth
//!    (with different surnames), surname and date of birth (different
//!    forenames), and date of birth and postcode (different names). Each
//!    such pair counts with its posterior of being unrelated (so the same
//!    person recorded twice, or twins, do not inflate the rates); the
//!    counts, against the number of record pairs that could have agreed,
//!    rescale the exact-forename, exact-surname and exact-postcode chance
//!    rates. A pseudo-count keeps small data sets near the shipped rates.
//! 2. **Same-person levels** (`m`) and the number of national records per
//!    subject that are the same person, from every (subject, record) pair
//!    that agrees on at least one kind: each pair's posterior of being the
//!    same person spreads its weight over the levels each field may have.
//!    Relatives and chance rates stay fixed here, which keeps the fit
//!    stable on pairs that were only found because they agree somewhere.
//!    A Dirichlet prior (a pseudo-count of pairs at the starting `m`) keeps
//!    rarely seen levels sensible.

use vigil_proto::KeyKind;
use vigil_proto::kinds::{FIELDS, Field};

use super::{Evidence, Features, Policy, Training, features};

/// Pseudo-count of the chance-rate estimates (expected pairs at the prior).
const CHANCE_PSEUDO: f64 = 5.0;
/// Pseudo-count of pairs at the starting `m` for each field.
const M_PSEUDO: f64 = 20.0;
/// Rounds of each fit.
const ROUNDS: u32 = 60;

/// Which chance-agreement count a pair of national records feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    /// `forename_dob` agrees; surnames differ; postcodes differ or absent.
    Forename,
    /// `surname_dob` agrees; forenames differ; postcodes differ or absent.
    Surname,
    /// `dob_postcode` agrees; both names differ.
    Postcode,
}

const BUCKETS: [Bucket; 3] = [Bucket::Forename, Bucket::Surname, Bucket::Postcode];

impl Bucket {
    fn kind(self) -> KeyKind {
        match self {
            Bucket::Forename => KeyKind::ForenameDob,
            Bucket::Surname => KeyKind::SurnameDob,
            Bucket::Postcode => KeyKind::DobPostcode,
        }
    }

    fn field(self) -> Field {
        match self {
            Bucket::Forename => Field::Forename,
            Bucket::Surname => Field::Surname,
            Bucket::Postcode => Field::Postcode,
        }
    }
}

/// Pairs of national records, for chance agreement.
#[derive(Debug, Default, Clone)]
pub struct NationalPairs {
    samples: Vec<(Features, u8)>,
    /// Record pairs that could have agreed, per bucket.
    exposure: [f64; 3],
    probed: u64,
}

impl NationalPairs {
    /// Notes one probed national record: `others_with(kind)` is the number
    /// of other national records holding that kind, and `has(kind)` whether
    /// this record does.
    pub fn probed(&mut self, has: impl Fn(KeyKind) -> bool, others_with: impl Fn(KeyKind) -> u32) {
        self.probed += 1;
        for (i, b) in BUCKETS.iter().enumerate() {
            if has(b.kind()) {
                self.exposure[i] += f64::from(others_with(b.kind()));
            }
        }
    }

    /// Adds a pair of a probed record and another national record that
    /// agrees with it. Pairs that feed no count are ignored.
    pub fn add(&mut self, e: &Evidence) {
        let (seen, x) = features(e);
        let lvl = |f: Field| seen[f.index()];
        let differs = |f: Field| lvl(f) == Some(0);
        let apart = |f: Field| matches!(lvl(f), None | Some(0));
        let mut mask = 0u8;
        if e.agreeing.contains(KeyKind::ForenameDob) && differs(Field::Surname) && apart(Field::Postcode) {
            mask |= 1;
        }
        if e.agreeing.contains(KeyKind::SurnameDob) && differs(Field::Forename) && apart(Field::Postcode) {
            mask |= 2;
        }
        if e.agreeing.contains(KeyKind::DobPostcode) && differs(Field::Forename) && differs(Field::Surname) {
            mask |= 4;
        }
        if mask != 0 && apart(Field::Nino) {
            self.samples.push((x, mask));
        }
    }

    /// National records probed.
    pub fn records_probed(&self) -> u64 {
        self.probed
    }

    /// Pairs kept.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no pair was kept.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// (Subject, record) pairs that agree on at least one kind.
#[derive(Debug, Default, Clone)]
pub struct SubjectPairs {
    samples: Vec<Features>,
    subjects: u64,
}

impl SubjectPairs {
    /// Notes one probed subject.
    pub fn probed(&mut self) {
        self.subjects += 1;
    }

    /// Adds a pair.
    pub fn add(&mut self, e: &Evidence) {
        self.samples.push(features(e).1);
    }

    /// Subjects probed.
    pub fn subjects(&self) -> u64 {
        self.subjects
    }

    /// Pairs kept.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no pair was kept.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

fn posterior(p: &Policy, x: &Features) -> [f64; 3] {
    let l = p.log_likelihoods(x);
    let mx = l[0].max(l[1]).max(l[2]);
    let e = [(l[0] - mx).exp(), (l[1] - mx).exp(), (l[2] - mx).exp()];
    let z = e[0] + e[1] + e[2];
    [e[0] / z, e[1] / z, e[2] / z]
}

/// The chance of the conditions a bucket puts on the other fields, for
/// unrelated records.
fn condition(u: &super::Table, b: Bucket) -> f64 {
    let f = |f: Field, l: usize| u[f.index()][l];
    match b {
        Bucket::Forename => (f(Field::Surname, 0) + f(Field::Surname, 1)) * f(Field::Postcode, 0),
        Bucket::Surname => f(Field::Forename, 0) * f(Field::Postcode, 0),
        Bucket::Postcode => {
            (f(Field::Forename, 0) + f(Field::Forename, 1)) * (f(Field::Surname, 0) + f(Field::Surname, 1))
        }
    }
}

/// Scales the exact level of `field` (and its sounds-alike level for names)
/// by `theta`, taking the difference from level 0.
fn rescale(u: &mut super::Table, field: Field, theta: f64) {
    let row = &mut u[field.index()];
    let top = usize::from(field.max_level());
    let scaled: Vec<usize> = if field == Field::Postcode { vec![top] } else { vec![top, top - 1] };
    for l in scaled {
        row[l] *= theta;
    }
    let rest: f64 = row[1..=top].iter().sum();
    row[0] = (1.0 - rest).max(1e-6);
    let sum: f64 = row[..=top].iter().sum();
    for p in &mut row[..=top] {
        *p /= sum;
    }
}

/// Step 1: chance rates from national pairs. Returns the policy with
/// rescaled `u`.
fn fit_chance(start: &Policy, pairs: &NationalPairs) -> Policy {
    let base = start.u;
    let mut p = start.clone();
    // The same person recorded twice among national records: as common as
    // the policy's prior per subject, then fitted.
    let mut dup = start.matches_per_subject.min(1.0);
    let expected: Vec<f64> = BUCKETS
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let d = base[Field::Dob.index()][3];
            let top = usize::from(b.field().max_level());
            pairs.exposure[i] * base[b.field().index()][top] * d * condition(&base, *b)
        })
        .collect();
    for _ in 0..ROUNDS {
        let mut q = p.clone();
        q.matches_per_subject = dup.max(1e-6);
        let mut counts = [0.0f64; 3];
        let mut same = 0.0;
        for (x, mask) in &pairs.samples {
            let g = posterior(&q, x);
            same += g[0];
            for (i, c) in counts.iter_mut().enumerate() {
                if mask & (1 << i) != 0 {
                    *c += g[2];
                }
            }
        }
        let mut u = base;
        for (i, b) in BUCKETS.iter().enumerate() {
            let theta = (counts[i] + CHANCE_PSEUDO) / (expected[i] + CHANCE_PSEUDO);
            rescale(&mut u, b.field(), theta);
        }
        let new_dup = if pairs.probed > 0 { same / pairs.probed as f64 } else { dup };
        let change = (new_dup - dup).abs() + u.iter().zip(p.u.iter()).map(|(a, b)| rel_change(a, b)).sum::<f64>();
        p.u = u;
        dup = new_dup;
        if change < 1e-6 {
            break;
        }
    }
    p
}

fn rel_change(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    a.iter().zip(b).map(|(x, y)| if *y > 0.0 { ((x - y) / y).abs() } else { 0.0 }).sum()
}

/// Step 2: same-person levels and matches per subject. Returns the policy
/// and the rounds run.
fn fit_same_person(start: &Policy, pairs: &SubjectPairs) -> (Policy, u32) {
    let mut p = start.clone();
    let prior = start.m;
    let mut rounds = 0;
    for _ in 0..ROUNDS {
        rounds += 1;
        let mut acc = [[0.0f64; 4]; FIELDS.len()];
        let mut same = 0.0;
        for x in &pairs.samples {
            let g = posterior(&p, x)[0];
            if g < 1e-9 {
                continue;
            }
            same += g;
            for (i, mask) in x.possible.iter().enumerate() {
                if *mask == 0 {
                    continue;
                }
                let z: f64 = (0..4).filter(|l| mask & (1 << l) != 0).map(|l| p.m[i][l]).sum();
                for (l, slot) in acc[i].iter_mut().enumerate() {
                    if mask & (1 << l) != 0 {
                        *slot += g * p.m[i][l] / z;
                    }
                }
            }
        }
        let mut m = p.m;
        for f in FIELDS {
            let i = f.index();
            let top = usize::from(f.max_level());
            let total: f64 = acc[i][..=top].iter().sum();
            for l in 0..=top {
                m[i][l] = (acc[i][l] + M_PSEUDO * prior[i][l]) / (total + M_PSEUDO);
            }
        }
        let lambda =
            if pairs.subjects > 0 { (same / pairs.subjects as f64).clamp(1e-4, 100.0) } else { p.matches_per_subject };
        let change = (lambda - p.matches_per_subject).abs() / p.matches_per_subject
            + m.iter().zip(p.m.iter()).map(|(a, b)| rel_change(a, b)).sum::<f64>();
        p.m = m;
        p.matches_per_subject = lambda;
        if change < 1e-6 {
            break;
        }
    }
    (p, rounds)
}

/// Trains a policy from `start` on national pairs (chance agreement) and
/// subject pairs (same-person levels). The result is named `version`.
pub fn train(start: &Policy, national: &NationalPairs, subjects: &SubjectPairs, records: u64, version: &str) -> Policy {
    let chance = fit_chance(start, national);
    let (mut p, rounds) = fit_same_person(&chance, subjects);
    p.version = version.to_string();
    p.training = Some(Training {
        from_version: start.version.clone(),
        subjects: subjects.subjects,
        records,
        pairs: subjects.samples.len() as u64,
        chance_pairs: national.samples.len() as u64,
        rounds,
    });
    p
}
