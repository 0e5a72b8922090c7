//! The confirmation policy: a field-level Fellegi–Sunter model that turns
//! the evidence for a (subject, record) pair into a calibrated match
//! probability, and the thresholds that decide what is disclosed. Pure: a
//! policy is parsed from TOML text and applied to evidence; training
//! (expectation–maximisation) is in [`train`].
//!
//! # The model
//! The coordinator sees, for a pair, which key kinds agree, which kinds each
//! side has, and how many national records hold each agreeing token. From
//! the agreeing kinds it reads a *level* per field (forename, surname, date
//! of birth, postcode, NI number; `vigil_proto::kinds`), and from the kinds
//! both sides have, which higher levels are ruled out: had the forename
//! agreed exactly while surname and date agree, `name_dob` would agree too.
//! So each field is either absent on a side (no evidence), or its true level
//! lies in a known set of *possible levels* ([`Assessment::possible`]).
//!
//! Six kinds of pair are told apart:
//! - **same person** (`m`): the level distribution of a person recorded
//!   twice, with keying errors, moves and missing values;
//! - **twin**, **sibling**, **parent or child**: same surname, often the
//!   same address; a twin has the same date of birth, a parent or child now
//!   and then the same forename (a junior), never both;
//! - **namesake**: another person with the same name and date of birth,
//!   whose records carry the same keying errors, at an address and with an
//!   NI number that agree only by chance (since default-2026-12.5);
//! - **unrelated** (`u`): chance agreement in the population.
//!
//! Each class gives a field's possible levels the sum of its probabilities,
//! fields are independent within a class, and the class priors are
//! `per_subject / N` (expected national records of that kind per subject,
//! `N` national records held), the unrelated class taking the rest. The match probability is the posterior of
//! the first class. For chance agreement the forename and surname use the
//! frequency of the actual value when the coordinator can see it: how many
//! other national records hold the agreeing `forename_dob` (or
//! `surname_dob`) token, shrunk towards the population rate
//! (`frequency_pseudo_count`). A rare name then counts for more than a
//! common one.
//!
//! A pair is **confirmed** when its probability reaches
//! `confirm_probability`, a **candidate** (counted, never disclosed) from
//! `candidate_probability`. docs/matching.md explains the numbers.
//!
//! # Layout
//! - this module: policy files, levels, the pair-by-pair model.
//! - [`subject`]: a subject's candidates in one source decided together.
//! - [`record`]: a record's other subjects weighed in (a record is one
//!   person's).
//! - [`train`]: expectation–maximisation without labels.

use serde::{Deserialize, Serialize};
use vigil_proto::KeyKind;
use vigil_proto::kinds::{ALL, FIELDS, Field, KindSet, Level, SCHEME_VERSION};

pub mod record;
pub mod subject;
pub mod train;

/// The default policy shipped with Vigil.
pub const DEFAULT_POLICY: &str = include_str!("default-policy.toml");

/// Level probabilities per field, as written in a policy file: index `l` is
/// the probability of level `l` (four levels for names and date of birth,
/// three for postcode and NI number).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldTable {
    /// Forename levels: none, initial or last three letters, sounds alike, exact.
    pub forename: Vec<f64>,
    /// Surname levels: none, first or last three letters, sounds alike, exact.
    pub surname: Vec<f64>,
    /// Date-of-birth levels: none, year, two of three parts, exact.
    pub dob: Vec<f64>,
    /// Postcode levels: none, district, exact.
    pub postcode: Vec<f64>,
    /// NI-number levels: none, half, exact.
    pub nino: Vec<f64>,
}

/// A kind of relative: how many national records of such relatives a
/// subject has, and their level probabilities.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RelativeTable {
    /// Expected national records of this kind of relative per subject.
    pub per_subject: f64,
    /// Forename levels.
    pub forename: Vec<f64>,
    /// Surname levels.
    pub surname: Vec<f64>,
    /// Date-of-birth levels.
    pub dob: Vec<f64>,
    /// Postcode levels.
    pub postcode: Vec<f64>,
    /// NI-number levels.
    pub nino: Vec<f64>,
}

impl RelativeTable {
    fn fields(&self) -> FieldTable {
        FieldTable {
            forename: self.forename.clone(),
            surname: self.surname.clone(),
            dob: self.dob.clone(),
            postcode: self.postcode.clone(),
            nino: self.nino.clone(),
        }
    }
}

/// The kinds of relative the model knows, in policy order. A namesake is
/// not kin, but is modelled the same way: another person, with the
/// subject's name and date of birth, whose records carry the same keying
/// errors.
pub const RELATIVES: [&str; 4] = ["twin", "sibling", "parent_child", "namesake"];
/// The namesake's index in [`RELATIVES`].
pub const NAMESAKE: usize = 3;

/// How a trained policy was trained (written by `vigil-coordinator calibrate`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    /// The policy version training started from.
    pub from_version: String,
    /// Subjects whose pairs were used.
    pub subjects: u64,
    /// National records held.
    pub records: u64,
    /// Candidate pairs (agreeing on at least one kind) used.
    pub pairs: u64,
    /// Expectation–maximisation rounds run.
    pub rounds: u32,
}

/// A policy file as written (docs/matching.md documents each key).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Version string, written into every disclosure and audit entry.
    pub version: String,
    /// The match-key scheme the policy is for.
    pub scheme: u32,
    /// Match probability at or above which a pair is confirmed.
    pub confirm_probability: f64,
    /// Match probability at or above which an unconfirmed pair is a candidate.
    pub candidate_probability: f64,
    /// Expected national records of the same person per subject (the prior).
    pub matches_per_subject: f64,
    /// Share of subjects with at least one record in a source (the
    /// subject-level prior; [`subject`]).
    #[serde(default = "PolicyFile::has_record_default")]
    pub subject_has_record: f64,
    /// Chance of each further record of a subject in the same source.
    #[serde(default = "PolicyFile::further_default")]
    pub further_record: f64,
    /// Share of a subject's records that agree with them on no kind.
    #[serde(default = "PolicyFile::unseen_default")]
    pub unseen_share: f64,
    /// Share of national records that belong to an enrolled subject (the
    /// record side of the assignment; [`record`]). Training sets it.
    #[serde(default)]
    pub record_has_subject: f64,
    /// Weight (in records) of the population rate against the observed
    /// frequency of a forename or surname.
    pub frequency_pseudo_count: f64,
    /// Level probabilities for the same person.
    pub same_person: FieldTable,
    /// Twins: expected records per subject and level probabilities.
    pub twin: RelativeTable,
    /// Siblings.
    pub sibling: RelativeTable,
    /// Parents and children.
    pub parent_child: RelativeTable,
    /// Namesakes: other people with the subject's name and date of birth.
    /// A policy written before default-2026-12.5 lacks the table, and
    /// decides without the class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namesake: Option<RelativeTable>,
    /// Level probabilities for unrelated people (chance agreement).
    pub chance: FieldTable,
    /// Present in a trained policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<Training>,
}

impl PolicyFile {
    // Policies written before the subject-level model (2026-12-01) lack
    // these keys: the shipped values apply.
    fn has_record_default() -> f64 {
        0.05
    }
    fn further_default() -> f64 {
        0.2
    }
    fn unseen_default() -> f64 {
        0.03
    }
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
    /// Numbers that make no sense.
    #[error("policy is not valid: {0}")]
    Invalid(String),
}

/// Level probabilities of one class: `[field][level]`.
pub type Table = [[f64; 4]; FIELDS.len()];

/// Classes of the model: same person, four kinds of relative, unrelated.
pub const CLASSES: usize = 2 + RELATIVES.len();
/// The unrelated class's index.
pub const UNRELATED: usize = CLASSES - 1;

/// The posterior of each class from its log likelihood, priors included
/// ([`Policy::log_likelihoods`]).
pub fn posterior_of(l: &[f64; CLASSES]) -> [f64; CLASSES] {
    let mx = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e = l.map(|v| (v - mx).exp());
    let z: f64 = e.iter().sum();
    e.map(|v| v / z)
}

/// A checked policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Version string.
    pub version: String,
    /// Confirmation threshold (a probability).
    pub confirm: f64,
    /// Candidate threshold (a probability).
    pub candidate: f64,
    /// Expected same-person records per subject.
    pub matches_per_subject: f64,
    /// Share of subjects with a record in a source ([`subject`]).
    pub subject_has_record: f64,
    /// Chance of each further record of a subject in one source.
    pub further_record: f64,
    /// Share of a subject's records that agree with them on no kind.
    pub unseen_share: f64,
    /// Share of national records that belong to an enrolled subject ([`record`]).
    pub record_has_subject: f64,
    /// Expected records per subject of each kind of relative ([`RELATIVES`]).
    /// 0 for a class the policy file lacks (a namesake, before
    /// default-2026-12.5).
    pub relatives_per_subject: [f64; RELATIVES.len()],
    /// Pseudo-count of the name-frequency prior.
    pub pseudo_count: f64,
    /// Same person.
    pub m: Table,
    /// Each kind of relative.
    pub r: [Table; RELATIVES.len()],
    /// Unrelated.
    pub u: Table,
    /// How it was trained, if it was.
    pub training: Option<Training>,
    /// `m`, `r` and `u` worked into log sums ([`LnTables`]); whatever
    /// changes those tables calls [`Policy::tables_changed`].
    ln: LnTables,
}

/// For every field and every mask of possible levels, the log of each
/// class's probability of those levels (same person, each relative,
/// unrelated): [`Policy::log_likelihoods`] reads these on every candidate
/// pair instead of taking 25 logarithms. Keeps the tables it was made from,
/// so that a debug build can tell when it is stale.
#[derive(Debug, Clone, PartialEq)]
struct LnTables {
    ln: [[[f64; CLASSES]; 16]; FIELDS.len()],
    from: (Table, [Table; RELATIVES.len()], Table),
}

impl LnTables {
    fn of(m: &Table, r: &[Table; RELATIVES.len()], u: &Table) -> LnTables {
        let mut ln = [[[0.0; CLASSES]; 16]; FIELDS.len()];
        for (i, by_mask) in ln.iter_mut().enumerate() {
            for (mask, row) in by_mask.iter_mut().enumerate() {
                let mask = mask as u8;
                row[0] = log_sum(&m[i], mask);
                for (k, t) in r.iter().enumerate() {
                    row[1 + k] = log_sum(&t[i], mask);
                }
                row[UNRELATED] = log_sum(&u[i], mask);
            }
        }
        LnTables { ln, from: (*m, *r, *u) }
    }
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
    /// agreeing tokens (by `KeyKind::index`), the record itself included and
    /// the subject's own other records left out (holding its NI number and
    /// every token the pair agrees on, when a name-and-date kind agrees):
    /// one person recorded again (see `matcher`).
    pub shares: [u32; ALL.len()],
    /// Kinds the subject has.
    pub subject_kinds: KindSet,
    /// Kinds the record has.
    pub record_kinds: KindSet,
    /// National records held when the pair was seen.
    pub records: u32,
}

/// A field's level as seen for a pair: `None` when a side does not have it.
pub type Seen = [Option<Level>; FIELDS.len()];

/// The policy's reading of one pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assessment {
    /// The decision.
    pub decision: Decision,
    /// Match probability.
    pub probability: f64,
    /// Level seen per field (`None`: a side does not have the field).
    pub seen: Seen,
}

impl Assessment {
    /// The evidence in short: `F3 S2 D3 P- N0` (level per field, `-` where a
    /// side does not have the field). Travels in disclosures and audit entries.
    pub fn fields(&self) -> String {
        fields_string(&self.seen)
    }
}

/// `F3 S2 D3 P- N0` for seen levels.
pub fn fields_string(seen: &Seen) -> String {
    let mut s = String::with_capacity(14);
    for (i, f) in FIELDS.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push(f.letter());
        match seen[i] {
            Some(l) => s.push(char::from(b'0' + l)),
            None => s.push('-'),
        }
    }
    s
}

/// The features of one pair the model needs: possible levels per field (bit
/// `l` set when level `l` is possible; 0 when a side lacks the field), the
/// agreeing kinds, and for each how many other national records hold its
/// token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// Possible levels, as bit masks, per field.
    pub possible: [u8; FIELDS.len()],
    /// Kinds that agree.
    pub agreeing: KindSet,
    /// For each agreeing kind, the other national records holding its token.
    pub others: [u32; ALL.len()],
    /// National records held.
    pub records: u32,
}

impl Features {
    fn others_of(&self, k: KeyKind) -> Option<u32> {
        self.agreeing.contains(k).then(|| self.others[k.index()])
    }
}

/// The level seen per field: the highest any agreeing kind implies, or
/// `None` where either side has no kind with that field.
pub fn seen_levels(e: &Evidence) -> Seen {
    let levels = e.agreeing.levels();
    let (a, b) = (e.subject_kinds.fields(), e.record_kinds.fields());
    let mut out = [None; FIELDS.len()];
    for i in 0..FIELDS.len() {
        if a[i] && b[i] {
            out[i] = Some(levels[i]);
        }
    }
    out
}

/// Which levels each field may truly have, given what was seen: the level
/// seen, and every higher level that no kind both sides hold would have
/// revealed (a kind reveals a level of a field when the pair's other fields
/// are seen at the levels that kind needs).
///
/// A kind reveals levels of field `f` exactly when `f` is the one field it
/// needs higher than seen (and `f` is seen): then every level from its need
/// of `f` up is revealed. So one pass over the kinds both sides hold finds,
/// for each field, the lowest level revealed, and the possible levels run
/// from the one seen to just below it (this runs on every candidate pair).
pub fn possible_levels(seen: &Seen, common: KindSet) -> [u8; FIELDS.len()] {
    // Levels no higher than 3: a need of 4 reveals nothing.
    let mut revealed_from = [4u8; FIELDS.len()];
    for i in common.indices() {
        let need = vigil_proto::kinds::ALL[i].needs();
        let mut short = None;
        let mut shorts = 0;
        for (g, (n, s)) in need.iter().zip(seen).enumerate() {
            if *n != 0 && s.is_none_or(|s| s < *n) {
                shorts += 1;
                short = Some(g);
            }
        }
        if let (1, Some(g)) = (shorts, short)
            && seen[g].is_some()
        {
            revealed_from[g] = revealed_from[g].min(need[g]);
        }
    }
    let mut out = [0u8; FIELDS.len()];
    for f in FIELDS {
        let i = f.index();
        if let Some(lo) = seen[i] {
            let to = revealed_from[i].min(f.max_level() + 1);
            out[i] = (lo..to).fold(0u8, |m, l| m | 1 << l);
        }
    }
    out
}

/// The features of a pair.
pub fn features(e: &Evidence) -> (Seen, Features) {
    let seen = seen_levels(e);
    let common = KindSet(e.subject_kinds.0 & e.record_kinds.0);
    let mut others = [0u32; ALL.len()];
    for k in e.agreeing.iter() {
        others[k.index()] = e.shares[k.index()].max(1) - 1;
    }
    let f = Features { possible: possible_levels(&seen, common), agreeing: e.agreeing, others, records: e.records };
    (seen, f)
}

fn table_of(t: &FieldTable, what: &str) -> Result<Table, PolicyError> {
    let mut out = [[0.0; 4]; FIELDS.len()];
    for f in FIELDS {
        let v = match f {
            Field::Forename => &t.forename,
            Field::Surname => &t.surname,
            Field::Dob => &t.dob,
            Field::Postcode => &t.postcode,
            Field::Nino => &t.nino,
        };
        let name = f.short_name();
        if v.len() != usize::from(f.max_level()) + 1 {
            return Err(PolicyError::Invalid(format!(
                "[{what}] {name} needs {} probabilities (one per level), not {}",
                f.max_level() + 1,
                v.len()
            )));
        }
        if v.iter().any(|p| !p.is_finite() || *p <= 0.0 || *p > 1.0) {
            return Err(PolicyError::Invalid(format!("[{what}] {name}: probabilities must be in (0, 1]")));
        }
        let sum: f64 = v.iter().sum();
        if (sum - 1.0).abs() > 1e-3 {
            return Err(PolicyError::Invalid(format!("[{what}] {name}: probabilities add up to {sum:.4}, not 1")));
        }
        for (l, p) in v.iter().enumerate() {
            out[f.index()][l] = p / sum;
        }
    }
    Ok(out)
}

fn field_table(t: &Table) -> FieldTable {
    let row = |f: Field| t[f.index()][..=usize::from(f.max_level())].iter().map(|p| round_sig(*p)).collect();
    FieldTable {
        forename: row(Field::Forename),
        surname: row(Field::Surname),
        dob: row(Field::Dob),
        postcode: row(Field::Postcode),
        nino: row(Field::Nino),
    }
}

fn relative_table(t: &Table, per_subject: f64) -> RelativeTable {
    let f = field_table(t);
    RelativeTable {
        per_subject: round_sig(per_subject),
        forename: f.forename,
        surname: f.surname,
        dob: f.dob,
        postcode: f.postcode,
        nino: f.nino,
    }
}

/// A namesake's records carry the same keying errors as the subject's own:
/// the namesake's name and date levels are always the same person's (the
/// file's rows are written for the reader; training moves them with `m`).
pub(crate) fn namesakes_keyed_alike(m: &Table, r: &mut [Table; RELATIVES.len()]) {
    for f in [Field::Forename, Field::Surname, Field::Dob] {
        r[NAMESAKE][f.index()] = m[f.index()];
    }
}

/// Rounds to six significant digits, so that written policies stay readable.
fn round_sig(p: f64) -> f64 {
    if p == 0.0 || !p.is_finite() {
        return p;
    }
    let digits = 6 - p.abs().log10().ceil() as i32;
    let scale = 10f64.powi(digits);
    (p * scale).round() / scale
}

/// `ln Σ_{l in mask} t[l]`, or 0 when the mask is empty (field absent).
fn log_sum(t: &[f64; 4], mask: u8) -> f64 {
    if mask == 0 {
        return 0.0;
    }
    let mut s = 0.0;
    for (l, p) in t.iter().enumerate() {
        if mask & (1 << l) != 0 {
            s += p;
        }
    }
    s.max(1e-300).ln()
}

impl Policy {
    /// Parses and checks a policy file.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Parse(e.message().to_string()))?;
        Policy::from_file(file)
    }

    /// Checks a parsed policy file.
    pub fn from_file(file: PolicyFile) -> Result<Policy, PolicyError> {
        let bad = |m: &str| Err(PolicyError::Invalid(m.to_string()));
        if file.version.trim().is_empty() || file.version.len() > 64 {
            return bad("version must be 1 to 64 characters");
        }
        if file.scheme != SCHEME_VERSION {
            return Err(PolicyError::Invalid(format!(
                "the policy is for match-key scheme {}; this coordinator uses scheme {SCHEME_VERSION}",
                file.scheme
            )));
        }
        let prob = |p: f64| p.is_finite() && p > 0.0 && p < 1.0;
        if !prob(file.confirm_probability) || !prob(file.candidate_probability) {
            return bad("confirm_probability and candidate_probability must be between 0 and 1");
        }
        if file.candidate_probability > file.confirm_probability {
            return bad("candidate_probability must not exceed confirm_probability");
        }
        let count = |x: f64| x.is_finite() && x > 0.0 && x <= 1000.0;
        let relatives = [Some(&file.twin), Some(&file.sibling), Some(&file.parent_child), file.namesake.as_ref()];
        if !count(file.matches_per_subject) || relatives.iter().flatten().any(|r| !count(r.per_subject)) {
            return bad("matches_per_subject and every per_subject must be above 0 and at most 1000");
        }
        let share = |x: f64| x.is_finite() && (0.0..1.0).contains(&x);
        if !prob(file.subject_has_record) || !prob(file.further_record) || !share(file.unseen_share) {
            return bad(
                "subject_has_record and further_record must be between 0 and 1, unseen_share from 0 to below 1",
            );
        }
        if !share(file.record_has_subject) {
            return bad("record_has_subject must be from 0 to below 1");
        }
        if !count(file.frequency_pseudo_count) {
            return bad("frequency_pseudo_count must be above 0 and at most 1000");
        }
        let m = table_of(&file.same_person, "same_person")?;
        // A class the file lacks keeps the unrelated table with no prior.
        let chance = table_of(&file.chance, "chance")?;
        let mut r = [chance; RELATIVES.len()];
        let mut per_subject = [0.0; RELATIVES.len()];
        for (k, t) in relatives.iter().enumerate() {
            if let Some(t) = t {
                r[k] = table_of(&t.fields(), RELATIVES[k])?;
                per_subject[k] = t.per_subject;
            }
        }
        namesakes_keyed_alike(&m, &mut r);
        let u = chance;
        Ok(Policy {
            version: file.version,
            confirm: file.confirm_probability,
            candidate: file.candidate_probability,
            matches_per_subject: file.matches_per_subject,
            subject_has_record: file.subject_has_record,
            further_record: file.further_record,
            unseen_share: file.unseen_share,
            record_has_subject: file.record_has_subject,
            relatives_per_subject: per_subject,
            pseudo_count: file.frequency_pseudo_count,
            ln: LnTables::of(&m, &r, &u),
            m,
            r,
            u,
            training: file.training,
        })
    }

    /// Works the log sums out again after `m`, `r` or `u` changed.
    pub(crate) fn tables_changed(&mut self) {
        self.ln = LnTables::of(&self.m, &self.r, &self.u);
    }

    /// The policy as a file.
    pub fn to_file(&self) -> PolicyFile {
        PolicyFile {
            version: self.version.clone(),
            scheme: SCHEME_VERSION,
            confirm_probability: self.confirm,
            candidate_probability: self.candidate,
            matches_per_subject: round_sig(self.matches_per_subject),
            subject_has_record: round_sig(self.subject_has_record),
            further_record: round_sig(self.further_record),
            unseen_share: round_sig(self.unseen_share),
            record_has_subject: round_sig(self.record_has_subject),
            frequency_pseudo_count: self.pseudo_count,
            same_person: field_table(&self.m),
            twin: relative_table(&self.r[0], self.relatives_per_subject[0]),
            sibling: relative_table(&self.r[1], self.relatives_per_subject[1]),
            parent_child: relative_table(&self.r[2], self.relatives_per_subject[2]),
            namesake: (self.relatives_per_subject[NAMESAKE] > 0.0)
                .then(|| relative_table(&self.r[NAMESAKE], self.relatives_per_subject[NAMESAKE])),
            chance: field_table(&self.u),
            training: self.training.clone(),
        }
    }

    /// The policy as TOML text, with a header saying what it is.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(&self.to_file()).unwrap_or_default();
        format!(
            "# Vigil confirmation policy (match-key scheme {SCHEME_VERSION}). docs/matching.md explains every number.\n\
             # Level order: forename [none, initial or last three letters, sounds alike, exact];\n\
             # surname [none, first or last three letters, sounds alike, exact]; dob [none, year, two of three, exact];\n\
             # postcode [none, district, exact]; nino [none, half, exact].\n{body}"
        )
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
            (Some(p), PolicyError::Invalid(m)) => PolicyError::Invalid(format!("{}: {m}", p.display())),
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

    /// The chance that an unrelated record has this forename (or surname),
    /// from how many other national records share the agreeing name-and-date
    /// token: a Gamma–Poisson estimate shrunk towards the population rate.
    fn value_rate(&self, field: Field, others: u32, records: u32) -> f64 {
        let prior = self.u[field.index()][3];
        let a = self.pseudo_count;
        let exposure = f64::from(records.saturating_sub(1)) * self.u[Field::Dob.index()][3];
        (a + f64::from(others)) / (a / prior + exposure)
    }

    /// The prior that a given national record, of `records` held, is a given
    /// subject's: `matches_per_subject / N` (at most one half).
    pub fn pair_prior(&self, records: u32) -> f64 {
        (self.matches_per_subject / f64::from(records.max(1))).min(0.5)
    }

    /// Log likelihoods of the classes, priors included: same person, each
    /// kind of relative ([`RELATIVES`]), unrelated.
    pub fn log_likelihoods(&self, x: &Features) -> [f64; CLASSES] {
        let n = f64::from(x.records.max(1));
        let pm = self.pair_prior(x.records);
        let pr = self.relatives_per_subject.map(|r| (r / n).min(0.1));
        let pu = 1.0 - pm - pr.iter().sum::<f64>();
        let mut u = self.u;
        if let Some(o) = x.others_of(KeyKind::ForenameDob) {
            u[Field::Forename.index()][3] = self.value_rate(Field::Forename, o, x.records);
        }
        if let Some(o) = x.others_of(KeyKind::SurnameDob) {
            u[Field::Surname.index()][3] = self.value_rate(Field::Surname, o, x.records);
        }
        debug_assert!(self.ln.from == (self.m, self.r, self.u), "the policy's log sums are stale");
        // ln 0 is -inf: a class the policy lacks is never the explanation.
        let mut out = [0.0; CLASSES];
        out[0] = pm.ln();
        for (o, p) in out[1..UNRELATED].iter_mut().zip(pr) {
            *o = p.ln();
        }
        out[UNRELATED] = pu.ln();
        for (i, mask) in x.possible.iter().enumerate() {
            let row = &self.ln.ln[i][usize::from(*mask & 15)];
            for (o, l) in out[..UNRELATED].iter_mut().zip(row) {
                *o += l;
            }
            // A name's chance rate may be refined from its frequency.
            out[UNRELATED] += if u[i] == self.u[i] { row[UNRELATED] } else { log_sum(&u[i], *mask) };
        }
        out[UNRELATED] += self.common_values(&u, x).ln();
        out
    }

    /// The posterior of each class ([`Policy::log_likelihoods`] order).
    pub fn posterior(&self, x: &Features) -> [f64; CLASSES] {
        posterior_of(&self.log_likelihoods(x))
    }

    /// How much more common than the model expects the values this pair
    /// agrees on are: for each agreeing kind, the other national records
    /// holding its token against the number expected by chance (a
    /// Gamma–Poisson estimate with the model's rate as prior); the largest
    /// factor, at least 1. Six records sharing a name and date of birth are
    /// not six chance coincidences.
    fn common_values(&self, u: &Table, x: &Features) -> f64 {
        let exposure = f64::from(x.records.saturating_sub(1));
        let mut factor: f64 = 1.0;
        for k in x.agreeing.iter() {
            let others = x.others[k.index()];
            if others == 0 {
                continue;
            }
            let mut q = 1.0;
            for (f, l) in k.implies() {
                let row = &u[f.index()];
                q *= row[usize::from(*l)..=usize::from(f.max_level())].iter().sum::<f64>();
            }
            let a = self.pseudo_count;
            factor = factor.max((a + f64::from(others)) / (a + exposure * q));
        }
        factor
    }

    /// The match probability of a pair's features.
    pub fn probability(&self, x: &Features) -> f64 {
        self.posterior(x)[0]
    }

    /// The policy's reading of a pair: the one place evidence becomes a
    /// decision (roster, national, check and offline evaluation all call it).
    pub fn assess(&self, e: &Evidence) -> Assessment {
        let (seen, x) = features(e);
        let probability = self.probability(&x);
        Assessment { decision: self.decide(probability), probability, seen }
    }

    /// The decision for a probability.
    pub fn decide(&self, probability: f64) -> Decision {
        if probability >= self.confirm {
            Decision::Confirmed
        } else if probability >= self.candidate {
            Decision::Candidate
        } else {
            Decision::NoMatch
        }
    }
}

#[cfg(test)]
mod tests;
