//! Deciding a subject's candidates in one source together.
//!
//! Pair by pair, the model weighs each record against the whole national
//! population: the prior that a given record is the subject's is
//! `matches_per_subject / N`. That ignores what the other candidates say.
//! When a source holds at most one record of most people, a subject whose
//! best candidate is near certain makes a second, weaker candidate (a
//! namesake who happens to share name and date of birth) less likely to be
//! them; and when nearly every subject has a record (a source built from
//! the same people), a lone moderate candidate is more likely to be theirs
//! than the population prior says. Record-linkage tools get both from a
//! one-to-one assignment; this is its probabilistic form.
//!
//! The subject's records in one source are a set `M`: empty with
//! probability `1 − ρ` (`subject_has_record`); otherwise of size `k` with
//! probability `ρ (1 − q) q^(k−1)` (`further_record` is `q`), any `k` of the
//! `N` records alike. Each candidate `i` has a weight `w_i`, its likelihood
//! ratio of same person against every other class (priors left out), and a
//! record of the subject's agrees on no kind at all, so is never a
//! candidate, with probability `m0` (`unseen_share`). Then
//! `P(i ∈ M)` sums, over the sizes `k`, `ρ (1 − q) q^(k−1) k!/N^k · w_i ·
//! e_(k−1)(w without i)`, divided by the same sum over every set plus the
//! empty one (`e_k` is the elementary symmetric polynomial). The
//! [`EXACT`] heaviest candidates are summed exactly; lighter ones, whose
//! weight cannot move the others, are given their share of the same sum.
//!
//! Pure: numbers in, numbers out. Computed in logarithms, as weights run to
//! e^60.

use super::{Assessment, Evidence, Features, Policy, features};

/// A candidate's probability among its subject's candidates in one source
/// (`log_w` its weight, `top` the heaviest, `together` its posterior from
/// [`posterior`], `alone` its pair-by-pair probability): the best candidate
/// is judged with the others; a weaker one may be explained away by them,
/// but never scores higher than it would alone, because that a person has
/// one record does not make a second record with the same name and date of
/// birth (a namesake, as often as a second record) more likely theirs.
pub fn decided(log_w: f64, top: f64, together: f64, alone: impl FnOnce() -> f64) -> f64 {
    if log_w >= top { together } else { together.min(alone()) }
}

/// Candidates of one subject in one source summed exactly.
pub const EXACT: usize = 16;

/// The subject-level prior: `ρ`, `q` and `m0` (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubjectPrior {
    /// Share of subjects with at least one record in a source.
    pub has_record: f64,
    /// Chance of each further record of a subject in the same source.
    pub further: f64,
    /// Share of a subject's records that agree with them on no kind.
    pub unseen: f64,
}

/// What a subject's candidates in one source come to.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectPosterior {
    /// `P(i ∈ M)` for each candidate, in input order.
    pub each: Vec<f64>,
    /// `P(M` not empty`)`: the subject has a record in this source.
    pub has_record: f64,
    /// The expected size of `M`.
    pub expected: f64,
}

fn log_add(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    hi + (lo - hi).exp().ln_1p()
}

/// Elementary symmetric polynomials `e_0 .. e_len` of `v`, skipping index
/// `skip`.
fn symmetric(v: &[f64], skip: Option<usize>) -> Vec<f64> {
    let mut e = vec![0.0; v.len() + 1];
    e[0] = 1.0;
    for (i, x) in v.iter().enumerate() {
        if Some(i) == skip {
            continue;
        }
        for j in (1..e.len()).rev() {
            e[j] += e[j - 1] * x;
        }
    }
    e
}

/// The posterior of each candidate from its log weight `ln w_i`, among `n`
/// records. Candidates may come in any order.
pub fn posterior(log_w: &[f64], n: f64, prior: SubjectPrior) -> SubjectPosterior {
    let rho = prior.has_record.clamp(1e-9, 1.0 - 1e-9);
    let q = prior.further.clamp(1e-9, 0.99);
    let m0 = prior.unseen.clamp(0.0, 1.0);
    let ln_n = n.max(1.0).ln();
    let base = ((1.0 - rho) + rho * (1.0 - q) * m0).ln();
    if log_w.is_empty() {
        let has = rho * (1.0 - q) * m0 / base.exp();
        return SubjectPosterior { each: Vec::new(), has_record: has, expected: has };
    }
    let mut order: Vec<usize> = (0..log_w.len()).collect();
    order.sort_by(|a, b| log_w[*b].total_cmp(&log_w[*a]));
    let exact: Vec<usize> = order.iter().copied().take(EXACT).collect();
    // Per-record terms scaled by the largest: x_i = w_i / N = e^(s + ln v_i).
    let s = log_w[exact[0]] - ln_n;
    let v: Vec<f64> = exact.iter().map(|&i| (log_w[i] - ln_n - s).exp()).collect();
    let kmax = v.len();
    // ln of the weight of sets of size k, times e^(k s): ρ(1−q)q^(k−1) k! e^(ks).
    let mut ln_fact = 0.0;
    let size: Vec<f64> = (1..=kmax)
        .map(|k| {
            ln_fact += (k as f64).ln();
            rho.ln() + (1.0 - q).ln() + (k as f64 - 1.0) * q.ln() + ln_fact + k as f64 * s
        })
        .collect();
    let e = symmetric(&v, None);
    let mut ln_z = base;
    let mut ln_mass = f64::NEG_INFINITY; // ln Σ_k k · term_k
    for k in 1..=kmax {
        if e[k] > 0.0 {
            let t = size[k - 1] + e[k].ln();
            ln_z = log_add(ln_z, t);
            ln_mass = log_add(ln_mass, t + (k as f64).ln());
        }
    }
    let unseen = rho.ln() + (1.0 - q).ln() + m0.max(1e-300).ln();
    let has_record = 1.0 - ((1.0 - rho).ln() - ln_z).exp();
    let expected = (ln_mass - ln_z).exp() + (unseen - ln_z).exp();
    let mut each = vec![0.0; log_w.len()];
    for (j, &i) in exact.iter().enumerate() {
        let ei = symmetric(&v, Some(j));
        let mut num = f64::NEG_INFINITY;
        for k in 1..=kmax {
            if ei[k - 1] > 0.0 {
                num = log_add(num, size[k - 1] + v[j].ln() + ei[k - 1].ln());
            }
        }
        each[i] = (num - ln_z).exp().min(1.0);
    }
    // Lighter candidates: x_i times the sum with every exact one present.
    if log_w.len() > kmax {
        let mut share = f64::NEG_INFINITY;
        for k in 1..=kmax {
            if e[k - 1] > 0.0 {
                share = log_add(share, size[k - 1] + e[k - 1].ln());
            }
        }
        for &i in &order[kmax..] {
            let ln_v = log_w[i] - ln_n - s;
            each[i] = (share + ln_v - ln_z).exp().min(1.0);
        }
    }
    SubjectPosterior { each, has_record: has_record.clamp(0.0, 1.0), expected }
}

impl Policy {
    /// The subject-level prior this policy holds.
    pub fn subject_prior(&self) -> SubjectPrior {
        SubjectPrior { has_record: self.subject_has_record, further: self.further_record, unseen: self.unseen_share }
    }

    /// `ln w`: the log likelihood ratio of same person against every other
    /// class (relatives and unrelated, with their priors), the same-person
    /// prior left out.
    pub fn log_weight(&self, x: &Features) -> f64 {
        self.log_weight_from(x, &self.log_likelihoods(x))
    }

    /// [`Policy::log_weight`] from the pair's class log likelihoods `l`
    /// ([`Policy::log_likelihoods`]).
    pub fn log_weight_from(&self, x: &Features, l: &[f64; super::CLASSES]) -> f64 {
        let pm = self.pair_prior(x.records);
        let mx = l[1..].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let others = mx + l[1..].iter().map(|v| (v - mx).exp()).sum::<f64>().ln();
        l[0] - pm.ln() - others
    }

    /// Assesses every candidate of one subject, deciding those in the same
    /// source together. `candidates` are (source, evidence); the
    /// assessments come back in the same order.
    pub fn assess_subject<S: PartialEq + Copy>(&self, candidates: &[(S, Evidence)]) -> Vec<Assessment> {
        let read: Vec<_> = candidates.iter().map(|(_, e)| features(e)).collect();
        // Each pair's class likelihoods, once: its weight and its
        // probability alone both come from them.
        let ll: Vec<[f64; super::CLASSES]> = read.iter().map(|(_, x)| self.log_likelihoods(x)).collect();
        let lw: Vec<f64> = read.iter().zip(&ll).map(|((_, x), l)| self.log_weight_from(x, l)).collect();
        let mut probability = vec![0.0; candidates.len()];
        let mut done = vec![false; candidates.len()];
        for i in 0..candidates.len() {
            if done[i] {
                continue;
            }
            let group: Vec<usize> = (i..candidates.len()).filter(|&j| candidates[j].0 == candidates[i].0).collect();
            let n = f64::from(candidates[i].1.records.max(1));
            let p = posterior(&group.iter().map(|&j| lw[j]).collect::<Vec<_>>(), n, self.subject_prior());
            let top = group.iter().map(|&j| lw[j]).fold(f64::NEG_INFINITY, f64::max);
            for (g, &j) in group.iter().enumerate() {
                probability[j] = decided(lw[j], top, p.each[g], || super::posterior_of(&ll[j])[0]);
                done[j] = true;
            }
        }
        read.into_iter()
            .zip(probability)
            .map(|((seen, _), probability)| Assessment { decision: self.decide(probability), probability, seen })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIOR: SubjectPrior = SubjectPrior { has_record: 0.05, further: 0.2, unseen: 0.03 };

    /// Sums over every subset by brute force, to check the closed form.
    fn brute(log_w: &[f64], n: f64, p: SubjectPrior) -> Vec<f64> {
        let c = log_w.len();
        let mut z = (1.0 - p.has_record) + p.has_record * (1.0 - p.further) * p.unseen;
        let mut num = vec![0.0; c];
        for mask in 1u32..(1 << c) {
            let k = mask.count_ones() as i32;
            let fact: f64 = (1..=k).map(f64::from).product();
            let mut t = p.has_record * (1.0 - p.further) * p.further.powi(k - 1) * fact / n.powi(k);
            for (i, w) in log_w.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    t *= w.exp();
                }
            }
            z += t;
            for (i, x) in num.iter_mut().enumerate() {
                if mask & (1 << i) != 0 {
                    *x += t;
                }
            }
        }
        num.iter().map(|x| x / z).collect()
    }

    #[test]
    fn matches_a_sum_over_every_set() {
        let lw = [14.0, 12.5, 9.0, 3.0, -2.0];
        let got = posterior(&lw, 100_000.0, PRIOR).each;
        for (g, b) in got.iter().zip(brute(&lw, 100_000.0, PRIOR)) {
            assert!((g - b).abs() < 1e-9 * b.max(1e-12) + 1e-12, "{got:?}");
        }
    }

    /// With a small prior and one candidate, it is the pair-by-pair model
    /// with `matches_per_subject` = ρ.
    #[test]
    fn a_lone_candidate_under_a_small_prior_is_judged_as_before() {
        let lw = 13.0f64;
        let n = 1e6;
        let pair_odds = 0.05 / n * lw.exp();
        let pair = pair_odds / (1.0 + pair_odds);
        let p = posterior(&[lw], n, SubjectPrior { has_record: 0.05, further: 0.2, unseen: 0.0 }).each[0];
        assert!((p - pair).abs() < 0.01, "{p} against {pair}");
    }

    /// When nearly every subject has a record, the best of several is likely
    /// theirs, and a second one with the same weight shares the belief.
    #[test]
    fn a_near_certain_record_explains_away_a_weaker_one() {
        let dense = SubjectPrior { has_record: 0.99, further: 0.01, unseen: 0.03 };
        let n = 100_000.0;
        // e^14 / 100,000: the pair-by-pair model with one match a subject
        // would give it odds of 12, a probability of 0.92.
        let alone = posterior(&[14.0], n, dense).each[0];
        let beside = posterior(&[25.0, 14.0], n, dense).each[1];
        assert!(alone > 0.99, "a lone moderate candidate of a subject who surely has a record: {alone}");
        assert!(beside < 0.25, "the same candidate beside a near-certain one: {beside}");
        // Where people often have several records, it is not explained away.
        let many = SubjectPrior { has_record: 0.99, further: 0.5, unseen: 0.03 };
        assert!(posterior(&[25.0, 14.0], n, many).each[1] > 0.9);
    }

    #[test]
    fn light_candidates_beyond_the_exact_ones_are_small_and_finite() {
        let mut lw = vec![30.0, 28.0];
        lw.extend(std::iter::repeat_n(-5.0, 40));
        let p = posterior(&lw, 1e7, PRIOR);
        assert!(p.each.iter().all(|x| x.is_finite() && *x >= 0.0 && *x <= 1.0));
        assert!(p.each[0] > 0.99 && p.each[41] < 1e-6);
        assert!(p.has_record > 0.99 && p.expected >= 1.0);
    }
}
