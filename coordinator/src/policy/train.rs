//! Training a policy without labels, from what the coordinator holds. Pure:
//! the caller collects the pairs (`vigil-coordinator calibrate` from a
//! store, `vigil-lab eval` from files) and gets a new [`Policy`].
//!
//! Expectation–maximisation over every (subject, record) pair that agrees
//! on at least one kind, as plaintext linkage tools train their `m`
//! probabilities: each pair's posterior of being the same person (as the
//! policy decides it, with the subject's other candidates in the same source
//! and the subject-level prior `ρ`, `q` refitted in the same rounds) spreads
//! its weight over the levels each field may have; what is not the same
//! person is shared among the relatives' classes and chance as the pair on
//! its own says; and the posteriors summed
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
    /// The record of each sample (any id unique among the records).
    record: Vec<u32>,
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

    /// Adds one subject's candidates in one source: (record id, evidence).
    pub fn add_group<'a>(&mut self, pairs: impl IntoIterator<Item = (u32, &'a Evidence)>) {
        let first = self.samples.len();
        for (record, e) in pairs {
            self.samples.push(features(e).1);
            self.record.push(record);
        }
        if self.samples.len() > first {
            self.groups.push((first, self.samples.len() - first));
        }
    }

    /// National records held when the pairs were seen.
    fn records(&self) -> u32 {
        self.samples.first().map_or(1, |x| x.records.max(1))
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
    let mut rounds = 0;
    for _ in 0..ROUNDS {
        rounds += 1;
        let mut acc = [[0.0f64; 4]; FIELDS.len()];
        let mut same = 0.0;
        let mut relatives = [0.0f64; super::RELATIVES.len()];
        let rel_seen = p.r.map(|t| seen_share(&t));
        let judged = judge(&p, pairs);
        for ((x, &g), post) in pairs.samples.iter().zip(&judged.same).zip(&judged.classes) {
            // What is not the subject's record is shared among relatives
            // and chance as the pair on its own says.
            let others: f64 = post[1..].iter().sum();
            if others > 0.0 {
                for (r, slot) in relatives.iter_mut().enumerate() {
                    *slot += (1.0 - g).max(0.0) * post[1 + r] / others;
                }
            }
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
            for r in 0..rel.len() {
                // A class the policy lacks stays out.
                if rel0[r] == 0.0 {
                    continue;
                }
                // A weak prior: the starting rate, worth RELATIVE_PSEUDO subjects.
                rel[r] = ((relatives[r] / rel_seen[r] + RELATIVE_PSEUDO * rel0[r]) / (n + RELATIVE_PSEUDO))
                    .clamp(1e-6, 10.0);
            }
            ((same / n / seen_share(&m)).clamp(1e-4, 100.0), rel)
        } else {
            (p.matches_per_subject, rel0)
        };
        let prior = judged.next_prior;
        // The share of national records that are an enrolled subject's:
        // same-person records per subject, times subjects, over records.
        let owned = (lambda * n / f64::from(pairs.records())).clamp(0.0, 0.999);
        let change = (lambda - p.matches_per_subject).abs() / p.matches_per_subject
            + (owned - p.record_has_subject).abs() / p.record_has_subject.max(1e-3)
            + rel
                .iter()
                .zip(p.relatives_per_subject.iter())
                .filter(|(_, b)| **b > 0.0)
                .map(|(a, b)| (a - b).abs() / b)
                .sum::<f64>()
            + m.iter().zip(p.m.iter()).map(|(a, b)| rel_change(a, b)).sum::<f64>()
            + (prior.has_record - p.subject_has_record).abs() / p.subject_has_record
            + (prior.further - p.further_record).abs() / p.further_record;
        p.m = m;
        super::namesakes_keyed_alike(&p.m, &mut p.r);
        p.tables_changed();
        p.matches_per_subject = lambda;
        p.relatives_per_subject = rel;
        p.subject_has_record = prior.has_record;
        p.further_record = prior.further;
        if pairs.subjects > 0 {
            p.record_has_subject = owned;
        }
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
    from.tables_changed();
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
    let mut prior = p.subject_prior();
    for _ in 0..40 {
        let mut step = PriorStep::default();
        for &(first, len) in &s.groups {
            let n = f64::from(s.samples[first].records.max(1));
            step.add(&subject::posterior(&log_w[first..first + len], n, prior));
        }
        prior = step.finish(s, prior);
    }
    prior
}

/// The sums behind one round of the subject-level prior.
#[derive(Default)]
struct PriorStep {
    has: f64,
    count: f64,
}

impl PriorStep {
    fn add(&mut self, post: &subject::SubjectPosterior) {
        self.has += post.has_record;
        self.count += post.expected;
    }

    /// `ρ`: the mean posterior that a (subject, source) has a record; `q`
    /// from the expected size of a non-empty set (geometric).
    fn finish(mut self, s: &SubjectPairs, mut prior: SubjectPrior) -> SubjectPrior {
        let units = (s.subjects * s.sources.max(1)).max(s.groups.len() as u64) as f64;
        if units == 0.0 {
            return prior;
        }
        let empty = units - s.groups.len() as f64;
        let none = subject::posterior(&[], 1.0, prior);
        self.has += empty * none.has_record;
        self.count += empty * none.expected;
        let mean = (self.count / self.has.max(1e-12)).max(1.0);
        prior.has_record = (self.has / units).clamp(1e-4, 0.999);
        prior.further = (1.0 - 1.0 / mean).clamp(1e-3, 0.9);
        prior
    }
}

/// One E-step: for each pair, its probability of being the same person as
/// the policy decides it (with the subject's other candidates in the same
/// source, [`Policy::assess_subject`]) and its class posterior on its own;
/// and the next round's subject-level prior from the same sums. Judging
/// with the model that decides means a pattern is not taught to the
/// relatives' classes by pairs the subject-level model gives to the same
/// person (a lone candidate of a subject from a source that holds nearly
/// every subject).
struct Judged {
    same: Vec<f64>,
    classes: Vec<[f64; super::CLASSES]>,
    next_prior: SubjectPrior,
}

fn judge(p: &Policy, s: &SubjectPairs) -> Judged {
    let prior = p.subject_prior();
    let mut same = vec![0.0; s.samples.len()];
    let mut classes = vec![[0.0; super::CLASSES]; s.samples.len()];
    let mut log_w = vec![0.0; s.samples.len()];
    let mut step = PriorStep::default();
    for &(first, len) in &s.groups {
        let group = &s.samples[first..first + len];
        for (j, x) in group.iter().enumerate() {
            let l = p.log_likelihoods(x);
            classes[first + j] = super::posterior_of(&l);
            log_w[first + j] = p.log_weight_from(x, &l);
        }
        let w = &log_w[first..first + len];
        let n = f64::from(group[0].records.max(1));
        let post = subject::posterior(w, n, prior);
        step.add(&post);
        let top = w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        for j in 0..len {
            same[first + j] = subject::decided(w[j], top, post.each[j], || classes[first + j][0]);
        }
    }
    // The record's side, as the policy decides ([`super::record`]).
    if p.record_side() {
        let ln_c = p.ln_unclaimed_each(&s.record, &log_w, s.records());
        for (g, c) in same.iter_mut().zip(ln_c) {
            *g = p.unclaimed(*g, c);
        }
    }
    Judged { same, classes, next_prior: step.finish(s, prior) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::kinds::{ALL, Field};

    /// Kinds a row without an NI number has.
    fn no_nino() -> KindSet {
        ALL.into_iter()
            .filter(|k| {
                !matches!(k, KeyKind::Nino | KeyKind::NinoHeadYob | KeyKind::NinoTailYob | KeyKind::NinoDigitsBirthday)
            })
            .collect()
    }

    /// Evidence of a pair whose fields agree at `levels` (F, S, D, P, N),
    /// among `records` national records.
    fn ev(levels: [u8; 5], records: u32) -> Evidence {
        let have = no_nino();
        Evidence {
            agreeing: have.iter().filter(|k| k.implies().iter().all(|(f, l)| levels[f.index()] >= *l)).collect(),
            shares: [1; ALL.len()],
            subject_kinds: have,
            record_kinds: have,
            records,
        }
    }

    /// Evidence for subject `i` of a source built from the subjects
    /// themselves: each field keyed wrongly now and then, independently
    /// (forename: 7% sharing only a part, 5% sounding alike, 3% beyond
    /// recognition; surname likewise; date: 7% two of three parts, 2% the
    /// year, 1% nothing; postcode: 5% the district, 15% another).
    fn keyed(i: u32, records: u32) -> Evidence {
        ev(keyed_levels(i), records)
    }

    /// The levels of [`keyed`].
    fn keyed_levels(i: u32) -> [u8; 5] {
        let mut x = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut draw = |cuts: &[u64]| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let r = x % 100;
            cuts.iter().take_while(|c| r >= **c).count() as u8
        };
        // cumulative percentages of levels top, then lower ones
        let name = |l: u8| [3, 1, 2, 0][usize::from(l)];
        let f = name(draw(&[85, 92, 97]));
        let s = name(draw(&[85, 92, 97]));
        let d = [3, 2, 1, 0][usize::from(draw(&[90, 97, 99]))];
        let p = [2, 1, 0][usize::from(draw(&[80, 85]))];
        [f, s, d, p, 0]
    }

    /// A source built from the subjects themselves (one record each, no
    /// relatives), with realistic keying errors (measured 2026-12-01: 0.00006
    /// twins a subject, and 0.0016 when training judged pairs one by one). Judged with each
    /// subject's candidates together, a lone candidate whose forename was
    /// keyed beyond recognition (`F0 S3 D3 P0`, also what a twin at another
    /// address shows) is the subject's: the alternative needs their own
    /// record to agree on nothing *and* a twin to be there. Training with
    /// the same judgement does not teach those pairs to the twin class.
    #[test]
    fn lone_candidates_of_a_source_that_holds_everyone_do_not_teach_the_relatives() {
        const N: u32 = 5000;
        let mut pairs = SubjectPairs::default();
        pairs.set_sources(1);
        let mut twin_like = 0;
        for i in 0..N {
            pairs.probed();
            let e = keyed(i, N);
            if e.agreeing.is_empty() {
                continue;
            }
            if e.agreeing.iter().all(|k| k.implies().iter().all(|(f, _)| *f != Field::Forename)) {
                twin_like += 1;
            }
            pairs.add_group([(i, &e)]);
        }
        assert!(twin_like > 20, "{twin_like}");
        let start = Policy::default_policy();
        let chance = SubjectChance::new(std::iter::empty());
        let p = train(&start, &chance, &pairs, u64::from(N), "test");
        assert!(p.subject_has_record > 0.95, "ρ {}", p.subject_has_record);
        // Every record is a subject's: the record's side is weighed.
        assert!(p.record_has_subject > 0.9 && p.record_side(), "ρ' {}", p.record_has_subject);
        assert!(
            p.relatives_per_subject[0] < start.relatives_per_subject[0] / 4.0,
            "twins per subject {} (started at {})",
            p.relatives_per_subject[0],
            start.relatives_per_subject[0]
        );
        let a = p.assess_subject(&[(0u8, ev([0, 3, 3, 0, 0], N))]);
        assert!(a[0].probability >= p.confirm, "a lone F0 S3 D3 P0 candidate: {}", a[0].probability);
    }

    /// A source of 2,000 subjects, each with their own record (`own`), and
    /// a tenth of them with `other` beside it.
    fn a_tenth_beside(own: impl Fn(u32) -> Evidence, other: &Evidence) -> SubjectPairs {
        let mut pairs = SubjectPairs::default();
        pairs.set_sources(1);
        for i in 0..2000 {
            pairs.probed();
            let own = own(i);
            if i % 10 == 0 {
                pairs.add_group([(2 * i, &own), (2 * i + 1, other)]);
            } else {
                pairs.add_group([(2 * i, &own)]);
            }
        }
        pairs
    }

    /// The same source where a tenth of the subjects also have a twin at
    /// another address beside their own record: the twin candidates are
    /// explained away by the subject's own record, the twin class learns
    /// them, and none is confirmed.
    #[test]
    fn twins_beside_the_subjects_own_records_are_learnt_and_not_confirmed() {
        const N: u32 = 2200;
        let (full, twin_like) = (ev([3, 3, 3, 2, 0], N), ev([0, 3, 3, 0, 0], N));
        let pairs = a_tenth_beside(|_| full, &twin_like);
        let start = Policy::default_policy();
        let chance = SubjectChance::new(std::iter::empty());
        let p = train(&start, &chance, &pairs, u64::from(N), "test");
        assert!(p.relatives_per_subject[0] > 0.03, "twins per subject {}", p.relatives_per_subject[0]);
        let mut a = p.assess_subject(&[(0u8, full), (0u8, twin_like)]);
        // The twin's record is no other subject's: the record's side raises
        // it, and it still does not confirm.
        assert!(p.record_side(), "ρ' {}", p.record_has_subject);
        p.claim(&mut a[1], p.ln_unclaimed(f64::NEG_INFINITY, N));
        assert!(
            a[0].probability >= p.confirm && a[1].probability < p.confirm,
            "{} and {}",
            a[0].probability,
            a[1].probability
        );
    }

    /// The same source where a tenth of the subjects also have a namesake
    /// (their name and date of birth, another address, another NI number),
    /// NI numbers held on both sides: training learns how common namesakes
    /// are from them. Where no NI number is held, a subject's own record keyed
    /// with a weak forename at their address (`F1 S3 D3 P2`) beside a
    /// namesake (`F3 S3 D3 P0`) is then confirmed and the namesake is not: a
    /// namesake is far commoner here than a twin at the same address. The
    /// policy before the namesake class (default-2026-12.4) took the
    /// namesake for the subject's record.
    #[test]
    fn namesakes_are_learnt_from_other_ni_numbers_and_not_confirmed_without_them() {
        const N: u32 = 2200;
        let with_nino = |levels: [u8; 5]| {
            let have: KindSet = ALL.into_iter().collect();
            Evidence {
                agreeing: have.iter().filter(|k| k.implies().iter().all(|(f, l)| levels[f.index()] >= *l)).collect(),
                shares: [1; ALL.len()],
                subject_kinds: have,
                record_kinds: have,
                records: N,
            }
        };
        let pairs = a_tenth_beside(
            |i| {
                let mut own = keyed_levels(i);
                own[4] = 2;
                with_nino(own)
            },
            &with_nino([3, 3, 3, 0, 0]),
        );
        let start = Policy::default_policy();
        let chance = SubjectChance::new(std::iter::empty());
        let p = train(&start, &chance, &pairs, u64::from(N), "test");
        assert!(
            p.relatives_per_subject[crate::policy::NAMESAKE] > 0.03,
            "namesakes per subject {}",
            p.relatives_per_subject[crate::policy::NAMESAKE]
        );
        let a = p.assess_subject(&[(0u8, ev([1, 3, 3, 2, 0], N)), (0u8, ev([3, 3, 3, 0, 0], N))]);
        assert!(
            a[0].probability >= p.confirm && a[1].probability < p.confirm,
            "{} and {}",
            a[0].probability,
            a[1].probability
        );
        // Without the class, trained alike.
        let mut file: super::super::PolicyFile = toml::from_str(super::super::DEFAULT_POLICY).unwrap();
        file.namesake = None;
        let before = train(&Policy::from_file(file).unwrap(), &chance, &pairs, u64::from(N), "test");
        let a = before.assess_subject(&[(0u8, ev([1, 3, 3, 2, 0], N)), (0u8, ev([3, 3, 3, 0, 0], N))]);
        assert!(a[1].probability >= p.confirm, "{} and {}", a[0].probability, a[1].probability);
    }
}
