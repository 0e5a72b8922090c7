//! The confirmation policy: which (subject, record) pairs are disclosed.
//! Pure: a policy is parsed from TOML text and applied to evidence.
//!
//! The coordinator knows, for a pair, which key kinds agree, how many
//! national records hold each agreeing token, and which kinds each side has
//! at all. The score is
//!
//! ```text
//! score = Σ over agreeing kinds k: weight[k] × share_factor(k)
//!       + Σ over kinds present on both sides that do not agree: disagreement[k]
//! share_factor(k) = 1              if the token is held by n ≤ share(k) national records
//!                 = share(k) / n   otherwise
//! share(k)        = full_weight_share_by_kind[k], or else full_weight_share
//! ```
//!
//! A pair with `score ≥ confirm_threshold` is **confirmed** and disclosed;
//! `candidate_threshold ≤ score < confirm_threshold` is a **candidate**,
//! counted and never disclosed. docs/matching.md explains the default.

use serde::Deserialize;
use std::collections::BTreeMap;
use vigil_proto::KeyKind;
use vigil_proto::kinds::{ALL, KindSet};

/// The default policy shipped with Vigil.
pub const DEFAULT_POLICY: &str = include_str!("default-policy.toml");

/// A policy file as written (docs/matching.md documents each key).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Version string, written into every disclosure and audit entry.
    pub version: String,
    /// Score at or above which a pair is confirmed.
    pub confirm_threshold: f64,
    /// Score at or above which an unconfirmed pair is counted as a candidate.
    pub candidate_threshold: f64,
    /// Tokens held by at most this many national records keep full weight.
    pub full_weight_share: u32,
    /// Per-kind overrides of `full_weight_share`, for kinds that are
    /// expected to be shared (corroborating kinds such as `forename_dob`).
    #[serde(default)]
    pub full_weight_share_by_kind: BTreeMap<String, u32>,
    /// Weight of agreement, per kind short name. Every kind must be listed.
    pub weights: BTreeMap<String, f64>,
    /// Score added (normally negative) when both sides have a kind and it
    /// does not agree. Kinds not listed add nothing.
    #[serde(default)]
    pub disagreement: BTreeMap<String, f64>,
}

/// Why a policy was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read the policy {0}")]
    Io(String),
    /// Not valid TOML, or unknown or missing keys.
    #[error("policy is not valid: {0}")]
    Parse(String),
    /// A kind name that scheme v1 does not define.
    #[error("policy names unknown key kind {0:?} in [{1}]")]
    UnknownKind(String, &'static str),
    /// A kind without a weight.
    #[error("policy gives no weight for key kind {0:?}")]
    MissingWeight(&'static str),
    /// Thresholds or numbers that make no sense.
    #[error("policy is not valid: {0}")]
    Invalid(&'static str),
}

/// A checked policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Version string.
    pub version: String,
    /// Confirmation threshold.
    pub confirm: f64,
    /// Candidate threshold.
    pub candidate: f64,
    /// Share up to which tokens keep full weight (the default over kinds).
    pub full_share: u32,
    shares: [u32; ALL.len()],
    weights: [f64; ALL.len()],
    disagree: [f64; ALL.len()],
}

/// What the policy decides for a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Disclosed to the owning force.
    Confirmed,
    /// Counted, never disclosed.
    Candidate,
    /// Nothing.
    NoMatch,
}

/// The evidence for one (subject, record) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evidence {
    /// Kinds whose tokens agree.
    pub agreeing: KindSet,
    /// For each agreeing kind, the fewest national records holding one of its
    /// agreeing tokens (by `KeyKind::index`), leaving out the subject's own
    /// other records (holding its NI number and every token the pair agrees
    /// on, when a name-and-date kind agrees): one person recorded again
    /// (see `matcher`).
    pub shares: [u32; ALL.len()],
    /// Kinds the subject has.
    pub subject_kinds: KindSet,
    /// Kinds the record has.
    pub record_kinds: KindSet,
}

impl Policy {
    /// Parses and checks a policy file.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Parse(e.message().to_string()))?;
        Policy::from_file(file)
    }

    /// Checks a parsed policy file.
    pub fn from_file(file: PolicyFile) -> Result<Policy, PolicyError> {
        if file.version.trim().is_empty() || file.version.len() > 64 {
            return Err(PolicyError::Invalid("version must be 1 to 64 characters"));
        }
        if !(file.confirm_threshold.is_finite() && file.candidate_threshold.is_finite()) {
            return Err(PolicyError::Invalid("thresholds must be finite numbers"));
        }
        if file.candidate_threshold > file.confirm_threshold || file.confirm_threshold <= 0.0 {
            return Err(PolicyError::Invalid(
                "need 0 < confirm_threshold and candidate_threshold <= confirm_threshold",
            ));
        }
        if file.full_weight_share == 0 {
            return Err(PolicyError::Invalid("full_weight_share must be at least 1"));
        }
        let mut weights = [f64::NAN; ALL.len()];
        for (name, w) in &file.weights {
            let k = KeyKind::from_short_name(name).ok_or_else(|| PolicyError::UnknownKind(name.clone(), "weights"))?;
            if !w.is_finite() || *w < 0.0 {
                return Err(PolicyError::Invalid("weights must be finite and not negative"));
            }
            weights[k.index()] = *w;
        }
        if let Some(k) = ALL.iter().find(|k| weights[k.index()].is_nan()) {
            return Err(PolicyError::MissingWeight(k.short_name()));
        }
        let mut shares = [file.full_weight_share; ALL.len()];
        for (name, n) in &file.full_weight_share_by_kind {
            let k = KeyKind::from_short_name(name)
                .ok_or_else(|| PolicyError::UnknownKind(name.clone(), "full_weight_share_by_kind"))?;
            if *n == 0 {
                return Err(PolicyError::Invalid("full_weight_share_by_kind values must be at least 1"));
            }
            shares[k.index()] = *n;
        }
        let mut disagree = [0.0; ALL.len()];
        for (name, w) in &file.disagreement {
            let k =
                KeyKind::from_short_name(name).ok_or_else(|| PolicyError::UnknownKind(name.clone(), "disagreement"))?;
            if !w.is_finite() || *w > 0.0 {
                return Err(PolicyError::Invalid("disagreement values must be finite and not positive"));
            }
            disagree[k.index()] = *w;
        }
        Ok(Policy {
            version: file.version,
            confirm: file.confirm_threshold,
            candidate: file.candidate_threshold,
            full_share: file.full_weight_share,
            shares,
            weights,
            disagree,
        })
    }

    /// Reads and checks a policy file, or takes the shipped default when
    /// `path` is `None`. Returns the policy and the text it came from (whose
    /// SHA-256 the log records).
    pub fn read(path: Option<&std::path::Path>) -> Result<(Policy, String), PolicyError> {
        let text = match path {
            None => DEFAULT_POLICY.to_string(),
            Some(p) => std::fs::read_to_string(p).map_err(|e| PolicyError::Io(format!("{}: {e}", p.display())))?,
        };
        let policy = Policy::from_toml(&text).map_err(|e| match (path, e) {
            (Some(p), PolicyError::Parse(m)) => PolicyError::Parse(format!("{}: {m}", p.display())),
            (_, e) => e,
        })?;
        Ok((policy, text))
    }

    /// The default policy.
    pub fn default_policy() -> Policy {
        match Policy::from_toml(DEFAULT_POLICY) {
            Ok(p) => p,
            Err(e) => unreachable!("the shipped default policy is checked by a unit test: {e}"),
        }
    }

    /// The weight of agreement of a kind.
    pub fn weight(&self, k: KeyKind) -> f64 {
        self.weights[k.index()]
    }

    /// The score of a pair.
    pub fn score(&self, e: &Evidence) -> f64 {
        let mut s = 0.0;
        for k in ALL {
            let i = k.index();
            if e.agreeing.contains(k) {
                let n = e.shares[i].max(1);
                let full = self.shares[i];
                let factor = if n <= full { 1.0 } else { f64::from(full) / f64::from(n) };
                s += self.weights[i] * factor;
            } else if e.subject_kinds.contains(k) && e.record_kinds.contains(k) {
                s += self.disagree[i];
            }
        }
        s
    }

    /// The decision for a pair, with its score: the one place evidence
    /// becomes a decision (roster, national, check and offline evaluation
    /// all call it).
    pub fn classify(&self, e: &Evidence) -> (Decision, f64) {
        let score = self.score(e);
        (self.decide(score), score)
    }

    /// The decision for a score.
    pub fn decide(&self, score: f64) -> Decision {
        if score >= self.confirm {
            Decision::Confirmed
        } else if score >= self.candidate {
            Decision::Candidate
        } else {
            Decision::NoMatch
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(agree: &[KeyKind], both: &[KeyKind]) -> Evidence {
        let kinds: KindSet = both.iter().chain(agree).copied().collect();
        Evidence {
            agreeing: agree.iter().copied().collect(),
            shares: [1; ALL.len()],
            subject_kinds: kinds,
            record_kinds: kinds,
        }
    }

    const NAME_DOB_ALL: &[KeyKind] = &[
        KeyKind::NameDob,
        KeyKind::CanonNameDob,
        KeyKind::InitialSurnameDob,
        KeyKind::PhoneticDob,
        KeyKind::NamePairDob,
        KeyKind::NameDobUnordered,
    ];

    #[test]
    fn default_policy_parses() {
        let p = Policy::default_policy();
        assert!(p.confirm > p.candidate);
    }

    #[test]
    fn default_policy_decisions() {
        let p = Policy::default_policy();
        let d = |agree: &[KeyKind], both: &[KeyKind]| p.decide(p.score(&ev(agree, both)));
        // Same person, NI number and name agree.
        let mut all = NAME_DOB_ALL.to_vec();
        all.push(KeyKind::Nino);
        assert_eq!(d(&all, &[]), Decision::Confirmed);
        // NI number agrees and the name is only phonetically close.
        assert_eq!(d(&[KeyKind::Nino, KeyKind::PhoneticDob], &[]), Decision::Confirmed);
        // NI number alone, nothing else agrees: not enough.
        assert_ne!(d(&[KeyKind::Nino], &[KeyKind::NameDob]), Decision::Confirmed);
        // Name and date of birth agree, no NI number on one side, same district.
        let mut nd = NAME_DOB_ALL.to_vec();
        nd.push(KeyKind::NameYobDistrict);
        assert_eq!(d(&nd, &[]), Decision::Confirmed);
        // Name and date of birth alone: a namesake is as likely. Candidate.
        assert_eq!(d(NAME_DOB_ALL, &[KeyKind::NameYobDistrict]), Decision::Candidate);
        // Namesake with a different NI number on both sides.
        let mut ns = nd.clone();
        ns.retain(|k| *k != KeyKind::NameYobDistrict);
        assert_eq!(d(&ns, &[KeyKind::Nino]), Decision::NoMatch);
        assert_eq!(d(&nd, &[KeyKind::Nino]), Decision::NoMatch);
        // A twin: surname, initial and date of birth.
        assert_eq!(d(&[KeyKind::InitialSurnameDob], &[KeyKind::NameDob]), Decision::NoMatch);
    }

    #[test]
    fn shared_tokens_are_down_weighted() {
        let p = Policy::default_policy();
        let mut e = ev(&[KeyKind::Nino, KeyKind::NameDob], &[]);
        let full = p.score(&e);
        e.shares[KeyKind::NameDob.index()] = p.full_share;
        assert_eq!(p.score(&e), full);
        e.shares[KeyKind::NameDob.index()] = p.full_share * 4;
        assert!(p.score(&e) < full);
        // forename_dob is expected to be shared: it keeps its weight longer
        let mut f = ev(&[KeyKind::Nino, KeyKind::ForenameDob], &[]);
        f.shares[KeyKind::ForenameDob.index()] = p.full_share * 4;
        assert_eq!(p.decide(p.score(&f)), Decision::Confirmed);
    }

    #[test]
    fn bad_policies_are_refused_with_the_reason() {
        let base = DEFAULT_POLICY.to_string();
        let cases = [
            (base.replace("version =", "versio ="), "unknown field"),
            (base.replace("nino = 9.0", "nino = 9.0\nshoe_size = 1.0"), "shoe_size"),
            (base.replace("name_yob_district = 5.0", ""), "name_yob_district"),
            (base.replace("confirm_threshold = 10.0", "confirm_threshold = 1.0"), "candidate_threshold"),
            (format!("{base}\nextra = 1\n"), "extra"),
        ];
        for (text, want) in cases {
            let err = Policy::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{err} does not mention {want}");
        }
    }
}
