//! The synthetic data generator: force rosters, a national extract, a delta,
//! applicants and the ground truth, deterministic by seed.
//!
//! People are drawn from UK-like name frequencies (many Smiths and Davids, a
//! long tail of rarer surnames), with double-barrelled surnames, middle
//! names, married women with their former surname, accented names, and
//! postcodes in each force's area. A share of staff (`overlap`) have one to
//! three national records; each record is a noisy view of the person:
//! nicknames, typos, day and month transposed, former surnames, name order
//! swapped, missing or moved identifiers, aliases, alternative dates of
//! birth, titles and shouting capitals. Hard negatives are national records
//! of *other* people that look like staff: twins (same surname and date of
//! birth), siblings (same surname and address) and namesakes (same name and
//! date of birth, unrelated). The truth file lists every pair with its
//! relation, so evaluation knows what must and must not be confirmed.
//!
//! Randomness is a fixed xoshiro256** stream from the seed, so the same
//! arguments always give byte-identical files.

mod data;
mod noise;

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use data::*;
use vigil_identity::nicknames;
use vigil_identity::normalize::{Date, days_in_month};
use vigil_node::input::{APPLICANT_COLUMNS, EXTRACT_COLUMNS, ROSTER_COLUMNS};

/// What to generate (also the `vigil-node synth` options).
#[derive(Debug, Clone, clap::Args)]
pub struct Params {
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of forces (1 to 43).
    #[arg(long, default_value_t = 3)]
    pub forces: usize,
    /// Staff per force.
    #[arg(long, default_value_t = 2000)]
    pub staff_per_force: usize,
    /// National records in the main extract.
    #[arg(long, default_value_t = 50_000)]
    pub national: usize,
    /// Share of staff with at least one national record (0 to 1).
    #[arg(long, default_value_t = 0.05)]
    pub overlap: f64,
    /// Hard negatives (twins, siblings, namesakes) as a share of all staff.
    #[arg(long, default_value_t = 0.02)]
    pub hard_negatives: f64,
    /// National records in the delta file.
    #[arg(long, default_value_t = 100)]
    pub delta: usize,
    /// Applicants in the pre-employment check file.
    #[arg(long, default_value_t = 50)]
    pub applicants: usize,
    /// Share of national records without an NI number.
    #[arg(long, default_value_t = 0.05)]
    pub nino_missing: f64,
    /// Share of national records whose postcode is not the person's current one.
    #[arg(long, default_value_t = 0.15)]
    pub moved: f64,
    /// How noisy national records are: `mild` (a few typos and date slips)
    /// or `heavy` (one to four modifications in every record, and a long
    /// tail of forenames; docs/BENCHMARKS.md has the profile).
    #[arg(long, value_enum, default_value_t = Noise::Mild)]
    pub noise: Noise,
    /// Share of HR rows with one identity field left blank (forename,
    /// surname, date of birth or postcode, a quarter each), as in the
    /// original records of FEBRL-generated benchmarks. HR rows are complete
    /// otherwise (apart from the mild view's missing NI numbers and
    /// postcodes).
    #[arg(long, default_value_t = 0.0)]
    pub roster_missing: f64,
    /// Share of national records with one more identity field left blank
    /// (forename, surname or date of birth, a third each), on top of the
    /// profile's own missing values: how a benchmark whose records lack
    /// these fields more often than the heavy profile's 4% is reproduced.
    #[arg(long, default_value_t = 0.0)]
    pub national_missing: f64,
    /// Give each member of staff with national records exactly one (the
    /// shape of a two-file linkage benchmark: one record a person), instead
    /// of one to three.
    #[arg(long)]
    pub one_record: bool,
    /// The most national records one member of staff with records has (1
    /// to 10). At 3, the default, one, two or three (80%, 15% and 5% of
    /// them); at any other number `k` records with a chance in proportion
    /// to 1/k², as FEBRL draws the duplicates of an original (Zipf): about
    /// 1.56 a person at 5, the shape of a benchmark with up to five records
    /// a person. `--one-record` overrides it.
    #[arg(long, default_value_t = 3)]
    pub records_max: usize,
    /// Share of the national records of a person with a middle name that
    /// give the middle name as the only forename: the name the person goes
    /// by (0, the default, leaves every set as before).
    #[arg(long, default_value_t = 0.0)]
    pub known_as: f64,
    /// Heavy profile only: share of a member of staff's moved national
    /// records whose address is one the roster lists in
    /// `previous_postcodes` (HR's address history). 0 leaves HR rows
    /// without a history, the shape of a two-file linkage benchmark.
    #[arg(long, default_value_t = 0.5)]
    pub address_history: f64,
}

/// The corruption profile of national records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Noise {
    /// Nicknames, a typo in 2% of names, day and month swapped now and then.
    #[default]
    Mild,
    /// The mild view plus one to three modifications per record, as
    /// published record-linkage corruption generators make them.
    Heavy,
}

impl Default for Params {
    /// The defaults of the `vigil-node synth` options (declared once, above).
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            params: Params,
        }
        <Defaults as clap::Parser>::parse_from(["synth"]).params
    }
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    /// Parameters out of range.
    #[error("invalid parameters: {0}")]
    Params(String),
    /// Writing failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// What was written.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    /// Force codes, in order.
    pub forces: Vec<String>,
    /// Staff written over all rosters.
    pub staff: usize,
    /// Records in the main extract.
    pub national: usize,
    /// Records in the delta.
    pub delta: usize,
    /// Staff with at least one national record in the main extract.
    pub staff_with_records: usize,
    /// Same-person pairs in the main extract.
    pub true_pairs: usize,
    /// Same-person pairs in the delta.
    pub delta_true_pairs: usize,
    /// Hard-negative records (twins, siblings, namesakes).
    pub hard_negatives: usize,
    /// Applicants written, and how many of them have national records.
    pub applicants: usize,
    /// Applicants with national records.
    pub applicants_with_records: usize,
}

/// A xoshiro256** generator seeded by splitmix64: small, fast, stable.
pub struct Rng([u64; 4]);

impl Rng {
    /// A stream from a seed.
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 11) as u128 * n as u128) >> 53) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A uniform element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, s: &'a [T]) -> &'a T {
        &s[self.below(s.len())]
    }
}

/// A number of records from 1 to `max`, `k` with a chance in proportion to
/// 1/k² (a Zipf distribution, as FEBRL's generator draws duplicates).
fn zipf(rng: &mut Rng, max: usize) -> usize {
    let total: f64 = (1..=max).map(|k| 1.0 / (k * k) as f64).sum();
    let mut u = rng.unit() * total;
    for k in 1..max {
        u -= 1.0 / (k * k) as f64;
        if u < 0.0 {
            return k;
        }
    }
    max
}

struct Weighted<T: Copy> {
    items: Vec<T>,
    cum: Vec<u64>,
}

impl<T: Copy> Weighted<T> {
    fn new(table: &[(T, u32)]) -> Self {
        let mut total = 0u64;
        let mut cum = Vec::with_capacity(table.len());
        for (_, w) in table {
            total += u64::from(*w);
            cum.push(total);
        }
        Weighted { items: table.iter().map(|(t, _)| *t).collect(), cum }
    }

    fn pick(&self, rng: &mut Rng) -> T {
        let total = self.cum.last().copied().unwrap_or(1);
        let x = (rng.next_u64() % total) + 1;
        let i = self.cum.partition_point(|&c| c < x);
        self.items[i.min(self.items.len() - 1)]
    }
}

/// A synthetic person, as the truth knows them.
#[derive(Debug, Clone)]
struct Person {
    female: bool,
    forenames: Vec<String>,
    surname: String,
    /// Birth surname of someone who changed it on marriage.
    maiden: Option<String>,
    dob: Date,
    nino: [u8; 9],
    postcode: Postcode,
    /// Earlier addresses HR holds (the heavy profile's address history),
    /// most recent first.
    previous: Vec<Postcode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Postcode {
    area: usize,
    district: u8,
    sector: u8,
    unit: [u8; 2],
}

impl Postcode {
    fn render(&self) -> String {
        format!("{}{} {}{}{}", AREAS[self.area], self.district, self.sector, self.unit[0] as char, self.unit[1] as char)
    }
}

/// One CSV row of the national extract.
struct NationalRow {
    category: &'static str,
    event_date: String,
    forenames: String,
    surname: String,
    aliases: Vec<String>,
    dob: String,
    alt_dobs: Vec<String>,
    nino: String,
    postcode: String,
}

/// How a special national record relates to a member of staff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    SamePerson,
    Twin,
    Sibling,
    Namesake,
}

impl Relation {
    fn name(self) -> &'static str {
        match self {
            Relation::SamePerson => "same_person",
            Relation::Twin => "twin",
            Relation::Sibling => "sibling",
            Relation::Namesake => "namesake",
        }
    }
}

struct Special {
    row: NationalRow,
    /// (force, employee or applicant id, relation)
    truth: (String, String, Relation),
}

struct Gen {
    rng: Rng,
    /// A second stream for the address history, so that adding it left
    /// every other draw, and so the mild profile, as it was.
    history: Rng,
    noise: Noise,
    nino_missing: f64,
    moved: f64,
    roster_missing: f64,
    national_missing: f64,
    known_as: f64,
    address_history: f64,
    surnames: Weighted<&'static str>,
    male: Weighted<&'static str>,
    female: Weighted<&'static str>,
    categories: Weighted<&'static str>,
    ninos: HashSet<[u8; 8]>,
}

/// Surnames counted as common (the most frequent in the table).
const COMMON_SURNAMES: usize = 100;

const TODAY: Date = Date { year: 2026, month: 11, day: 1 };

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen {
            rng: Rng::new(seed),
            history: Rng::new(seed ^ 0xADD2_E55E_5000_0000),
            noise: Noise::Mild,
            nino_missing: 0.05,
            moved: 0.15,
            roster_missing: 0.0,
            national_missing: 0.0,
            known_as: 0.0,
            address_history: 0.0,
            surnames: Weighted::new(SURNAMES),
            male: Weighted::new(MALE),
            female: Weighted::new(FEMALE),
            categories: Weighted::new(CATEGORY_MIX),
            ninos: HashSet::new(),
        }
    }

    fn surname(&mut self) -> String {
        // The heavy profile draws most surnames from the long tail: the 250
        // most common British surnames cover about a third of people.
        let common = if self.noise == Noise::Heavy { 0.35 } else { 0.7 };
        let base = if self.rng.chance(common) {
            self.surnames.pick(&mut self.rng).to_string()
        } else {
            let n = if self.rng.chance(0.8) { 2 } else { 3 };
            let mut s = String::new();
            for _ in 0..n {
                let syllable = self.rng.pick(SYLLABLES);
                s.push_str(syllable);
            }
            capitalise(&s)
        };
        if self.rng.chance(0.02) {
            let other = self.surnames.pick(&mut self.rng);
            if other != base {
                return format!("{base}-{other}");
            }
        }
        base
    }

    fn forename(&mut self, female: bool) -> String {
        // The heavy profile adds a long tail of rarer forenames.
        if self.noise == Noise::Heavy && self.rng.chance(0.2) {
            let mut s = String::new();
            for _ in 0..2 {
                let syllable = self.rng.pick(SYLLABLES);
                s.push_str(syllable);
            }
            return capitalise(&s);
        }
        if female { self.female.pick(&mut self.rng) } else { self.male.pick(&mut self.rng) }.to_string()
    }

    fn forenames(&mut self, female: bool) -> Vec<String> {
        let mut v = vec![self.forename(female)];
        if self.rng.chance(0.45) {
            let m = self.forename(female);
            if m != v[0] {
                v.push(m);
            }
        }
        v
    }

    fn date_between(&mut self, from_year: u16, to_year: u16) -> Date {
        let year = from_year + self.rng.below(usize::from(to_year - from_year + 1)) as u16;
        let month = 1 + self.rng.below(12) as u8;
        let day = 1 + self.rng.below(usize::from(days_in_month(year, month))) as u8;
        Date { year, month, day }
    }

    fn nino(&mut self) -> [u8; 9] {
        loop {
            let a = *self.rng.pick(NINO_FIRST);
            let b = *self.rng.pick(NINO_SECOND);
            if [*b"BG", *b"GB", *b"KN", *b"NK", *b"NT", *b"TN", *b"ZZ"].contains(&[a, b]) {
                continue;
            }
            let mut n = [0u8; 9];
            n[0] = a;
            n[1] = b;
            for d in &mut n[2..8] {
                *d = b'0' + self.rng.below(10) as u8;
            }
            n[8] = b"ABCD"[self.rng.below(4)];
            let mut stem = [0u8; 8];
            stem.copy_from_slice(&n[..8]);
            if self.ninos.insert(stem) {
                return n;
            }
        }
    }

    fn postcode_in(&mut self, area: usize) -> Postcode {
        postcode_from(&mut self.rng, area)
    }

    /// The heavy profile's address history: the addresses HR holds from
    /// vetting (the five years before joining) and from changes reported
    /// since, besides the current one. About one adult in ten moves each
    /// year in England, most of them nearby: none for 35% of staff, one
    /// for 35%, two for 20%, three for 10%; 60% in the same area.
    fn address_history(&mut self, area: usize) -> Vec<Postcode> {
        if self.noise != Noise::Heavy || self.address_history == 0.0 {
            return Vec::new();
        }
        let h = &mut self.history;
        let n = match h.below(20) {
            0..=6 => 0,
            7..=13 => 1,
            14..=17 => 2,
            _ => 3,
        };
        (0..n)
            .map(|_| {
                let a = if h.chance(0.6) { area } else { h.below(AREAS.len()) };
                postcode_from(h, a)
            })
            .collect()
    }

    fn force_area(&mut self, force: usize) -> usize {
        (force * 2 + self.rng.below(2)) % AREAS.len()
    }

    /// A person living in `area` born between the given years.
    fn person(&mut self, area: usize, from_year: u16, to_year: u16) -> Person {
        let female = self.rng.chance(0.5);
        let mut surname = self.surname();
        let dob = self.date_between(from_year, to_year);
        let mut maiden = None;
        if female && TODAY.year - dob.year > 25 && self.rng.chance(0.45) {
            let married = self.surname();
            if married != surname {
                maiden = Some(std::mem::replace(&mut surname, married));
            }
        }
        Person {
            female,
            forenames: self.forenames(female),
            surname,
            maiden,
            dob,
            nino: self.nino(),
            postcode: self.postcode_in(area),
            previous: Vec::new(),
        }
    }

    fn staff_person(&mut self, force: usize) -> Person {
        let area = self.force_area(force);
        let mut p = self.person(area, TODAY.year - 66, TODAY.year - 18);
        p.previous = self.address_history(area);
        p
    }

    fn national_person(&mut self) -> Person {
        let area = self.rng.below(AREAS.len());
        self.person(area, TODAY.year - 90, TODAY.year - 12)
    }

    fn event_date(&mut self, dob: Date) -> String {
        if self.rng.chance(0.03) {
            return String::new();
        }
        let from = (dob.year + 14).min(TODAY.year);
        let mut d = self.date_between(from, TODAY.year);
        if d > TODAY {
            d = TODAY;
        }
        d.to_string()
    }

    fn typo(&mut self, s: &str) -> String {
        let mut c: Vec<char> = s.chars().collect();
        if c.len() < 3 {
            return s.to_string();
        }
        let i = 1 + self.rng.below(c.len() - 1);
        match self.rng.below(4) {
            0 => {
                c.remove(i);
            }
            1 if i + 1 < c.len() => c.swap(i, i + 1),
            2 => c.insert(i, (b'a' + self.rng.below(26) as u8) as char),
            _ => c[i] = (b'a' + self.rng.below(26) as u8) as char,
        }
        c.into_iter().collect()
    }

    fn nickname(&mut self, forename: &str) -> Option<String> {
        let folded = vigil_identity::normalize::fold(forename);
        let canon = nicknames::canonical(&folded)?;
        let group = nicknames::GROUPS.iter().find(|(c, _)| *c == canon)?;
        let options: Vec<&str> =
            std::iter::once(group.0).chain(group.1.iter().copied()).filter(|n| *n != folded).collect();
        if options.is_empty() {
            return None;
        }
        let name = self.rng.pick(&options);
        Some(capitalise(name))
    }

    fn render_nino(&mut self, n: &[u8; 9], missing: f64) -> String {
        if self.rng.chance(missing) {
            return String::new();
        }
        let s = String::from_utf8_lossy(n).into_owned();
        let s = if self.rng.chance(0.1) { s[..8].to_string() } else { s };
        if self.rng.chance(0.3) {
            let b = s.as_bytes();
            let mut out = String::new();
            for (i, ch) in b.iter().enumerate() {
                if i > 0 && i % 2 == 0 {
                    out.push(' ');
                }
                out.push(*ch as char);
            }
            out
        } else {
            s
        }
    }

    fn render_postcode(&mut self, p: &Postcode) -> String {
        let s = p.render();
        if self.rng.chance(0.2) { s.replace(' ', "").to_lowercase() } else { s }
    }

    fn roster_row(&mut self, id: &str, p: &Person, role_extra: Option<&str>) -> Vec<String> {
        let role = role_extra.map(str::to_string).unwrap_or_else(|| {
            match self.rng.below(20) {
                0 => "volunteer",
                1..=7 => "staff",
                _ => "officer",
            }
            .to_string()
        });
        let prev = match &p.maiden {
            Some(m) if self.rng.chance(0.9) => m.clone(),
            _ => String::new(),
        };
        let nino = self.render_nino(&p.nino, 0.01);
        let postcode = if self.rng.chance(0.02) { String::new() } else { self.render_postcode(&p.postcode) };
        let mut row =
            vec![id.to_string(), p.forenames.join(" "), p.surname.clone(), prev, p.dob.to_string(), nino, postcode];
        let previous: Vec<String> = p.previous.iter().map(Postcode::render).collect();
        // Columns 1, 2, 4, 6: forename, surname, date of birth, postcode.
        if self.roster_missing > 0.0 && self.rng.chance(self.roster_missing) {
            row[[1, 2, 4, 6][self.rng.below(4)]].clear();
        }
        if role_extra != Some("") {
            row.push(role);
        }
        row.push(previous.join(";"));
        row
    }

    /// A national record of `p`: a noisy view of the person.
    fn national_row(&mut self, p: &Person) -> NationalRow {
        let rng_ch = |g: &mut Gen, x: f64| g.rng.chance(x);
        let mut fore: Vec<String> = if rng_ch(self, 0.6) { vec![p.forenames[0].clone()] } else { p.forenames.clone() };
        if self.known_as > 0.0 && p.forenames.len() > 1 && rng_ch(self, self.known_as) {
            fore = vec![p.forenames[1].clone()];
        }
        if rng_ch(self, 0.08)
            && let Some(n) = self.nickname(&fore[0])
        {
            fore[0] = n;
        }
        if rng_ch(self, 0.02) {
            fore[0] = self.typo(&fore[0]);
        }
        let mut aliases = Vec::new();
        let mut surname = p.surname.clone();
        if let Some(m) = &p.maiden {
            if rng_ch(self, 0.5) {
                surname = m.clone();
                if rng_ch(self, 0.3) {
                    aliases.push(format!("{}/{}", p.forenames[0], p.surname));
                }
            } else if rng_ch(self, 0.2) {
                aliases.push(format!("{}/{}", p.forenames[0], m));
            }
        }
        if surname.contains('-') && rng_ch(self, 0.3) {
            let parts: Vec<&str> = surname.split('-').collect();
            surname = self.rng.pick(&parts).to_string();
        }
        if rng_ch(self, 0.02) {
            surname = self.typo(&surname);
        }
        let mut forenames = fore.join(" ");
        if rng_ch(self, 0.02) {
            std::mem::swap(&mut forenames, &mut surname);
        }
        if rng_ch(self, 0.06) {
            let f = self.forename(p.female);
            let s = self.surname();
            aliases.push(format!("{f}/{s}"));
        }
        let mut dob = p.dob;
        let mut alt_dobs = Vec::new();
        if rng_ch(self, 0.02) && dob.day <= 12 && dob.day != dob.month {
            dob = Date { year: dob.year, month: dob.day, day: dob.month };
        } else if rng_ch(self, 0.01) {
            let d = (dob.day + 1 + self.rng.below(3) as u8).min(days_in_month(dob.year, dob.month));
            if d != dob.day {
                if rng_ch(self, 0.5) {
                    alt_dobs.push(dob.to_string());
                }
                dob.day = d;
            }
        }
        if rng_ch(self, 0.04) {
            let y = if rng_ch(self, 0.5) { dob.year + 1 } else { dob.year - 1 };
            if let Some(d) = Date::new(y, dob.month, dob.day.min(days_in_month(y, dob.month))) {
                alt_dobs.push(d.to_string());
            }
        }
        let nino = self.render_nino(&p.nino, self.nino_missing);
        let postcode = if rng_ch(self, 0.06) {
            String::new()
        } else if rng_ch(self, self.moved) {
            // Many moves are short: 40% stay in the district, 30% in the area.
            let mut moved = match self.rng.below(10) {
                0..=6 => self.postcode_in(p.postcode.area),
                _ => {
                    let area = self.rng.below(AREAS.len());
                    self.postcode_in(area)
                }
            };
            if self.rng.below(7) < 4 && moved.area == p.postcode.area {
                moved.district = p.postcode.district;
            }
            // A record from the years HR's history covers: its address is
            // one HR holds.
            if !p.previous.is_empty() && self.history.chance(self.address_history) {
                moved = p.previous[self.history.below(p.previous.len())];
            }
            self.render_postcode(&moved)
        } else {
            self.render_postcode(&p.postcode)
        };
        if rng_ch(self, 0.03) {
            let t = if p.female { *self.rng.pick(&["Mrs", "Ms", "Miss", "Dr"]) } else { *self.rng.pick(&["Mr", "Dr"]) };
            forenames = format!("{t} {forenames}");
        }
        let shout = rng_ch(self, 0.3);
        let case = |s: String| if shout { s.to_uppercase() } else { s };
        let category = self.categories.pick(&mut self.rng);
        let mut row = NationalRow {
            category,
            event_date: self.event_date(p.dob),
            forenames: case(forenames),
            surname: case(surname),
            aliases: aliases.into_iter().map(case).collect(),
            dob: dob.to_string(),
            alt_dobs,
            nino,
            postcode,
        };
        if self.noise == Noise::Heavy {
            self.corrupt_heavily(&mut row, p.female);
        }
        if self.national_missing > 0.0 && self.rng.chance(self.national_missing) {
            match self.rng.below(3) {
                0 => row.forenames.clear(),
                1 => row.surname.clear(),
                _ => {
                    row.dob.clear();
                    row.alt_dobs.clear();
                }
            }
        }
        row
    }

    /// A twin, sibling or namesake of `p`: someone else.
    fn relative(&mut self, p: &Person, relation: Relation, force: usize) -> Person {
        let birth_surname = p.maiden.clone().unwrap_or_else(|| p.surname.clone());
        let female = if relation == Relation::Namesake { p.female } else { self.rng.chance(0.5) };
        let other_name = |g: &mut Gen| loop {
            let f = g.forename(female);
            let canon = |s: &str| {
                let x = vigil_identity::normalize::fold(s);
                nicknames::canonical(&x).map_or(x.clone(), str::to_string)
            };
            if canon(&f) != canon(&p.forenames[0]) {
                return f;
            }
        };
        let nino = self.nino();
        match relation {
            Relation::Twin => Person {
                female,
                forenames: vec![other_name(self)],
                surname: birth_surname,
                maiden: None,
                dob: p.dob,
                nino,
                postcode: if self.rng.chance(0.3) {
                    p.postcode
                } else {
                    let area = self.rng.below(AREAS.len());
                    self.postcode_in(area)
                },
                previous: Vec::new(),
            },
            Relation::Sibling => {
                let years = 1 + self.rng.below(12) as u16;
                let y = if self.rng.chance(0.5) {
                    p.dob.year.saturating_sub(years).max(1920)
                } else {
                    (p.dob.year + years).min(2010)
                };
                let dob = self.date_between(y, y);
                Person {
                    female,
                    forenames: vec![other_name(self)],
                    surname: birth_surname,
                    maiden: None,
                    dob,
                    nino,
                    postcode: if self.rng.chance(0.6) { p.postcode } else { self.postcode_in(p.postcode.area) },
                    previous: Vec::new(),
                }
            }
            Relation::Namesake | Relation::SamePerson => {
                let area = if self.rng.chance(0.2) { self.force_area(force) } else { self.rng.below(AREAS.len()) };
                Person {
                    female,
                    forenames: vec![p.forenames[0].clone()],
                    surname: p.surname.clone(),
                    maiden: None,
                    dob: p.dob,
                    nino,
                    postcode: self.postcode_in(area),
                    previous: Vec::new(),
                }
            }
        }
    }
}

/// A postcode in `area`, drawn from `rng`.
fn postcode_from(rng: &mut Rng, area: usize) -> Postcode {
    let max = if AREAS[area].len() == 1 { 30 } else { 24 };
    Postcode {
        area,
        district: 1 + rng.below(max) as u8,
        sector: rng.below(10) as u8,
        unit: [*rng.pick(INWARD_LETTERS), *rng.pick(INWARD_LETTERS)],
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

struct Out {
    path: PathBuf,
    w: csv::Writer<BufWriter<File>>,
}

impl Out {
    fn create(dir: &Path, name: &str, header: &[&str]) -> Result<Out, SynthError> {
        let path = dir.join(name);
        let f = File::create(&path).map_err(|source| SynthError::Io { path: path.clone(), source })?;
        let mut o = Out { path, w: csv::Writer::from_writer(BufWriter::with_capacity(1 << 16, f)) };
        o.row(header)?;
        Ok(o)
    }

    fn row<S: AsRef<[u8]>>(&mut self, fields: &[S]) -> Result<(), SynthError> {
        self.w.write_record(fields).map_err(|e| SynthError::Io { path: self.path.clone(), source: e.into() })
    }

    fn finish(self) -> Result<(), SynthError> {
        let path = self.path;
        let inner = self.w.into_inner().map_err(|e| SynthError::Io { path: path.clone(), source: e.into_error() })?;
        inner
            .into_inner()
            .map_err(|e| SynthError::Io { path: path.clone(), source: e.into_error() })?
            .sync_all()
            .map_err(|source| SynthError::Io { path, source })
    }
}

fn national_fields(id: &str, r: &NationalRow) -> [String; 10] {
    [
        id.to_string(),
        r.category.to_string(),
        r.event_date.clone(),
        r.forenames.clone(),
        r.surname.clone(),
        r.aliases.join(";"),
        r.dob.clone(),
        r.alt_dobs.join(";"),
        r.nino.clone(),
        r.postcode.clone(),
    ]
}

/// Writes a full synthetic set into `dir` (created if needed): one
/// `roster-<force>.csv` per force, `extract.csv`, `delta.csv`,
/// `applicants.csv` (for the first force) and `truth.csv`.
pub fn generate(params: &Params, dir: &Path) -> Result<Summary, SynthError> {
    if params.forces == 0 || params.forces > FORCES.len() {
        return Err(SynthError::Params(format!("--forces must be 1 to {}", FORCES.len())));
    }
    if params.staff_per_force == 0 {
        return Err(SynthError::Params("--staff-per-force must be at least 1".into()));
    }
    if !(1..=10).contains(&params.records_max) {
        return Err(SynthError::Params("--records-max must be 1 to 10".into()));
    }
    if !(0.0..=1.0).contains(&params.overlap) || !(0.0..=1.0).contains(&params.hard_negatives) {
        return Err(SynthError::Params("--overlap and --hard-negatives must be between 0 and 1".into()));
    }
    std::fs::create_dir_all(dir).map_err(|source| SynthError::Io { path: dir.to_path_buf(), source })?;
    for (name, v) in [
        ("--nino-missing", params.nino_missing),
        ("--moved", params.moved),
        ("--roster-missing", params.roster_missing),
        ("--national-missing", params.national_missing),
        ("--known-as", params.known_as),
        ("--address-history", params.address_history),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(SynthError::Params(format!("{name} must be between 0 and 1")));
        }
    }
    let mut g = Gen::new(params.seed);
    g.noise = params.noise;
    g.nino_missing = params.nino_missing;
    g.moved = params.moved;
    g.roster_missing = params.roster_missing;
    g.national_missing = params.national_missing;
    g.known_as = params.known_as;
    g.address_history = params.address_history;
    let mut summary = Summary::default();
    let mut truth = Out::create(dir, "truth.csv", &["force", "employee_id", "record_id", "relation"])?;

    // Staff, one roster per force. Specials (records about staff) are kept.
    let mut specials: Vec<Special> = Vec::new();
    let mut delta_specials: Vec<Special> = Vec::new();
    let total_staff = params.forces * params.staff_per_force;
    let with_records = ((total_staff as f64) * params.overlap).round() as usize;
    let hard = ((total_staff as f64) * params.hard_negatives).round() as usize;
    let delta_true = if params.delta == 0 { 0 } else { (params.delta / 5).max(3).min(params.delta) };
    // Choose which staff (by global index) get records, hard negatives, delta records.
    let mut order: Vec<usize> = (0..total_staff).collect();
    for i in (1..order.len()).rev() {
        let j = g.rng.below(i + 1);
        order.swap(i, j);
    }
    let mut role = vec![0u8; total_staff]; // bit 0: records, 1: hard negative, 2: delta record
    for &i in order.iter().take(with_records.min(total_staff)) {
        role[i] |= 1;
    }
    for k in 0..hard.min(total_staff) {
        role[order[(with_records / 2 + k) % total_staff]] |= 2;
    }
    for k in 0..delta_true.min(total_staff) {
        role[order[(k * 7 + 3) % total_staff]] |= 4;
    }
    let mut hard_count = 0usize;
    for (f, code) in FORCES.iter().copied().enumerate().take(params.forces) {
        summary.forces.push(code.to_string());
        let mut roster = Out::create(dir, &format!("roster-{code}.csv"), ROSTER_COLUMNS)?;
        for s in 0..params.staff_per_force {
            let global = f * params.staff_per_force + s;
            let p = g.staff_person(f);
            let id = format!("{}{:06}", code.to_uppercase(), 100_000 + s);
            let row = g.roster_row(&id, &p, None);
            roster.row(&row)?;
            if role[global] & 1 != 0 {
                summary.staff_with_records += 1;
                let n = match g.rng.below(20) {
                    _ if params.one_record => 1,
                    _ if params.records_max != 3 => zipf(&mut g.rng, params.records_max),
                    0 => 3,
                    1..=3 => 2,
                    _ => 1,
                };
                for _ in 0..n {
                    let row = g.national_row(&p);
                    specials.push(Special { row, truth: (code.into(), id.clone(), Relation::SamePerson) });
                }
            }
            if role[global] & 2 != 0 {
                let mut rel = match hard_count % 10 {
                    0..=2 => Relation::Twin,
                    3..=4 => Relation::Sibling,
                    _ => Relation::Namesake,
                };
                // Namesakes share a *common* name: a rare name and date of
                // birth shared by an unrelated person is vanishingly unlikely.
                if rel == Relation::Namesake && !SURNAMES[..COMMON_SURNAMES].iter().any(|(s, _)| *s == p.surname) {
                    rel = Relation::Sibling;
                }
                hard_count += 1;
                let other = g.relative(&p, rel, f);
                let row = g.national_row(&other);
                specials.push(Special { row, truth: (code.into(), id.clone(), rel) });
            }
            if role[global] & 4 != 0 {
                let row = g.national_row(&p);
                delta_specials.push(Special { row, truth: (code.into(), id.clone(), Relation::SamePerson) });
            }
        }
        roster.finish()?;
    }
    summary.staff = total_staff;
    summary.hard_negatives = hard_count;

    // Applicants for the first force: some with national records.
    let mut applicants = Out::create(dir, "applicants.csv", APPLICANT_COLUMNS)?;
    for a in 0..params.applicants {
        let p = g.staff_person(0);
        let id = format!("APP{:05}", a + 1);
        let row = g.roster_row(&id, &p, Some(""));
        applicants.row(&row)?;
        if a % 5 == 0 {
            summary.applicants_with_records += 1;
            let row = g.national_row(&p);
            specials.push(Special { row, truth: (FORCES[0].into(), id, Relation::SamePerson) });
        }
    }
    applicants.finish()?;
    summary.applicants = params.applicants;

    // Main extract: specials interleaved uniformly among other people.
    let total = params.national.max(specials.len());
    let mut extract = Out::create(dir, "extract.csv", EXTRACT_COLUMNS)?;
    let mut remaining_specials = specials.len();
    let mut specials = specials.into_iter();
    let mut next_id = 1usize;
    let mut true_pairs = 0;
    let mut written = 0usize;
    while written < total {
        let remaining = total - written;
        let id = format!("PNC{:09}", next_id);
        next_id += 1;
        written += 1;
        if remaining_specials > 0 && g.rng.below(remaining) < remaining_specials {
            remaining_specials -= 1;
            if let Some(sp) = specials.next() {
                extract.row(&national_fields(&id, &sp.row))?;
                let (force, emp, rel) = &sp.truth;
                truth.row(&[force.as_str(), emp, &id, rel.name()])?;
                if *rel == Relation::SamePerson && !emp.starts_with("APP") {
                    true_pairs += 1;
                }
            }
        } else {
            let p = g.national_person();
            let row = g.national_row(&p);
            extract.row(&national_fields(&id, &row))?;
            // Some people have several records; the extra ones count too.
            if remaining - 1 > remaining_specials && g.rng.chance(0.15) {
                let id2 = format!("PNC{:09}", next_id);
                next_id += 1;
                written += 1;
                let row2 = g.national_row(&p);
                extract.row(&national_fields(&id2, &row2))?;
            }
        }
    }
    summary.national = next_id - 1;
    summary.true_pairs = true_pairs;
    extract.finish()?;

    // Delta: new records, some about staff.
    let mut delta = Out::create(dir, "delta.csv", EXTRACT_COLUMNS)?;
    let delta_total = params.delta.max(delta_specials.len());
    let mut delta_specials = delta_specials.into_iter();
    for k in 0..delta_total {
        let id = format!("PNC{:09}", next_id);
        next_id += 1;
        if let Some(sp) = (k % 5 == 0).then(|| delta_specials.next()).flatten() {
            delta.row(&national_fields(&id, &sp.row))?;
            let (force, emp, rel) = &sp.truth;
            truth.row(&[force.as_str(), emp, &id, rel.name()])?;
            summary.delta_true_pairs += 1;
        } else {
            let p = g.national_person();
            let row = g.national_row(&p);
            delta.row(&national_fields(&id, &row))?;
        }
    }
    for sp in delta_specials {
        let id = format!("PNC{:09}", next_id);
        next_id += 1;
        delta.row(&national_fields(&id, &sp.row))?;
        let (force, emp, rel) = &sp.truth;
        truth.row(&[force.as_str(), emp, &id, rel.name()])?;
        summary.delta_true_pairs += 1;
    }
    summary.delta = next_id - 1 - summary.national;
    delta.finish()?;
    truth.finish()?;
    let manifest = dir.join("synth.json");
    let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
    File::create(&manifest)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| SynthError::Io { path: manifest, source })?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_options() {
        let p = Params::default();
        assert_eq!(
            (p.seed, p.forces, p.staff_per_force, p.national, p.delta, p.applicants),
            (1, 3, 2000, 50_000, 100, 50)
        );
        assert_eq!((p.overlap, p.hard_negatives, p.nino_missing, p.moved), (0.05, 0.02, 0.05, 0.15));
    }

    #[test]
    fn rng_is_deterministic_and_uniformish() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut counts = [0usize; 10];
        for _ in 0..100_000 {
            counts[a.below(10)] += 1;
        }
        assert!(counts.iter().all(|&c| (9_000..11_000).contains(&c)), "{counts:?}");
    }

    #[test]
    fn generated_values_are_valid() {
        let mut g = Gen::new(3);
        for _ in 0..2000 {
            let p = g.national_person();
            let pc = p.postcode.render();
            vigil_identity::normalize::Postcode::parse(&pc).unwrap_or_else(|_| panic!("bad postcode {pc}"));
            vigil_identity::normalize::Nino::parse(std::str::from_utf8(&p.nino).unwrap()).unwrap();
            assert!(Date::new(p.dob.year, p.dob.month, p.dob.day).is_some());
        }
    }

    #[test]
    fn same_seed_same_files() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let p = Params { staff_per_force: 200, national: 2000, forces: 2, ..Params::default() };
        let s1 = generate(&p, d1.path()).unwrap();
        generate(&p, d2.path()).unwrap();
        for f in ["roster-met.csv", "roster-gmp.csv", "extract.csv", "delta.csv", "truth.csv", "applicants.csv"] {
            let a = std::fs::read(d1.path().join(f)).unwrap();
            let b = std::fs::read(d2.path().join(f)).unwrap();
            assert_eq!(a, b, "{f} differs");
        }
        assert_eq!(s1.staff, 400);
        assert_eq!(s1.staff_with_records, 20);
        assert!(s1.national >= 2000);
        let truth = std::fs::read_to_string(d1.path().join("truth.csv")).unwrap();
        for rel in ["same_person", "twin", "sibling", "namesake"] {
            assert!(truth.contains(rel), "no {rel} in truth");
        }
    }

    /// One force of 2,000 staff, every one with national records, no hard
    /// negatives: the shape of a two-file linkage benchmark.
    fn benchmark_shaped() -> Params {
        Params {
            forces: 1,
            staff_per_force: 2000,
            national: 2000,
            overlap: 1.0,
            hard_negatives: 0.0,
            ..Params::default()
        }
    }

    /// How many records of the main extract (not the delta's) each member
    /// of staff (not an applicant) has, by the truth file.
    fn records_per_person(dir: &Path) -> std::collections::HashMap<String, usize> {
        let extract = std::fs::read_to_string(dir.join("extract.csv")).unwrap();
        let in_extract: std::collections::HashSet<&str> =
            extract.lines().skip(1).filter_map(|l| l.split(',').next()).collect();
        let mut rdr = csv::Reader::from_path(dir.join("truth.csv")).unwrap();
        let mut per_person = std::collections::HashMap::new();
        for r in rdr.records() {
            let r = r.unwrap();
            if &r[3] == "same_person" && r[1].starts_with("MET") && in_extract.contains(&r[2]) {
                *per_person.entry(r[1].to_string()).or_insert(0) += 1;
            }
        }
        per_person
    }

    /// `--records-max 5` gives some members of staff four or five records,
    /// none more, about 1.56 a person; a number out of range is refused.
    #[test]
    fn up_to_five_records_a_person() {
        let d = tempfile::tempdir().unwrap();
        let p = Params { records_max: 5, ..benchmark_shaped() };
        generate(&p, d.path()).unwrap();
        let per_person = records_per_person(d.path());
        assert_eq!(per_person.len(), 2000);
        let most = per_person.values().copied().max().unwrap();
        let mean = per_person.values().sum::<usize>() as f64 / 2000.0;
        assert!(most == 5 && per_person.values().filter(|&&n| n >= 4).count() > 20, "{most}");
        assert!((1.45..1.7).contains(&mean), "{mean}");
        let bad = Params { records_max: 11, ..p };
        assert!(matches!(generate(&bad, d.path()), Err(SynthError::Params(m)) if m.contains("--records-max")));
    }

    /// `--national-missing` blanks a forename, surname or date of birth in
    /// about that share of national records, on top of the profile's own.
    #[test]
    fn national_records_with_a_field_missing() {
        let d = tempfile::tempdir().unwrap();
        let blank_share = |national_missing: f64| {
            let p = Params { forces: 1, staff_per_force: 200, national: 4000, national_missing, ..Params::default() };
            generate(&p, d.path()).unwrap();
            let mut rdr = csv::Reader::from_path(d.path().join("extract.csv")).unwrap();
            let h = rdr.headers().unwrap().clone();
            let col = |n: &str| h.iter().position(|x| x == n).unwrap();
            let (f, s, b) = (col("forenames"), col("surname"), col("date_of_birth"));
            let (mut rows, mut blank) = (0, 0);
            for r in rdr.records() {
                let r = r.unwrap();
                rows += 1;
                blank += usize::from(r[f].is_empty() || r[s].is_empty() || r[b].is_empty());
            }
            blank as f64 / rows as f64
        };
        let (none, some) = (blank_share(0.0), blank_share(0.3));
        assert!(none < 0.02 && (0.25..0.35).contains(&(some - none)), "{none} {some}");
    }

    /// `--known-as` gives about that share of the records of a person with
    /// a middle name the middle name as the only forename.
    #[test]
    fn records_under_the_middle_name() {
        let d = tempfile::tempdir().unwrap();
        let share = |known_as: f64| {
            generate(&Params { known_as, ..benchmark_shaped() }, d.path()).unwrap();
            let read =
                |name: &str| csv::Reader::from_path(d.path().join(name)).unwrap().into_records().map(Result::unwrap);
            let forenames: std::collections::HashMap<String, String> =
                read("roster-met.csv").map(|r| (r[0].to_string(), r[1].to_lowercase())).collect();
            let records: std::collections::HashMap<String, String> =
                read("extract.csv").map(|r| (r[0].to_string(), r[3].to_lowercase())).collect();
            let (mut with_middle, mut under_it) = (0, 0);
            for t in read("truth.csv").filter(|t| &t[3] == "same_person") {
                let (Some(staff), Some(record)) = (forenames.get(&t[1]), records.get(&t[2])) else { continue };
                let Some(middle) = staff.split(' ').nth(1) else { continue };
                with_middle += 1;
                under_it += usize::from(record == middle);
            }
            assert!(with_middle > 500, "{with_middle} records of people with a middle name");
            under_it as f64 / with_middle as f64
        };
        let (none, some) = (share(0.0), share(0.4));
        assert!(none < 0.01 && (0.3..0.5).contains(&some), "{none} {some}");
    }

    /// `--one-record` gives each member of staff with records exactly one;
    /// `--roster-missing` blanks one identity field in about that share of
    /// HR rows, and nothing else.
    #[test]
    fn one_record_a_person_and_hr_rows_with_a_field_missing() {
        let d = tempfile::tempdir().unwrap();
        let p = Params { one_record: true, roster_missing: 0.1, noise: Noise::Heavy, ..benchmark_shaped() };
        let s = generate(&p, d.path()).unwrap();
        assert_eq!(s.true_pairs, 2000);
        let per_person = records_per_person(d.path());
        assert_eq!(per_person.len(), 2000);
        assert!(per_person.values().all(|&n| n == 1));
        let mut rdr = csv::Reader::from_path(d.path().join("roster-met.csv")).unwrap();
        let blank = |r: &csv::StringRecord, i: usize| r[i].is_empty();
        let (mut names, mut dates) = (0, 0);
        for r in rdr.records() {
            let r = r.unwrap();
            assert!(!(blank(&r, 1) && blank(&r, 2)), "at most one name is left out");
            names += usize::from(blank(&r, 1) || blank(&r, 2));
            dates += usize::from(blank(&r, 4));
        }
        // A tenth of 2,000 rows, half of them a name, a quarter the date.
        assert!((60..140).contains(&names), "{names} rows without a name");
        assert!((25..80).contains(&dates), "{dates} rows without a date of birth");
    }
}
