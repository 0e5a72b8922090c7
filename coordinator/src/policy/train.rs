//! Training a policy without labels, from what the coordinator holds. Pure:
//! the caller collects the pairs (`vigil-coordinator calibrate` from a
//! store, `vigil-lab eval` from files) and gets a new [`Policy`].
//!
//! Expectation–maximisation over every (subject, record) pair that agrees
//! on at least one kind, as plaintext linkage tools train their `m`
//! probabilities: each pair's posterior of being the same person spreads its
//! weight over the levels each field may have, and the posteriors summed
//! over subjects give the number of national records per subject that are
//! the same person (the prior), and likewise each kind of relative (divided
//! by the share of such pairs that agree on some kind at all, since only
//! those are seen). A Dirichlet prior (a
//! pseudo-count of pairs at the starting levels) keeps rarely seen levels
//! sensible.
//!
//! Chance agreement (`u`) is not part of that fit: on pairs that were only
//! found because they agree somewhere it is not identifiable, and on pairs
//! of national records it would count people recorded twice as
//! coincidences (docs/matching.md has the figures). Instead the forename
//! and surname chance rates are measured on pairs of *subjects* (one row per
//! member of staff, so no one is there twice): how many pairs agree on
//! forename and date of birth with different surnames (and the other way
//! round), against how many pairs could have. A pseudo-count keeps small
//! rosters near the population rates, and the policy still refines the rate
//! for each pair from how many national records hold its tokens.

use vigil_proto::KeyKind;
use vigil_proto::kinds::{ALL, FIELDS, Field, KindSet};

use super::subject::{self, SubjectPrior};
use super::{Evidence, Features, Policy, Table, Training, features};

/// Pseudo-count of the chance-rate estimates (expected pairs at the
/// population rate).
const CHANCE_PSEUDO: f64 = 5.0;
/// Furthest the fitted chance rates move from the population rates (a
/// factor either way).
const THETA_BOUND: f64 = 10.0;

/// Pseudo-count of pairs at the starting `m` for each field.
const M_PSEUDO: f64 = 20.0;
/// The NI number's pseudo-count: far larger, because pairs with the same
/// name and date of birth and different NI numbers (namesakes, where the
/// national data hold them) would otherwise teach the model that the same
/// person often has two NI numbers.
const M_PSEUDO_NINO: f64 = 2000.0;
/// Most rounds of the fit.
const ROUNDS: u32 = 60;
/// Subjects' worth of weight of the starting rates of relatives.
const RELATIVE_PSEUDO: f64 = 100.0;

/// (Subject, record) pairs that agree on at least one kind, grouped by
/// subject and source.
#[derive(Debug, Default, Clone)]
pub struct SubjectPairs {
    samples: Vec<Features>,
    /// (first sample, count) of each subject's candidates in one source.
    groups: Vec<(usize, usize)>,
    subjects: u64,
    sources: u64,
}

impl SubjectPairs {
    /// Notes one probed subject.
    pub fn probed(&mut self) {
        self.subjects += 1;
    }

    /// How many sources the records come from (at least 1).
    pub fn set_sources(&mut self, n: u64) {
        self.sources = n;
    }

    /// Adds one subject's candidates in one source.
    pub fn add_group<'a>(&mut self, evidence: impl IntoIterator<Item = &'a Evidence>) {
        let first = self.samples.len();
        self.samples.extend(evidence.into_iter().map(|e| features(e).1));
        if self.samples.len() > first {
            self.groups.push((first, self.samples.len() - first));
        }
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

/// Pairs of subjects that agree by chance on a name and date of birth.
#[derive(Debug, Default, Clone)]
pub struct SubjectChance {
    /// Subjects holding each kind.
    holding: Vec<u64>,
    /// Pairs agreeing on `forename_dob` with different surnames (at most a
    /// part of them agreeing), and on `surname_dob` with different forenames.
    counts: [u64; 2],
}

impl SubjectChance {
    /// Starts from the kinds every subject holds.
    pub fn new(subjects: impl Iterator<Item = KindSet>) -> SubjectChance {
        let mut holding = vec![0u64; ALL.len()];
        for kinds in subjects {
            for k in kinds.iter() {
                holding[k.index()] += 1;
            }
        }
        SubjectChance { holding, counts: [0; 2] }
    }

    /// Adds a pair of two different subjects that agree on something (each
    /// pair once).
    pub fn add(&mut self, e: &Evidence) {
        let seen = super::seen_levels(e);
        let lvl = |f: Field| seen[f.index()];
        let apart = |f: Field| matches!(lvl(f), None | Some(0));
        if !apart(Field::Postcode) || !apart(Field::Nino) {
            return;
        }
        if e.agreeing.contains(KeyKind::ForenameDob) && matches!(lvl(Field::Surname), Some(0 | 1)) {
            self.counts[0] += 1;
        }
        if e.agreeing.contains(KeyKind::SurnameDob) && matches!(lvl(Field::Forename), Some(0 | 1)) {
            self.counts[1] += 1;
        }
    }

    fn pairs(&self, k: KeyKind) -> f64 {
        let n = self.holding.get(k.index()).copied().unwrap_or(0) as f64;
        n * (n - 1.0).max(0.0) / 2.0
    }

    /// The policy's chance rates with the exact (and sounds-alike) forename
    /// and surname rates rescaled to what the subjects show.
    fn fit(&self, u: &Table) -> Table {
        let at = |f: Field, l: usize| u[f.index()][l];
        let d = at(Field::Dob, 3);
        let mut out = *u;
        let buckets = [
            (KeyKind::ForenameDob, Field::Forename, at(Field::Surname, 0) + at(Field::Surname, 1)),
            (KeyKind::SurnameDob, Field::Surname, at(Field::Forename, 0) + at(Field::Forename, 1)),
        ];
        for (i, (kind, field, other)) in buckets.into_iter().enumerate() {
            let expected = self.pairs(kind) * at(field, 3) * d * other * at(Field::Postcode, 0);
            let theta = ((self.counts[i] as f64 + CHANCE_PSEUDO) / (expected + CHANCE_PSEUDO))
                .clamp(1.0 / THETA_BOUND, THETA_BOUND);
            let row = &mut out[field.index()];
            row[3] *= theta;
            row[2] *= theta;
            row[0] = (1.0 - row[1] - row[2] - row[3]).max(1e-6);
            let sum: f64 = row.iter().sum();
            row.iter_mut().for_each(|p| *p /= sum);
        }
        out
    }
}

fn posterior(p: &Policy, x: &Features) -> [f64; super::CLASSES] {
    p.posterior(x)
}

fn rel_change(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    a.iter().zip(b).map(|(x, y)| if *y > 0.0 { ((x - y) / y).abs() } else { 0.0 }).sum()
}

/// The chance that a pair of a class agrees on at least one kind (so that
/// the coordinator sees it at all), with every field on both sides: the sum
/// over every combination of levels of its probability under `table`, where
/// some kind's levels are reached.
fn seen_share(table: &Table) -> f64 {
    let tops = FIELDS.map(|f| usize::from(f.max_level()));
    let mut total = 0.0;
    let mut levels = [0usize; FIELDS.len()];
    loop {
        let p: f64 = levels.iter().enumerate().map(|(i, l)| table[i][*l]).product();
        let agrees = ALL.iter().any(|k| k.implies().iter().all(|(f, l)| levels[f.index()] >= usize::from(*l)));
        if agrees {
            total += p;
        }
        // next combination
        let mut i = 0;
        loop {
            if i == levels.len() {
                return total.max(1e-6);
            }
            if levels[i] < tops[i] {
                levels[i] += 1;
                break;
            }
            levels[i] = 0;
            i += 1;
        }
    }
}

/// Same-person levels, and the numbers of national records per subject that
/// are the same person or a relative. Pairs are only seen when they agree
/// on some kind, so each class's count is divided by the share of its pairs
/// that do ([`seen_share`]). Returns the policy and the rounds run.
fn fit_same_person(start: &Policy, pairs: &SubjectPairs) -> (Policy, u32) {
    let mut p = start.clone();
    let prior = start.m;
    let rel0 = start.relatives_per_subject;
    let rel_seen = start.r.map(|t| seen_share(&t));
    let mut rounds = 0;
    for _ in 0..ROUNDS {
        rounds += 1;
        let mut acc = [[0.0f64; 4]; FIELDS.len()];
        let mut same = 0.0;
        let mut relatives = [0.0f64; 3];
        for x in &pairs.samples {
            let post = posterior(&p, x);
            for (r, slot) in relatives.iter_mut().enumerate() {
                *slot += post[1 + r];
            }
            let g = post[0];
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
            let a = if f == Field::Nino { M_PSEUDO_NINO } else { M_PSEUDO };
            for l in 0..=top {
                m[i][l] = (acc[i][l] + a * prior[i][l]) / (total + a);
            }
        }
        let n = pairs.subjects as f64;
        let (lambda, rel) = if pairs.subjects > 0 {
            let mut rel = rel0;
            for r in 0..3 {
                // A weak prior: the starting rate, worth RELATIVE_PSEUDO subjects.
                rel[r] = ((relatives[r] / rel_seen[r] + RELATIVE_PSEUDO * rel0[r]) / (n + RELATIVE_PSEUDO))
                    .clamp(1e-6, 10.0);
            }
            ((same / n / seen_share(&m)).clamp(1e-4, 100.0), rel)
        } else {
            (p.matches_per_subject, rel0)
        };
        let change = (lambda - p.matches_per_subject).abs() / p.matches_per_subject
            + rel.iter().zip(p.relatives_per_subject.iter()).map(|(a, b)| (a - b).abs() / b).sum::<f64>()
            + m.iter().zip(p.m.iter()).map(|(a, b)| rel_change(a, b)).sum::<f64>();
        p.m = m;
        p.matches_per_subject = lambda;
        p.relatives_per_subject = rel;
        if change < 1e-6 {
            break;
        }
    }
    (p, rounds)
}

/// Trains a policy from `start`: chance rates from pairs of subjects, then
/// same-person levels from (subject, record) pairs. The result is named
/// `version`; `records` is the number of national records held.
pub fn train(start: &Policy, chance: &SubjectChance, subjects: &SubjectPairs, records: u64, version: &str) -> Policy {
    let mut from = start.clone();
    from.u = chance.fit(&start.u);
    let (mut p, rounds) = fit_same_person(&from, subjects);
    let prior = fit_subject_prior(&p, subjects);
    p.subject_has_record = prior.has_record;
    p.further_record = prior.further;
    p.version = version.to_string();
    p.training = Some(Training {
        from_version: start.version.clone(),
        subjects: subjects.subjects,
        records,
        pairs: subjects.samples.len() as u64,
        rounds,
    });
    p
}

/// The subject-level prior by expectation–maximisation over every
/// subject's candidates in each source ([`super::subject`]), with the
/// trained levels: the share of (subject, source) with a record is the mean
/// posterior that the set is not empty, and the chance of a further record
/// comes from the expected size of a non-empty set (geometric: mean
/// `1/(1 − q)`). `unseen_share` is kept as it is.
fn fit_subject_prior(p: &Policy, s: &SubjectPairs) -> SubjectPrior {
    let log_w: Vec<f64> = s.samples.iter().map(|x| p.log_weight(x)).collect();
    let units = (s.subjects * s.sources.max(1)).max(s.groups.len() as u64) as f64;
    let mut prior = p.subject_prior();
    if units == 0.0 {
        return prior;
    }
    let empty = units - s.groups.len() as f64;
    for _ in 0..40 {
        let (mut has, mut count) = (0.0, 0.0);
        for &(first, len) in &s.groups {
            let n = f64::from(s.samples[first].records.max(1));
            let post = subject::posterior(&log_w[first..first + len], n, prior);
            has += post.has_record;
            count += post.expected;
        }
        let none = subject::posterior(&[], 1.0, prior);
        has += empty * none.has_record;
        count += empty * none.expected;
        let mean = (count / has.max(1e-12)).max(1.0);
        prior.has_record = (has / units).clamp(1e-4, 0.999);
        prior.further = (1.0 - 1.0 / mean).clamp(1e-3, 0.9);
    }
    prior
}
