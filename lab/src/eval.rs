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

use vigil_coordinator::index::IndexKey;
use vigil_coordinator::matcher::{Hit, Matcher};
use vigil_coordinator::pepper::{Pepper, index_key};
use vigil_coordinator::policy::{Decision, Policy};

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
    /// Same-person pairs not confirmed.
    pub false_negatives: usize,
    /// Same-person pairs that were candidates.
    pub missed_as_candidates: usize,
    /// Pairs that reached candidate but not confirmed.
    pub candidates: usize,
    /// Same-person pairs not confirmed, by the kinds that did agree
    /// (`-` when nothing agreed): what the policy or the keys miss.
    pub missed_by_agreement: BTreeMap<String, usize>,
    /// true positives / confirmed.
    pub precision: f64,
    /// true positives / same-person pairs.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
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
    /// Seconds spent tokenising, indexing and matching.
    pub seconds: f64,
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
) -> Keys {
    tk.tokens(id, buf);
    buf.iter().map(|(k, t)| (*k, index_key(&pepper.rekey(t)))).collect()
}

/// Runs an evaluation.
pub fn run(rosters: &[PathBuf], extracts: &[PathBuf], truth: &Path, policy: &Policy) -> Result<EvalResult, EvalError> {
    let started = Instant::now();
    let rng = SystemRandom::new();
    let tk = Tokenizer::new(&LinkageKey::new(1, random32(&rng)?));
    let pepper = Pepper::new(random32(&rng)?);
    let mut reports = Vec::new();
    let mut buf = Vec::new();

    // Subjects: (force, employee id) and their keys.
    let mut subjects: Vec<(String, String)> = Vec::new();
    let mut subject_keys: Vec<Keys> = Vec::new();
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
                subject_keys.push(peppered(&tk, &pepper, &row.identity, &mut buf));
                subjects.push((force.clone(), row.employee_id));
            },
            |_| {},
        )?;
        reports.push(report);
    }
    let roster_tokens: usize = subject_keys.iter().map(Vec::len).sum();

    // National records.
    let mut matcher = Matcher::with_capacity(0, roster_tokens);
    let mut records: Vec<String> = Vec::new();
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
                let keys = peppered(&tk, &pepper, &row.identity, &mut buf);
                matcher.add_record(records.len() as u32, &keys);
                records.push(row.record_id);
            },
            |_| {},
        )?;
        reports.push(report);
    }
    for (sid, keys) in subject_keys.iter().enumerate() {
        matcher.add_subject(sid as u32, keys);
    }

    // Match every subject against every national token.
    let mut confirmed: HashSet<(u32, u32)> = HashSet::new();
    let mut agreement: HashMap<(u32, u32), vigil_proto::kinds::KindSet> = HashMap::new();
    let mut candidate_pairs: HashSet<(u32, u32)> = HashSet::new();
    let mut hits: Vec<Hit> = Vec::new();
    for (sid, keys) in subject_keys.iter().enumerate() {
        matcher.probe_national(keys, &mut hits);
        for h in &hits {
            agreement.insert((sid as u32, h.id), h.evidence.agreeing);
            match policy.classify(&h.evidence).0 {
                Decision::Confirmed => {
                    confirmed.insert((sid as u32, h.id));
                }
                Decision::Candidate => {
                    candidate_pairs.insert((sid as u32, h.id));
                }
                Decision::NoMatch => {}
            }
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
    let mut hard: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (i, row) in rdr.records().enumerate() {
        let row = row.map_err(|e| bad(format!("row {}: {e}", i + 1)))?;
        let (Some(s), Some(r)) = (subject_ix.get(&(&row[0], &row[1])), record_ix.get(&row[2])) else {
            continue;
        };
        let pair = (*s, *r);
        if &row[3] == "same_person" {
            same.insert(pair);
        } else {
            let e = hard.entry(row[3].to_string()).or_default();
            e.0 += 1;
            if confirmed.contains(&pair) {
                e.1 += 1;
            }
        }
    }
    let tp = confirmed.intersection(&same).count();
    let fp = confirmed.len() - tp;
    let fn_ = same.len() - tp;
    let mut missed_by_agreement: BTreeMap<String, usize> = BTreeMap::new();
    for p in same.iter().filter(|p| !confirmed.contains(p)) {
        let label = match agreement.get(p) {
            Some(k) if !k.is_empty() => k.iter().map(|k| k.short_name()).collect::<Vec<_>>().join("+"),
            _ => "-".to_string(),
        };
        *missed_by_agreement.entry(label).or_default() += 1;
    }
    let missed_as_candidates = same.iter().filter(|p| !confirmed.contains(p) && candidate_pairs.contains(p)).count();
    let precision = if confirmed.is_empty() { 1.0 } else { tp as f64 / confirmed.len() as f64 };
    let recall = if same.is_empty() { 1.0 } else { tp as f64 / same.len() as f64 };
    let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
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
        subjects: subjects.len(),
        records: records.len(),
        national_tokens: matcher.national_tokens(),
        roster_tokens,
        confirmed: confirmed.len(),
        true_positives: tp,
        false_positives: fp,
        false_negatives: fn_,
        missed_as_candidates,
        candidates: candidate_pairs.len(),
        missed_by_agreement,
        precision,
        recall,
        f1,
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
        reports,
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
            "indexed    {} subjects ({} tokens), {} national records ({} tokens)\n",
            self.subjects, self.roster_tokens, self.records, self.national_tokens
        ));
        s.push_str(&format!("policy     {}\n", self.policy_version));
        s.push_str(&format!(
            "confirmed  {} pairs: {} true, {} false; {} same-person pairs missed ({} of them candidates)\n",
            self.confirmed, self.true_positives, self.false_positives, self.false_negatives, self.missed_as_candidates
        ));
        s.push_str(&format!("candidates {} pairs (counted, never disclosed)\n", self.candidates));
        for (kinds, n) in &self.missed_by_agreement {
            s.push_str(&format!("missed     {n} agreeing on {kinds}\n"));
        }
        for (rel, (n, c)) in &self.hard_negatives {
            s.push_str(&format!("hard neg.  {rel}: {n} in truth, {c} confirmed\n"));
        }
        s.push_str(&format!(
            "precision  {:.4}\nrecall     {:.4}\nF1         {:.4}\n",
            self.precision, self.recall, self.f1
        ));
        s.push_str(&format!("time       {:.2} s\n", self.seconds));
        s
    }
}
