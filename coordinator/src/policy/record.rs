//! The record's side of the assignment: a national record is one person's.
//!
//! [`super::subject`] decides a subject's candidates in one source
//! together. The same reasoning holds from the record's side. Where nearly
//! every national record belongs to an enrolled subject (a source built from
//! the same people as the rosters: `record_has_subject`, `ρ'`, near 1), a
//! record that no other subject claims is the subject's more surely than
//! the subject's side alone says. The other explanation, that the subject's
//! own record agrees on nothing and this record is someone else's, then
//! needs a second improbable thing: that the record's owner is an enrolled
//! subject whose pair with it agrees on nothing too.
//!
//! For a pair `(s, r)`, every explanation in which `r` is not `s`'s must
//! also explain `r`'s pairs with the other enrolled subjects: `r` belongs to
//! none of them (`1 − ρ'`), to one whose pair with it agrees on nothing
//! (`ρ' m0`, `unseen_share`), or to one of its other candidates `j`
//! (`ρ' / S · w_j`, which is the pair prior `matches_per_subject / N` times
//! that pair's weight). So the subject side's odds for the pair are divided
//! by
//!
//! ```text
//! c = (1 − ρ') + ρ' m0 + (matches_per_subject / N) · Σ_{j ≠ s} w_j
//! ```
//!
//! held to at most 1: the record's side only ever raises a probability. It
//! does not lower one when another subject claims the record too, because
//! one person can be enrolled twice (in two forces, or in two roles) and
//! both must still see the record; the subject's side already explains
//! away a subject's weaker candidates.
//!
//! Where `ρ' (1 − m0)` is at most [`ACTIVE`] the factor can raise odds by at
//! most about 1% and is not applied: national data, where about one record
//! in 700 belongs to someone in policing, is decided exactly as before, and
//! the engine never looks up a record's other subjects.
//!
//! Pure: numbers in, numbers out.

use super::{Assessment, Policy};

/// The record's side is applied only when `ρ' (1 − m0)` exceeds this.
pub const ACTIVE: f64 = 0.01;

/// `ln Σ_{i ≠ skip} e^(log_w[i])`: the other subjects' claim on a record
/// (`−∞` when there is none).
pub fn others(log_w: &[f64], skip: usize) -> f64 {
    let mx = log_w.iter().enumerate().filter(|(i, _)| *i != skip).map(|(_, v)| *v).fold(f64::NEG_INFINITY, f64::max);
    if mx == f64::NEG_INFINITY {
        return mx;
    }
    let sum: f64 = log_w.iter().enumerate().filter(|(i, _)| *i != skip).map(|(_, v)| (v - mx).exp()).sum();
    mx + sum.ln()
}

impl Policy {
    /// Whether the record's side can move a probability (see the module docs).
    pub fn record_side(&self) -> bool {
        self.record_has_subject * (1.0 - self.unseen_share) > ACTIVE
    }

    /// `ln c` (module docs) for a pair whose record's other candidate
    /// subjects weigh `others` in all ([`others`]), among `records` national
    /// records. 0 (no change) when the record's side is not applied.
    pub fn ln_unclaimed(&self, others: f64, records: u32) -> f64 {
        if !self.record_side() {
            return 0.0;
        }
        let rho = self.record_has_subject.clamp(0.0, 0.999);
        let base = (1.0 - rho) + rho * self.unseen_share;
        let pm = self.pair_prior(records);
        let claimed = if others == f64::NEG_INFINITY { 0.0 } else { (pm.ln() + others).min(700.0).exp() };
        (base + claimed).min(1.0).ln()
    }

    /// A probability with the record's side weighed in: its odds divided by
    /// `c = e^ln_c` ([`Policy::ln_unclaimed`]).
    pub fn unclaimed(&self, p: f64, ln_c: f64) -> f64 {
        if ln_c >= 0.0 || p <= 0.0 {
            return p;
        }
        if p >= 1.0 {
            return 1.0;
        }
        let log_odds = p.ln() - (-p).ln_1p() - ln_c;
        1.0 / (1.0 + (-log_odds).exp())
    }

    /// `ln c` for each pair of a set that holds every candidate pair of its
    /// records (`record[i]` the pair's record, `log_w[i]` its weight,
    /// [`Policy::log_weight`]), among `records` national records: each pair
    /// is weighed against its record's other pairs.
    pub fn ln_unclaimed_each(&self, record: &[u32], log_w: &[f64], records: u32) -> Vec<f64> {
        let mut out = vec![0.0; record.len()];
        if !self.record_side() {
            return out;
        }
        let mut by_record: std::collections::HashMap<u32, Vec<usize>> = std::collections::HashMap::new();
        for (i, r) in record.iter().enumerate() {
            by_record.entry(*r).or_default().push(i);
        }
        let mut w = Vec::new();
        for pairs in by_record.values() {
            w.clear();
            w.extend(pairs.iter().map(|&i| log_w[i]));
            for (j, &i) in pairs.iter().enumerate() {
                out[i] = self.ln_unclaimed(others(&w, j), records);
            }
        }
        out
    }

    /// Weighs the record's side into an assessment and decides it again.
    pub fn claim(&self, a: &mut Assessment, ln_c: f64) {
        a.probability = self.unclaimed(a.probability, ln_c);
        a.decision = self.decide(a.probability);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense() -> Policy {
        let mut p = Policy::from_toml(super::super::DEFAULT_POLICY).unwrap();
        p.matches_per_subject = 0.97;
        p.record_has_subject = 0.97;
        p
    }

    #[test]
    fn a_record_no_other_subject_claims_is_the_subjects_more_surely_in_a_dense_source() {
        let p = dense();
        let c = p.ln_unclaimed(f64::NEG_INFINITY, 5_000);
        // c = 0.03 + 0.97 · 0.02: odds about 20 times higher.
        assert!((c.exp() - 0.0494).abs() < 1e-4, "{}", c.exp());
        let raised = p.unclaimed(0.9655, c);
        // Odds 28 become 567: from 0.966 to 0.998.
        assert!((raised - 0.99824).abs() < 1e-4, "{raised}");
        assert_eq!(p.unclaimed(0.0, c), 0.0);
        assert_eq!(p.unclaimed(1.0, c), 1.0);
    }

    #[test]
    fn another_subjects_claim_takes_the_rise_away_and_never_lowers_a_probability() {
        let p = dense();
        let n = 5_000;
        // Another subject's pair with the record weighs e^20 (near certain).
        let c = p.ln_unclaimed(20.0, n);
        assert_eq!(c, 0.0);
        assert_eq!(p.unclaimed(0.9655, c), 0.9655);
        // A weak other claim (a coincidence) takes only part of it.
        let weak = p.ln_unclaimed(5.0, n);
        assert!(weak < 0.0 && weak > p.ln_unclaimed(f64::NEG_INFINITY, n));
    }

    #[test]
    fn national_data_is_decided_as_before() {
        let mut p = dense();
        // 18,600 of 13 million records belong to someone in policing.
        p.record_has_subject = 0.0015;
        assert!(!p.record_side());
        assert_eq!(p.ln_unclaimed(f64::NEG_INFINITY, 13_000_000), 0.0);
        p.record_has_subject = 0.0;
        assert_eq!(p.ln_unclaimed(f64::NEG_INFINITY, 13_000_000), 0.0);
    }

    #[test]
    fn others_sums_every_weight_but_the_pairs_own() {
        let lw = [2.0f64, 3.0, 4.0];
        let want = (2.0f64.exp() + 4.0f64.exp()).ln();
        assert!((others(&lw, 1) - want).abs() < 1e-12);
        assert_eq!(others(&[7.0], 0), f64::NEG_INFINITY);
    }
}
