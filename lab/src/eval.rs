//! Offline evaluation: tokenise rosters and extracts with a throwaway
//! linkage key, match them with the real index and policy, and score the
//! confirmed pairs against a ground-truth file.
//!
//! Roster files are named `roster-<force>.csv` (the force code is taken from
//! the name; any other name is used whole). The truth file has the columns
//! `force,employee_id,record_id,relation`; rows whose relation is
//! `same_person` are the pairs that should be confirmed, other relations
//! (`twin`, `sibling`, `namesake`) are hard negatives that must not be.
//! Truth rows naming a force, employee or record not in the inputs are
//! ignored, so one truth file serves an extract with or without its delta.

use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;
use vigil_identity::tokens::{LinkageKey, Tokenizer};
use vigil_node::input::{self, InputError, Report};
use vigil_proto::KeyKind;
use vigil_proto::kinds::KindSet;

use vigil_coordinator::index::IndexKey;
use vigil_coordinator::matcher::{Hit, Matcher};
use vigil_coordinator::pepper::{Pepper, index_key};
use vigil_coordinator::policy::train::{self, SubjectChance, SubjectPairs};
use vigil_coordinator::policy::{Decision, Evidence, Policy, features};

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// An input file could not be read.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The truth file is malformed.
    #[error("truth file {file}: {problem}")]
    Truth {
        /// File.
        file: String,
        /// What is wrong.
        problem: String,
    },
    /// No randomness.
    #[error("system random generator failed")]
    Random,
}

/// The result of an evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalResult {
    /// Policy version used.
    pub policy_version: String,
    /// Whether the policy was trained on the evaluated data first (without
    /// the truth file: as `vigil-coordinator calibrate` does on a store).
    pub trained: bool,
    /// The policy used, as TOML (trained or as given).
    #[serde(skip)]
    pub policy_toml: String,
    /// Subjects enrolled over all rosters.
    pub subjects: usize,
    /// National records indexed.
    pub records: usize,
    /// National tokens indexed.
    pub national_tokens: usize,
    /// Roster tokens indexed.
    pub roster_tokens: usize,
    /// Confirmed pairs.
    pub confirmed: usize,
    /// Confirmed pairs that are the same person.
    pub true_positives: usize,
    /// Confirmed pairs that are not.
    pub false_positives: usize,
    /// Same-person pairs not confirmed, including those whose roster or
    /// extract row was refused.
    pub false_negatives: usize,
    /// Same-person pairs whose roster or extract row was refused.
    pub missed_refused: usize,
    /// Same-person pairs not confirmed that were candidates.
    pub missed_as_candidates: usize,
    /// Pairs that reached candidate but not confirmed.
    pub candidates: usize,
    /// Same-person pairs not confirmed, by the evidence seen (`F3 S0 D3 P- N-`;
    /// `none` when no kind agreed, `refused` when a row was refused).
    pub missed_by_evidence: BTreeMap<String, usize>,
    /// true positives / confirmed.
    pub precision: f64,
    /// true positives / same-person pairs.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Precision and recall if the confirmation threshold were each of these.
    pub thresholds: Vec<ThresholdResult>,
    /// Predicted probability against the observed share of true pairs.
    pub calibration: Vec<CalibrationBin>,
    /// Hard negatives in the truth, and how many were confirmed, per relation.
    pub hard_negatives: BTreeMap<String, (usize, usize)>,
    /// Per force: (subjects, true pairs, confirmed, true positives).
    pub per_force: BTreeMap<String, ForceResult>,
    /// Input summaries (rows read, used, refused).
    pub inputs: Vec<String>,
    /// The full input reports, naming every refused row and field.
    #[serde(skip)]
    pub reports: Vec<Report>,
    /// Every confirmed pair: (force, employee id, record id).
    #[serde(skip)]
    pub confirmed_pairs: Vec<(String, String, String)>,
    /// Every same-person pair not confirmed: (force, employee id, record id,
    /// evidence (`refused` for a pair with a refused row), probability).
    #[serde(skip)]
    pub missed_pairs: Vec<(String, String, String, String, f64)>,
    /// Every confirmed pair that is not the same person: (force, employee
    /// id, record id, relation in the truth file or `unrelated`, evidence,
    /// probability).
    #[serde(skip)]
    pub wrong_pairs: Vec<(String, String, String, String, String, f64)>,
    /// Every pair seen, grouped by the evidence seen (`F3 S0 D3 P0 N-`):
    /// how many, how many are the same person, the mean and lowest predicted
    /// probability. Shows where the model is over- or under-confident.
    pub patterns: Vec<Pattern>,
    /// Seconds spent tokenising, indexing, training and matching.
    pub seconds: f64,
}

/// Pairs seen with one evidence pattern.
#[derive(Debug, Clone, Serialize)]
pub struct Pattern {
    /// The evidence seen (`F3 S0 D3 P0 N-`).
    pub evidence: String,
    /// Pairs seen with it.
    pub pairs: usize,
    /// Of them, the same person.
    pub same_person: usize,
    /// Of them, confirmed.
    pub confirmed: usize,
    /// Mean predicted probability.
    pub predicted: f64,
    /// Lowest and highest predicted probability.
    pub lowest: f64,
    /// Highest predicted probability.
    pub highest: f64,
}

/// Precision and recall at one threshold.
#[derive(Debug, Clone, Serialize)]
pub struct ThresholdResult {
    /// Match probability at or above which pairs count as confirmed.
    pub threshold: f64,
    /// Pairs at or above it.
    pub confirmed: usize,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
}

/// One bin of the calibration table.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationBin {
    /// Lower bound of predicted probability (inclusive).
    pub from: f64,
    /// Upper bound (exclusive, except 1).
    pub to: f64,
    /// Pairs with a prediction in the bin.
    pub pairs: usize,
    /// Mean predicted probability.
    pub predicted: f64,
    /// Share of them that are the same person.
    pub observed: f64,
}

/// Per-force figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ForceResult {
    /// Subjects enrolled.
    pub subjects: usize,
    /// Same-person pairs in the truth.
    pub true_pairs: usize,
    /// Confirmed pairs.
    pub confirmed: usize,
    /// Confirmed pairs that are the same person.
    pub true_positives: usize,
}

/// The force code of a roster file name: `roster-gmp.csv` → `gmp`.
pub fn force_of(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    stem.strip_prefix("roster-").map(str::to_string).unwrap_or(stem)
}

fn random32(rng: &SystemRandom) -> Result<[u8; 32], EvalError> {
    let mut k = [0u8; 32];
    rng.fill(&mut k).map_err(|_| EvalError::Random)?;
    Ok(k)
}

type Keys = Vec<(KeyKind, IndexKey)>;

fn peppered(
    tk: &Tokenizer,
    pepper: &Pepper,
    id: &vigil_identity::keys::Identity,
    buf: &mut Vec<(KeyKind, [u8; 32])>,
    without: KindSet,
) -> Keys {
    tk.tokens(id, buf);
    buf.iter().filter(|(k, _)| !without.contains(*k)).map(|(k, t)| (*k, index_key(&pepper.rekey(t, 1)))).collect()
}

/// Thresholds the evaluation reports precision and recall at.
pub const THRESHOLDS: [f64; 7] = [0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 0.9999];
/// Bounds of the calibration bins.
const BINS: [f64; 8] = [0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0];

/// What `run` does besides matching.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Train the policy on the data first (never on the truth).
    pub train: bool,
    /// Spread the prior over at least this many national records, as the
    /// coordinator's `[matching] national_records` does (0: the records read).
    pub national_records: u32,
    /// Kinds left out on both sides, as if the scheme did not have them
    /// (what a kind buys: compare with and without).
    pub without: KindSet,
}

/// Runs an evaluation.
pub fn run(
    rosters: &[PathBuf],
    extracts: &[PathBuf],
    truth: &Path,
    policy: &Policy,
    opts: Options,
) -> Result<EvalResult, EvalError> {
    let started = Instant::now();
    let rng = SystemRandom::new();
    let tk = Tokenizer::new(&LinkageKey::new(1, random32(&rng)?));
    let pepper = Pepper::new(random32(&rng)?);
    let mut reports = Vec::new();
    let mut buf = Vec::new();

    // Subjects: (force, employee id) and their keys; refused rows' ids.
    let mut subjects: Vec<(String, String)> = Vec::new();
    let mut subject_keys: Vec<Keys> = Vec::new();
    let mut refused_subjects: HashSet<(String, String)> = HashSet::new();
    for path in rosters {
        let force = force_of(path);
        let name = path.display().to_string();
        let mut report = Report::new(&name, "roster");
        let scan = input::scan_path(path, input::Kind::Roster)?;
        input::read_roster(
            input::open(path)?,
            &name,
            &scan,
            &mut report,
            |row| {
                subject_keys.push(peppered(&tk, &pepper, &row.identity, &mut buf, opts.without));
                subjects.push((force.clone(), row.employee_id));
            },
            |id| {
                refused_subjects.insert((force.clone(), id.trim().to_string()));
            },
        )?;
        reports.push(report);
    }
    let roster_tokens: usize = subject_keys.iter().map(Vec::len).sum();

    // National records.
    let mut matcher = Matcher::with_capacity(0, roster_tokens);
    matcher.set_records_floor(opts.national_records);
    let mut records: Vec<String> = Vec::new();
    let mut refused_records: HashSet<String> = HashSet::new();
    for path in extracts {
        let name = path.display().to_string();
        let mut report = Report::new(&name, "extract");
        let scan = input::scan_path(path, input::Kind::Extract)?;
        input::read_extract(
            input::open(path)?,
            &name,
            &scan,
            &mut report,
            |row| {
                let keys = peppered(&tk, &pepper, &row.identity, &mut buf, opts.without);
                matcher.add_record(records.len() as u32, &keys);
                records.push(row.record_id);
            },
            |id| {
                refused_records.insert(id.trim().to_string());
            },
        )?;
        reports.push(report);
    }
    for (sid, keys) in subject_keys.iter().enumerate() {
        matcher.add_subject(sid as u32, keys);
    }

    // Every pair that agrees on something, with its evidence, subject by
    // subject (the extracts are one source).
    let mut pairs: Vec<(u32, u32, Evidence)> = Vec::new();
    let mut hits: Vec<Hit> = Vec::new();
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for (sid, keys) in subject_keys.iter().enumerate() {
        matcher.probe_national(keys, &mut hits);
        let first = pairs.len();
        pairs.extend(hits.iter().map(|h| (sid as u32, h.id, h.evidence)));
        if pairs.len() > first {
            groups.push((first, pairs.len() - first));
        }
    }

    // Training, as a coordinator would on what it holds: no truth.
    let policy = if opts.train {
        let mut chance = SubjectChance::new(subject_keys.iter().map(|k| k.iter().map(|(kind, _)| *kind).collect()));
        for (sid, keys) in subject_keys.iter().enumerate() {
            matcher.probe_roster(keys, &mut hits);
            for h in hits.iter().filter(|h| h.id > sid as u32) {
                chance.add(&h.evidence);
            }
        }
        let mut subject_pairs = SubjectPairs::default();
        subject_pairs.set_sources(1);
        for _ in &subject_keys {
            subject_pairs.probed();
        }
        for &(first, len) in &groups {
            subject_pairs.add_group(pairs[first..first + len].iter().map(|(_, rid, e)| (*rid, e)));
        }
        let version = format!("{}+eval", policy.version);
        train::train(policy, &chance, &subject_pairs, u64::from(matcher.population()), &version)
    } else {
        policy.clone()
    };

    let mut scored: Vec<((u32, u32), f64)> = Vec::with_capacity(pairs.len());
    let mut probability: HashMap<(u32, u32), f64> = HashMap::new();
    let mut evidence: HashMap<(u32, u32), String> = HashMap::new();
    let mut confirmed: HashSet<(u32, u32)> = HashSet::new();
    let mut candidate_pairs: HashSet<(u32, u32)> = HashSet::new();
    let mut assessed = Vec::with_capacity(pairs.len());
    for &(first, len) in &groups {
        let candidates: Vec<(u8, Evidence)> = pairs[first..first + len].iter().map(|(_, _, e)| (0, *e)).collect();
        assessed.extend(policy.assess_subject(&candidates));
    }
    // The record's side: a record no other subject claims, in a source
    // whose records nearly all belong to someone enrolled.
    if policy.record_side() {
        let record: Vec<u32> = pairs.iter().map(|(_, rid, _)| *rid).collect();
        let log_w: Vec<f64> = pairs.iter().map(|(_, _, e)| policy.log_weight(&features(e).1)).collect();
        let ln_c = policy.ln_unclaimed_each(&record, &log_w, matcher.population());
        for (a, c) in assessed.iter_mut().zip(ln_c) {
            policy.claim(a, c);
        }
    }
    for ((sid, rid, _), a) in pairs.iter().zip(assessed) {
        let pair = (*sid, *rid);
        scored.push((pair, a.probability));
        probability.insert(pair, a.probability);
        evidence.insert(pair, a.fields());
        match a.decision {
            Decision::Confirmed => {
                confirmed.insert(pair);
            }
            Decision::Candidate => {
                candidate_pairs.insert(pair);
            }
            Decision::NoMatch => {}
        }
    }
    let seconds = started.elapsed().as_secs_f64();

    // Ground truth.
    let subject_ix: HashMap<(&str, &str), u32> =
        subjects.iter().enumerate().map(|(i, (f, e))| ((f.as_str(), e.as_str()), i as u32)).collect();
    let record_ix: HashMap<&str, u32> = records.iter().enumerate().map(|(i, r)| (r.as_str(), i as u32)).collect();
    let tname = truth.display().to_string();
    let bad = |problem: String| EvalError::Truth { file: tname.clone(), problem };
    let mut rdr = csv::Reader::from_path(truth).map_err(|e| bad(e.to_string()))?;
    let headers = rdr.headers().map_err(|e| bad(e.to_string()))?.clone();
    if headers.iter().collect::<Vec<_>>() != ["force", "employee_id", "record_id", "relation"] {
        return Err(bad("header must be force,employee_id,record_id,relation".into()));
    }
    let mut same: HashSet<(u32, u32)> = HashSet::new();
    let mut same_refused: Vec<(String, String, String)> = Vec::new();
    let mut hard: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut relation: HashMap<(u32, u32), String> = HashMap::new();
    for (i, row) in rdr.records().enumerate() {
        let row = row.map_err(|e| bad(format!("row {}: {e}", i + 1)))?;
        let s = subject_ix.get(&(&row[0], &row[1]));
        let r = record_ix.get(&row[2]);
        let subject_refused = refused_subjects.contains(&(row[0].to_string(), row[1].to_string()));
        let record_refused = refused_records.contains(&row[2]);
        let (Some(s), Some(r)) = (s, r) else {
            // A refused row's true pair is a pair missed; a row in no input
            // (another extract's, or a delta's) is not this evaluation's.
            let known_s = s.is_some() || subject_refused;
            let known_r = r.is_some() || record_refused;
            if &row[3] == "same_person" && known_s && known_r {
                same_refused.push((row[0].to_string(), row[1].to_string(), row[2].to_string()));
            }
            continue;
        };
        let pair = (*s, *r);
        if &row[3] == "same_person" {
            same.insert(pair);
        } else {
            relation.insert(pair, row[3].to_string());
            let e = hard.entry(row[3].to_string()).or_default();
            e.0 += 1;
            if confirmed.contains(&pair) {
                e.1 += 1;
            }
        }
    }
    let truths = same.len() + same_refused.len();
    let tp = confirmed.intersection(&same).count();
    let fp = confirmed.len() - tp;
    let fn_ = truths - tp;
    let mut missed_by_evidence: BTreeMap<String, usize> = BTreeMap::new();
    let mut missed_pairs = Vec::new();
    for p in same.iter().filter(|p| !confirmed.contains(p)) {
        let label = evidence.get(p).cloned().unwrap_or_else(|| "none".to_string());
        let (f, e) = &subjects[p.0 as usize];
        let prob = probability.get(p).copied().unwrap_or(0.0);
        missed_pairs.push((f.clone(), e.clone(), records[p.1 as usize].clone(), label.clone(), prob));
        *missed_by_evidence.entry(label).or_default() += 1;
    }
    for (f, e, r) in &same_refused {
        missed_pairs.push((f.clone(), e.clone(), r.clone(), "refused".to_string(), 0.0));
    }
    missed_pairs.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut wrong_pairs: Vec<_> = confirmed
        .iter()
        .filter(|p| !same.contains(p))
        .map(|p| {
            let (f, e) = &subjects[p.0 as usize];
            let rel = relation.get(p).cloned().unwrap_or_else(|| "unrelated".to_string());
            let label = evidence.get(p).cloned().unwrap_or_default();
            (
                f.clone(),
                e.clone(),
                records[p.1 as usize].clone(),
                rel,
                label,
                probability.get(p).copied().unwrap_or(0.0),
            )
        })
        .collect();
    wrong_pairs.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    if !same_refused.is_empty() {
        missed_by_evidence.insert("refused".to_string(), same_refused.len());
    }
    let missed_as_candidates = same.iter().filter(|p| !confirmed.contains(p) && candidate_pairs.contains(p)).count();
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let precision = ratio(tp, confirmed.len());
    let recall = ratio(tp, truths);
    let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
    let thresholds = THRESHOLDS
        .iter()
        .map(|&t| {
            let at: Vec<&((u32, u32), f64)> = scored.iter().filter(|(_, p)| *p >= t).collect();
            let tp = at.iter().filter(|(pair, _)| same.contains(pair)).count();
            ThresholdResult {
                threshold: t,
                confirmed: at.len(),
                precision: ratio(tp, at.len()),
                recall: ratio(tp, truths),
            }
        })
        .collect();
    let mut calibration = Vec::new();
    let mut from = 0.0;
    for to in BINS {
        let inside: Vec<&((u32, u32), f64)> =
            scored.iter().filter(|(_, p)| *p >= from && (*p < to || (to == 1.0 && *p <= 1.0))).collect();
        if !inside.is_empty() {
            let predicted = inside.iter().map(|(_, p)| p).sum::<f64>() / inside.len() as f64;
            let observed = ratio(inside.iter().filter(|(pair, _)| same.contains(pair)).count(), inside.len());
            calibration.push(CalibrationBin { from, to, pairs: inside.len(), predicted, observed });
        }
        from = to;
    }
    let mut by_pattern: BTreeMap<&str, Pattern> = BTreeMap::new();
    for (pair, p) in &scored {
        let ev = evidence[pair].as_str();
        let e = by_pattern.entry(ev).or_insert_with(|| Pattern {
            evidence: ev.to_string(),
            pairs: 0,
            same_person: 0,
            confirmed: 0,
            predicted: 0.0,
            lowest: 1.0,
            highest: 0.0,
        });
        e.pairs += 1;
        e.same_person += usize::from(same.contains(pair));
        e.confirmed += usize::from(confirmed.contains(pair));
        e.predicted += p;
        e.lowest = e.lowest.min(*p);
        e.highest = e.highest.max(*p);
    }
    let mut patterns: Vec<Pattern> = by_pattern
        .into_values()
        .map(|mut p| {
            p.predicted /= p.pairs as f64;
            p
        })
        .collect();
    patterns.sort_by(|a, b| b.pairs.cmp(&a.pairs).then(a.evidence.cmp(&b.evidence)));
    let mut per_force: BTreeMap<String, ForceResult> = BTreeMap::new();
    for (f, _) in &subjects {
        per_force.entry(f.clone()).or_default().subjects += 1;
    }
    for &(s, _) in &same {
        per_force.entry(subjects[s as usize].0.clone()).or_default().true_pairs += 1;
    }
    for p in &confirmed {
        let e = per_force.entry(subjects[p.0 as usize].0.clone()).or_default();
        e.confirmed += 1;
        if same.contains(p) {
            e.true_positives += 1;
        }
    }
    Ok(EvalResult {
        policy_version: policy.version.clone(),
        trained: opts.train,
        policy_toml: policy.to_toml(),
        subjects: subjects.len(),
        records: records.len(),
        national_tokens: matcher.national_tokens(),
        roster_tokens,
        confirmed: confirmed.len(),
        true_positives: tp,
        false_positives: fp,
        false_negatives: fn_,
        missed_refused: same_refused.len(),
        missed_as_candidates,
        candidates: candidate_pairs.len(),
        missed_by_evidence,
        precision,
        recall,
        f1,
        thresholds,
        calibration,
        hard_negatives: hard,
        per_force,
        inputs: reports.iter().map(Report::summary).collect(),
        confirmed_pairs: {
            let mut v: Vec<(String, String, String)> = confirmed
                .iter()
                .map(|(s, r)| {
                    (subjects[*s as usize].0.clone(), subjects[*s as usize].1.clone(), records[*r as usize].clone())
                })
                .collect();
            v.sort();
            v
        },
        missed_pairs,
        wrong_pairs,
        reports,
        patterns,
        seconds,
    })
}

impl EvalResult {
    /// A plain-text account for a terminal.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for i in &self.inputs {
            s.push_str(&format!("input      {i}\n"));
        }
        s.push_str(&format!(
            "indexed    {} subjects ({} tokens), {} national records ({} tokens, {:.1} a record)\n",
            self.subjects,
            self.roster_tokens,
            self.records,
            self.national_tokens,
            self.national_tokens as f64 / self.records.max(1) as f64
        ));
        let how = if self.trained { " (trained on this data without the truth file)" } else { "" };
        s.push_str(&format!("policy     {}{how}\n", self.policy_version));
        s.push_str(&format!(
            "confirmed  {} pairs: {} true, {} false; {} same-person pairs missed ({} of them candidates, {} with a refused row)\n",
            self.confirmed,
            self.true_positives,
            self.false_positives,
            self.false_negatives,
            self.missed_as_candidates,
            self.missed_refused
        ));
        s.push_str(&format!("candidates {} pairs (counted, never disclosed)\n", self.candidates));
        let mut missed: Vec<(&String, &usize)> = self.missed_by_evidence.iter().collect();
        missed.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (evidence, n) in missed.iter().take(12) {
            s.push_str(&format!("missed     {n} seen as {evidence}\n"));
        }
        if missed.len() > 12 {
            let rest: usize = missed[12..].iter().map(|(_, n)| **n).sum();
            s.push_str(&format!("missed     {rest} seen otherwise\n"));
        }
        for (rel, (n, c)) in &self.hard_negatives {
            s.push_str(&format!("hard neg.  {rel}: {n} in truth, {c} confirmed\n"));
        }
        for t in &self.thresholds {
            s.push_str(&format!(
                "at {:<7}  {:>6} pairs  precision {:.4}  recall {:.4}\n",
                t.threshold, t.confirmed, t.precision, t.recall
            ));
        }
        for b in &self.calibration {
            s.push_str(&format!(
                "calibr.    [{:<6}, {:<6}) {:>7} pairs  predicted {:.4}  observed {:.4}\n",
                b.from, b.to, b.pairs, b.predicted, b.observed
            ));
        }
        s.push_str(&format!(
            "precision  {:.4}\nrecall     {:.4}\nF1         {:.4}\n",
            self.precision, self.recall, self.f1
        ));
        s.push_str(&format!("time       {:.2} s\n", self.seconds));
        s
    }
}
