//! Match keys of scheme v2: from raw identity fields to the canonical bytes
//! that are hashed into tokens. Pure: no I/O, no keys.
//!
//! An [`Identity`] is built from the raw fields of a roster row, an extract
//! row or an applicant ([`RawIdentity`]). Every field that cannot be used is
//! reported as a [`FieldIssue`] naming the field (never its value); the rest
//! of the row is still used. [`match_keys`] then derives every key (fields
//! joined by 0x1F; `f` is the nickname-canonical forename, `s` the surname,
//! `{f,s}` the two in sorted order, `ph` a Double Metaphone code, `pc` the
//! full postcode, `dist` its district):
//!
//! | kind | bytes |
//! |---|---|
//! | `nino` | NI number prefix and digits, e.g. `AB123456` |
//! | `nino_head_yob` | NI prefix and first two digits, year of birth |
//! | `nino_tail_yob` | NI last four digits, year of birth |
//! | `nino_digits_birthday` | NI prefix and its digits sorted, day and month in either order |
//! | `name_dob` | `{f,s}`, date of birth |
//! | `forename_part_surname_dob` | `^` and the initial of `f`, or `$` and the last three letters of `f` (two keys); `s`; date of birth |
//! | `surname_part_forename_dob` | `f`; `^` and the first three letters of `s`, or `$` and its last three (two keys); date of birth |
//! | `name_md` | `{f,s}`, day and month in either order |
//! | `phonetic_ym` | `{ph(f),ph(s)}`, year and month |
//! | `name_postcode` | `{f,s}`, `pc` |
//! | `name_district` | `{f,s}`, `dist` |
//! | `forename_dob` / `surname_dob` | `f` / `s`, date of birth |
//! | `surname_postcode` / `forename_postcode` | `s` / `f`, `pc` |
//! | `birthday_postcode` | day and month in either order, `pc` |
//! | `name_yob` | `{f,s}`, year |
//! | `initials_dob` | the initials of `f` and `s` in sorted order, date of birth |
//! | `forename_initial_surname_md` | the initial of `f`, `s`, day and month in either order |
//! | `initials_postcode` | the initials of `f` and `s` in sorted order, `pc` |
//! | `forename_surname_part_md` | `f`, `^` and the first three letters of `s` or `$` and its last three (two keys), day and month in either order |
//!
//! Each name variant (the primary name, each part of a multi-part surname,
//! each previous surname, each alias) is combined with the primary date of
//! birth, and the primary name with each alternative date. A date with an
//! impossible part still gives the keys its valid parts allow, and an
//! impossible month its likely readings as further dates. In the kinds with
//! `{f,s}` the surname is read through the nickname table too. No key is
//! made of one low-entropy field alone. `name_yob_district` is retired: no
//! node forms it any more (`vigil_proto::kinds::RETIRED`).
//!
//! A roster's previous postcodes (its address history) form the postcode
//! kinds again, with the primary name and the primary date of birth only:
//! a national record keyed at an earlier address then still agrees on it.

use rphonetic::DoubleMetaphone;
use std::collections::HashMap;
use vigil_proto::KeyKind;

use crate::normalize::{self, DateParts, FieldError, Name, Nino, Postcode};

pub use vigil_proto::kinds::{MAX_DOBS, MAX_NAMES, MAX_PREVIOUS_POSTCODES};
/// Separator between the fields of a key.
pub const SEP: u8 = 0x1F;

/// The raw identity fields of one row, as read.
#[derive(Debug, Default, Clone, Copy)]
pub struct RawIdentity<'a> {
    /// Forenames, space separated.
    pub forenames: &'a str,
    /// Surname.
    pub surname: &'a str,
    /// Previous surnames, `;` separated (roster).
    pub previous_surnames: &'a str,
    /// Aliases `Forenames/Surname`, `;` separated (extract).
    pub aliases: &'a str,
    /// Date of birth, `YYYY-MM-DD`.
    pub date_of_birth: &'a str,
    /// Alternative dates of birth, `;` separated (extract).
    pub alt_dates_of_birth: &'a str,
    /// National Insurance number.
    pub ni_number: &'a str,
    /// Postcode.
    pub postcode: &'a str,
    /// Previous postcodes, `;` separated, most recent first (roster).
    pub previous_postcodes: &'a str,
}

/// A field that could not be used, and why. Names the field, never the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldIssue {
    /// Column name.
    pub field: &'static str,
    /// What was wrong.
    pub reason: IssueReason,
}

/// Why a field was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IssueReason {
    /// The value was invalid.
    #[error("{0}")]
    Invalid(#[from] FieldError),
    /// A required field was empty.
    #[error("required but empty")]
    Missing,
    /// More values than kept.
    #[error("more than {0} values; the first {0} were used")]
    TooMany(usize),
    /// A date with an impossible part: the valid parts are used.
    #[error("not a real calendar date; its valid year, month or day are used")]
    Partial,
    /// A postcode whose inward code is invalid: its district is used.
    #[error("inward code not valid; the district is used")]
    DistrictOnly,
    /// A date with an impossible month: its valid parts are used, and the
    /// months a slip most likely made it are tried as further dates.
    #[error("not a real calendar date; its valid year or day are used, with the month it most likely was")]
    MonthRead,
    /// A date whose month could only be a day: read with day and month swapped.
    #[error("month and day written the other way round; read as YYYY-MM-DD with them swapped")]
    Swapped,
}

/// A normalised identity: every name variant and date of birth, and the
/// optional identifiers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Name variants, primary first.
    pub names: Vec<Name>,
    /// Dates of birth, primary first (possibly with only some parts valid).
    pub dobs: Vec<DateParts>,
    /// National Insurance number.
    pub nino: Option<Nino>,
    /// Postcode (possibly only its district).
    pub postcode: Option<Postcode>,
    /// Previous postcodes (possibly only their districts), none equal to
    /// the current one or to each other, at most
    /// [`MAX_PREVIOUS_POSTCODES`].
    pub previous_postcodes: Vec<Postcode>,
}

/// Double Metaphone with a memo: names repeat a great deal, so most lookups
/// are a hash probe.
#[derive(Default)]
pub struct Phonetic {
    dm: DoubleMetaphone,
    memo: HashMap<String, String>,
}

impl Phonetic {
    const MEMO_LIMIT: usize = 200_000;

    /// The primary Double Metaphone code (at most four letters) of a folded
    /// name; empty (no phonetic key) for a name with any letter outside
    /// ASCII: Double Metaphone is defined for the Latin alphabet, and the
    /// `rphonetic` implementation slices such names mid-character and
    /// panics (found by fuzzing the CSV readers).
    pub fn code(&mut self, name: &str) -> String {
        if !name.is_ascii() {
            return String::new();
        }
        if let Some(c) = self.memo.get(name) {
            return c.clone();
        }
        let code = self.dm.double_metaphone(name).primary();
        if self.memo.len() >= Self::MEMO_LIMIT {
            self.memo.clear();
        }
        self.memo.insert(name.to_string(), code.clone());
        code
    }
}

impl Identity {
    /// Whether at least one match key can be formed.
    pub fn can_match(&self) -> bool {
        // The conditions under which [`match_keys`] emits at least one key
        // (a property test checks they agree).
        if self.nino.is_some() {
            return true;
        }
        let pc = self.postcode.as_ref().is_some_and(Postcode::is_full);
        let birthday = |d: &DateParts| d.full().is_some() || (d.month.is_some() && d.day.is_some());
        if pc && self.dobs.iter().any(birthday) {
            return true;
        }
        // Previous postcodes, with the primary name and date only.
        let prev_pc = self.previous_postcodes.iter().any(Postcode::is_full);
        if prev_pc && self.dobs.first().is_some_and(birthday) {
            return true;
        }
        if let (Some(n0), false) = (self.names.first(), self.previous_postcodes.is_empty()) {
            let (f, s) = (!n0.canon.is_empty(), !n0.surname.is_empty());
            if (prev_pc && (f || s)) || (f && s) {
                return true;
            }
        }
        let primary = self.dobs.first();
        let combos =
            self.names.iter().map(|n| (n, primary)).chain(
                self.names.first().into_iter().flat_map(|n0| self.dobs.iter().skip(1).map(move |d| (n0, Some(d)))),
            );
        for (name, dob) in combos {
            let (f, s) = (!name.canon.is_empty(), !name.surname.is_empty());
            if (pc && (f || s)) || (f && s && self.postcode.is_some()) {
                return true;
            }
            let Some(d) = dob else { continue };
            if d.full().is_some() && (f || s) {
                return true;
            }
            if f && s && (d.year.is_some() || (d.month.is_some() && d.day.is_some())) {
                return true;
            }
        }
        false
    }

    /// Normalises raw fields. Unusable fields are reported in `issues` and
    /// skipped; what remains is kept.
    pub fn from_raw(raw: &RawIdentity<'_>, ph: &mut Phonetic, issues: &mut Vec<FieldIssue>) -> Identity {
        let mut id = Identity::default();
        let mut push_issue = |field: &'static str, reason: IssueReason| issues.push(FieldIssue { field, reason });

        let forename = required(raw.forenames, "forenames", normalize::first_forename, &mut push_issue);
        let surnames = required(raw.surname, "surname", normalize::surnames, &mut push_issue);
        // A missing forename or surname leaves half a name, which still
        // forms the keys that do not need the other half.
        let mut names: Vec<(String, String)> = Vec::new();
        let f0 = forename.clone().unwrap_or_default();
        match &surnames {
            Some(ss) => names.extend(ss.iter().map(|s| (f0.clone(), s.clone()))),
            None if forename.is_some() => names.push((f0.clone(), String::new())),
            None => {}
        }
        for prev in normalize::multi(raw.previous_surnames) {
            match normalize::surnames(prev) {
                Ok(ss) => names.extend(ss.into_iter().map(|s| (f0.clone(), s))),
                Err(e) => push_issue("previous_surnames", e.into()),
            }
        }
        for alias in normalize::multi(raw.aliases) {
            let parsed = normalize::split_alias(alias)
                .and_then(|(f, s)| Ok((normalize::first_forename(f)?, normalize::surnames(s)?)));
            match parsed {
                Ok((f, ss)) => names.extend(ss.into_iter().map(|s| (f.clone(), s))),
                Err(e) => push_issue("alias_names", e.into()),
            }
        }
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.clone()));
        if names.len() > MAX_NAMES {
            push_issue(
                if raw.aliases.is_empty() { "previous_surnames" } else { "alias_names" },
                IssueReason::TooMany(MAX_NAMES),
            );
            names.truncate(MAX_NAMES);
        }
        for (forename, surname) in names {
            let canon = normalize::canonical_forename(&forename).to_string();
            let forename_code = if canon.is_empty() { String::new() } else { ph.code(&canon) };
            let surname_code = if surname.is_empty() { String::new() } else { ph.code(&surname) };
            id.names.push(Name { forename, canon, surname, forename_code, surname_code });
        }

        let mut readings = Vec::new();
        if let Some(d) = required(raw.date_of_birth, "date_of_birth", DateParts::parse, &mut push_issue) {
            if d.month.is_none() {
                readings = DateParts::month_readings(raw.date_of_birth);
            }
            if !readings.is_empty() {
                push_issue("date_of_birth", IssueReason::MonthRead);
            } else if d.full().is_none() {
                push_issue("date_of_birth", IssueReason::Partial);
            } else if d.swapped {
                push_issue("date_of_birth", IssueReason::Swapped);
            }
            id.dobs.push(d);
        }
        for alt in normalize::multi(raw.alt_dates_of_birth) {
            match DateParts::parse(alt) {
                Ok(d) if !id.dobs.contains(&d) => id.dobs.push(d),
                Ok(_) => {}
                Err(e) => push_issue("alt_dates_of_birth", e.into()),
            }
        }
        if id.dobs.len() > MAX_DOBS {
            push_issue("alt_dates_of_birth", IssueReason::TooMany(MAX_DOBS));
            id.dobs.truncate(MAX_DOBS);
        }
        // The readings of an impossible month come after the dates the row
        // gives, as far as there is room.
        for r in readings {
            if id.dobs.len() < MAX_DOBS && !id.dobs.contains(&r) {
                id.dobs.push(r);
            }
        }
        if !raw.ni_number.trim().is_empty() {
            match Nino::parse(raw.ni_number) {
                Ok(n) => id.nino = Some(n),
                Err(e) => push_issue("ni_number", e.into()),
            }
        }
        if !raw.postcode.trim().is_empty() {
            match Postcode::parse_lenient(raw.postcode) {
                Ok(p) => {
                    if !p.is_full() {
                        push_issue("postcode", IssueReason::DistrictOnly);
                    }
                    id.postcode = Some(p);
                }
                Err(e) => push_issue("postcode", e.into()),
            }
        }
        let mut too_many = false;
        for raw_pc in normalize::multi(raw.previous_postcodes) {
            match Postcode::parse_lenient(raw_pc) {
                Ok(p) if id.postcode.as_ref() == Some(&p) || id.previous_postcodes.contains(&p) => {}
                Ok(_) if id.previous_postcodes.len() == MAX_PREVIOUS_POSTCODES => too_many = true,
                Ok(p) => {
                    if !p.is_full() {
                        push_issue("previous_postcodes", IssueReason::DistrictOnly);
                    }
                    id.previous_postcodes.push(p);
                }
                Err(e) => push_issue("previous_postcodes", e.into()),
            }
        }
        if too_many {
            push_issue("previous_postcodes", IssueReason::TooMany(MAX_PREVIOUS_POSTCODES));
        }
        id
    }
}

fn required<T>(
    raw: &str,
    field: &'static str,
    parse: impl Fn(&str) -> Result<T, FieldError>,
    push_issue: &mut impl FnMut(&'static str, IssueReason),
) -> Option<T> {
    if raw.trim().is_empty() {
        push_issue(field, IssueReason::Missing);
        return None;
    }
    match parse(raw) {
        Ok(v) => Some(v),
        Err(e) => {
            push_issue(field, e.into());
            None
        }
    }
}

/// Calls `emit(kind, bytes)` for every match key of `id` (possibly with
/// repeats, which tokenisation removes).
pub fn match_keys(id: &Identity, mut emit: impl FnMut(KeyKind, &[u8])) {
    let mut buf: Vec<u8> = Vec::with_capacity(96);
    let mut k = |kind: KeyKind, parts: &[&[u8]], emit: &mut dyn FnMut(KeyKind, &[u8])| {
        key(&mut buf, parts);
        emit(kind, &buf);
    };
    let pc = id.postcode.as_ref().filter(|p| p.is_full()).map(|p| p.to_string());
    let district = id.postcode.as_ref().map(|p| p.district().to_string());
    let pc = pc.as_deref().map(str::as_bytes);
    let district = district.as_deref().map(str::as_bytes);
    if let Some(n) = &id.nino {
        k(KeyKind::Nino, &[&n.stem], &mut emit);
        let mut sorted = [0u8; 6];
        sorted.copy_from_slice(&n.stem[2..8]);
        sorted.sort_unstable();
        for d in &id.dobs {
            let t = DateText::of(d);
            if let Some(y) = &t.year {
                k(KeyKind::NinoHeadYob, &[&n.stem[..4], y], &mut emit);
                k(KeyKind::NinoTailYob, &[&n.stem[4..], y], &mut emit);
            }
            // Day and month rather than the year: a wrong year then still
            // shows that the NI number's owner has this birthday.
            if let (Some(m), Some(day)) = (&t.month, &t.day) {
                let (a, b) = if m <= day { (m, day) } else { (day, m) };
                k(KeyKind::NinoDigitsBirthday, &[&n.stem[..2], &sorted, a, b], &mut emit);
            }
        }
    }
    for d in &id.dobs {
        let t = DateText::of(d);
        if let (Some(m), Some(day), Some(pc)) = (&t.month, &t.day, pc) {
            let (a, b) = if m <= day { (m, day) } else { (day, m) };
            k(KeyKind::BirthdayPostcode, &[a, b, pc], &mut emit);
        }
    }
    // Previous postcodes: the postcode kinds again, with the primary name
    // and the primary date only.
    if !id.previous_postcodes.is_empty() {
        let t = id.dobs.first().map(DateText::of);
        let birthday = t.as_ref().and_then(|t| {
            let (m, d) = (t.month.as_ref()?, t.day.as_ref()?);
            Some(if m <= d { (m, d) } else { (d, m) })
        });
        let parts = id.names.first().map(NameParts::of);
        for prev in &id.previous_postcodes {
            let full = prev.is_full().then(|| prev.to_string());
            let pc = full.as_deref().map(str::as_bytes);
            if let (Some((a, b)), Some(pc)) = (birthday, pc) {
                k(KeyKind::BirthdayPostcode, &[a, b, pc], &mut emit);
            }
            if let Some(p) = &parts {
                p.postcode_keys(pc, Some(prev.district().as_bytes()), &mut |kind, parts| k(kind, parts, &mut emit));
            }
        }
    }
    // Every name with the primary date of birth; the primary name with every
    // other date.
    let primary = id.dobs.first();
    let mut combos: Vec<(&Name, Option<&DateParts>)> = id.names.iter().map(|n| (n, primary)).collect();
    if let Some(n0) = id.names.first() {
        combos.extend(id.dobs.iter().skip(1).map(|d| (n0, Some(d))));
    }
    for (name, dob) in combos {
        let p = NameParts::of(name);
        let NameParts { f, s, lo, hi, initial, .. } = p;
        let both = p.both();
        let (has_f, has_s) = (!f.is_empty(), !s.is_empty());
        let (pf, ps) = (name.forename_code.as_bytes(), name.surname_code.as_bytes());
        let phonetic = !pf.is_empty() && !ps.is_empty();
        let (plo, phi) = if pf <= ps { (pf, ps) } else { (ps, pf) };
        let f_last = last_letters(&name.canon, 3);
        let (s_first, s_last) = (first_letters(&name.surname, 3), last_letters(&name.surname, 3));
        let (ia, ib) = (p.ia, p.ib);
        p.postcode_keys(pc, district, &mut |kind, parts| k(kind, parts, &mut emit));
        let Some(dob) = dob else { continue };
        let DateText { full, year, month, day } = DateText::of(dob);
        if let Some(date) = &full {
            if both {
                k(KeyKind::NameDob, &[lo, hi, date], &mut emit);
                // Each part is tagged, so that an initial never equals a
                // three-letter ending.
                k(KeyKind::ForenamePartSurnameDob, &[b"^", initial, s, date], &mut emit);
                k(KeyKind::ForenamePartSurnameDob, &[b"$", f_last, s, date], &mut emit);
                k(KeyKind::SurnamePartForenameDob, &[f, b"^", s_first, date], &mut emit);
                k(KeyKind::SurnamePartForenameDob, &[f, b"$", s_last, date], &mut emit);
                k(KeyKind::InitialsDob, &[ia, ib, date], &mut emit);
            }
            if has_f {
                k(KeyKind::ForenameDob, &[f, date], &mut emit);
            }
            if has_s {
                k(KeyKind::SurnameDob, &[s, date], &mut emit);
            }
        }
        if let (true, Some(m), Some(d)) = (both, &month, &day) {
            let (a, b) = if m <= d { (m, d) } else { (d, m) };
            k(KeyKind::NameMd, &[lo, hi, a, b], &mut emit);
            k(KeyKind::ForenameInitialSurnameMd, &[initial, s, a, b], &mut emit);
            k(KeyKind::ForenameSurnamePartMd, &[f, b"^", s_first, a, b], &mut emit);
            k(KeyKind::ForenameSurnamePartMd, &[f, b"$", s_last, a, b], &mut emit);
        }
        if let (true, Some(y), Some(m)) = (phonetic, &year, &month) {
            k(KeyKind::PhoneticYm, &[plo, phi, y, m], &mut emit);
        }
        if let (true, Some(y)) = (both, &year) {
            k(KeyKind::NameYob, &[lo, hi, y], &mut emit);
        }
    }
}

/// The parts of one name variant that the name kinds hold.
#[derive(Clone, Copy)]
struct NameParts<'a> {
    /// The canonical forename and the surname.
    f: &'a [u8],
    s: &'a [u8],
    /// The two in sorted order, the surname read through the nickname
    /// table too, so that a forename keyed in the surname's place
    /// (`TAYLOR / JAMIE`) still pairs with its canonical form.
    lo: &'a [u8],
    hi: &'a [u8],
    /// The initial of `f`, and the two initials in sorted order.
    initial: &'a [u8],
    ia: &'a [u8],
    ib: &'a [u8],
}

impl<'a> NameParts<'a> {
    fn of(name: &'a Name) -> NameParts<'a> {
        let (f, s) = (name.canon.as_bytes(), name.surname.as_bytes());
        let s_pair = normalize::canonical_forename(&name.surname).as_bytes();
        let (lo, hi) = if f <= s_pair { (f, s_pair) } else { (s_pair, f) };
        let initial = &f[..name.canon.chars().next().map_or(0, char::len_utf8)];
        let s_initial = first_letters(&name.surname, 1);
        let (ia, ib) = if initial <= s_initial { (initial, s_initial) } else { (s_initial, initial) };
        NameParts { f, s, lo, hi, initial, ia, ib }
    }

    fn both(&self) -> bool {
        !self.f.is_empty() && !self.s.is_empty()
    }

    /// The kinds of this name with a postcode (full) or its district.
    fn postcode_keys(&self, pc: Option<&[u8]>, district: Option<&[u8]>, k: &mut dyn FnMut(KeyKind, &[&[u8]])) {
        let NameParts { f, s, lo, hi, ia, ib, .. } = *self;
        if let (true, Some(dist)) = (self.both(), district) {
            k(KeyKind::NameDistrict, &[lo, hi, dist]);
        }
        if let Some(pc) = pc {
            if self.both() {
                k(KeyKind::NamePostcode, &[lo, hi, pc]);
                k(KeyKind::InitialsPostcode, &[ia, ib, pc]);
            }
            if !s.is_empty() {
                k(KeyKind::SurnamePostcode, &[s, pc]);
            }
            if !f.is_empty() {
                k(KeyKind::ForenamePostcode, &[f, pc]);
            }
        }
    }
}

/// The first `n` letters of a folded name (the whole name if shorter).
fn first_letters(name: &str, n: usize) -> &[u8] {
    let end = name.char_indices().nth(n).map_or(name.len(), |(i, _)| i);
    &name.as_bytes()[..end]
}

/// The last `n` letters of a folded name (the whole name if shorter).
fn last_letters(name: &str, n: usize) -> &[u8] {
    let start = name.char_indices().rev().nth(n.saturating_sub(1)).map_or(0, |(i, _)| i);
    &name.as_bytes()[start..]
}

/// The digits of a date's parts, on the stack (keys are built for every
/// row, so no allocation): `YYYY-MM-DD`, `YYYY`, `MM`, `DD`.
struct DateText {
    full: Option<[u8; 10]>,
    year: Option<[u8; 4]>,
    month: Option<[u8; 2]>,
    day: Option<[u8; 2]>,
}

fn digits<const N: usize>(mut v: u16) -> [u8; N] {
    let mut out = [b'0'; N];
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out
}

impl DateText {
    fn of(d: &DateParts) -> DateText {
        let year = d.year.map(digits::<4>);
        let month = d.month.map(|m| digits::<2>(u16::from(m)));
        let day = d.day.map(|x| digits::<2>(u16::from(x)));
        let full = d.full().and_then(|_| {
            let (y, m, x) = (year?, month?, day?);
            let mut f = [b'-'; 10];
            f[..4].copy_from_slice(&y);
            f[5..7].copy_from_slice(&m);
            f[8..].copy_from_slice(&x);
            Some(f)
        });
        DateText { full, year, month, day }
    }
}

fn key(buf: &mut Vec<u8>, parts: &[&[u8]]) {
    buf.clear();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            buf.push(SEP);
        }
        buf.extend_from_slice(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing: a name in another script reached Double Metaphone,
    /// which cut it mid-character and panicked. Such a name has no phonetic
    /// code (so no phonetic key), and nothing panics.
    #[test]
    fn names_outside_the_latin_alphabet_have_no_phonetic_code() {
        let mut ph = Phonetic::default();
        for name in ["\u{644}\u{643}", "cl\u{644}", "\u{738b}\u{5c0f}\u{660e}", "\u{3b1}\u{3bb}\u{3ad}\u{3be}"] {
            assert_eq!(ph.code(name), "", "{name:?}");
        }
        assert_eq!(ph.code("smith"), "SM0");
    }
    use vigil_proto::kinds::{ALL, KindSet, RETIRED};

    fn identity(raw: &RawIdentity<'_>) -> (Identity, Vec<FieldIssue>) {
        let mut issues = Vec::new();
        let id = Identity::from_raw(raw, &mut Phonetic::default(), &mut issues);
        (id, issues)
    }

    fn kinds(raw: &RawIdentity<'_>) -> KindSet {
        let mut out = KindSet::EMPTY;
        match_keys(&identity(raw).0, |k, _| out.insert(k));
        out
    }

    fn keys(raw: &RawIdentity<'_>) -> Vec<(KeyKind, Vec<u8>)> {
        let mut out = Vec::new();
        match_keys(&identity(raw).0, |k, b| out.push((k, b.to_vec())));
        out
    }

    const FULL: RawIdentity<'static> = RawIdentity {
        forenames: "Zoe",
        surname: "Smith",
        previous_surnames: "",
        aliases: "",
        date_of_birth: "1984-07-02",
        alt_dates_of_birth: "",
        ni_number: "AB123456C",
        postcode: "LS1 4AP",
        previous_postcodes: "",
    };

    fn without(names: &[&str]) -> KindSet {
        ALL.into_iter().filter(|k| !RETIRED.contains(k) && !names.contains(&k.short_name())).collect()
    }

    /// Which kinds a row forms, by what it holds.
    #[test]
    fn kinds_table() {
        let nino = ["nino", "nino_head_yob", "nino_tail_yob", "nino_digits_birthday"];
        let postcode = [
            "name_postcode",
            "name_district",
            "surname_postcode",
            "forename_postcode",
            "birthday_postcode",
            "initials_postcode",
        ];
        let both_names = [
            "name_dob",
            "forename_part_surname_dob",
            "surname_part_forename_dob",
            "name_md",
            "phonetic_ym",
            "name_postcode",
            "name_district",
            "name_yob",
            "initials_dob",
            "forename_initial_surname_md",
            "initials_postcode",
            "forename_surname_part_md",
        ];
        let forename = ["forename_dob", "forename_postcode"];
        let cases: Vec<(&str, RawIdentity<'_>, KindSet)> = vec![
            ("everything", FULL, without(&[])),
            ("no NI number", RawIdentity { ni_number: "", ..FULL }, without(&nino)),
            ("no postcode", RawIdentity { postcode: "", ..FULL }, without(&postcode)),
            ("no forename", RawIdentity { forenames: "", ..FULL }, without(&[&both_names[..], &forename[..]].concat())),
            (
                "district only",
                RawIdentity { postcode: "LS1 4Q!", ..FULL },
                without(&postcode[..]).iter().chain([KeyKind::NameDistrict]).collect(),
            ),
            (
                "no month",
                RawIdentity { date_of_birth: "1984-00-13", ni_number: "", postcode: "", ..FULL },
                [KeyKind::NameYob].into_iter().collect(),
            ),
            (
                "a month mistyped, read as the one it most likely was",
                RawIdentity { date_of_birth: "1984-43-13", ni_number: "", postcode: "", ..FULL },
                without(&[&nino[..], &postcode[..]].concat()),
            ),
            (
                "names and a district, nothing else",
                RawIdentity { date_of_birth: "", ni_number: "", postcode: "LS1 4Q!", ..FULL },
                [KeyKind::NameDistrict].into_iter().collect(),
            ),
            ("no date of birth", RawIdentity { date_of_birth: "", ni_number: "", ..FULL }, {
                [
                    KeyKind::NamePostcode,
                    KeyKind::NameDistrict,
                    KeyKind::SurnamePostcode,
                    KeyKind::ForenamePostcode,
                    KeyKind::InitialsPostcode,
                ]
                .into_iter()
                .collect()
            }),
        ];
        for (what, raw, want) in cases {
            let got = kinds(&raw);
            let names = |s: KindSet| s.iter().map(|k| k.short_name()).collect::<Vec<_>>();
            assert_eq!(names(got), names(want), "{what}");
        }
    }

    /// The coordinator refuses a token set with more of a kind than one
    /// identity forms (`vigil_proto::kinds::max_per_identity`): the fullest
    /// identity a node keeps stays within it, and reaches it.
    #[test]
    fn the_fullest_identity_stays_within_the_per_kind_bound() {
        let raw = RawIdentity {
            forenames: "Zoe",
            surname: "Smith-Jones",
            previous_surnames: "Abbot; Baker; Carter; Dawson; Ellis",
            aliases: "Anna/Fisher; Beth/Grant; Cara/Hughes; Dina/Irwin; Eva/Jarvis; Fay/Kemp",
            date_of_birth: "1984-07-02",
            alt_dates_of_birth: "1984-02-07; 1985-07-02; 1983-07-12; 1986-01-01",
            ni_number: "AB123456C",
            postcode: "LS1 4AP",
            previous_postcodes: "LS2 1AA; LS3 1AA; LS1 4AP; LS4 1AA; LS5 1AA; LS6 1AA",
        };
        let (id, _) = identity(&raw);
        assert_eq!((id.names.len(), id.dobs.len()), (MAX_NAMES, MAX_DOBS));
        assert_eq!(id.previous_postcodes.len(), MAX_PREVIOUS_POSTCODES);
        let mut tk = Vec::new();
        crate::tokens::Tokenizer::new(&crate::tokens::LinkageKey::new(1, [7; 32])).tokens(&id, &mut tk);
        let mut reached = 0;
        for k in ALL {
            let n = tk.iter().filter(|(kind, _)| *kind == k).count();
            let limit = vigil_proto::kinds::max_per_identity(k);
            assert!(n <= limit, "{}: {n} tokens, bound {limit}", k.short_name());
            reached += usize::from(n == limit);
        }
        assert!(reached >= 5, "the bound is tight for several kinds ({reached} reach it)");
    }

    #[test]
    fn issues_name_the_field_and_what_was_used() {
        let (id, issues) = identity(&RawIdentity { date_of_birth: "1984-22-03", postcode: "LS1 4Q!", ..FULL });
        assert_eq!(id.dobs[0].full().map(|d| d.to_string()), Some("1984-03-22".into()));
        let reasons: Vec<_> = issues.iter().map(|i| (i.field, i.reason)).collect();
        assert_eq!(reasons, vec![("date_of_birth", IssueReason::Swapped), ("postcode", IssueReason::DistrictOnly)]);
        let (id, issues) = identity(&RawIdentity { forenames: "", ..FULL });
        assert!(id.can_match());
        assert_eq!(issues[0].field, "forenames");
        let (id, _) = identity(&RawIdentity { forenames: "", surname: "", date_of_birth: "", ni_number: "", ..FULL });
        assert!(!id.can_match(), "a postcode alone forms no key");
        // An impossible month: the date as written first, then its likely
        // readings after the row's own other dates, as far as there is room.
        let (id, issues) =
            identity(&RawIdentity { date_of_birth: "1984-80-02", alt_dates_of_birth: "1985-07-02", ..FULL });
        let dates: Vec<_> = id.dobs.iter().map(|d| (d.year, d.month, d.day)).collect();
        assert_eq!(
            dates,
            vec![
                (Some(1984), None, Some(2)),
                (Some(1985), Some(7), Some(2)),
                (Some(1984), Some(10), Some(2)),
                (Some(1984), Some(8), Some(2)),
            ]
        );
        assert_eq!(
            issues.iter().map(|i| (i.field, i.reason)).collect::<Vec<_>>(),
            vec![("date_of_birth", IssueReason::MonthRead)]
        );
        let (id, _) = identity(&RawIdentity {
            date_of_birth: "1984-80-02",
            alt_dates_of_birth: "1985-07-02; 1986-07-02",
            ..FULL
        });
        assert_eq!(id.dobs.len(), MAX_DOBS);
        assert_eq!(id.dobs[3].month, Some(10), "only the first reading has room");
    }

    /// A national record keyed at an address the roster lists as previous
    /// agrees on the postcode kinds, as it would at the current one; the
    /// previous postcodes pair with the primary name and date only.
    #[test]
    fn a_previous_postcode_forms_the_postcode_kinds() {
        let staff =
            RawIdentity { previous_surnames: "Jones", previous_postcodes: "M1 2AB; ls1 4ap; M1 2AB; B1 1Q!", ..FULL };
        let (id, issues) = identity(&staff);
        assert_eq!(id.previous_postcodes.len(), 2, "the current one and a repeat are not kept twice");
        assert_eq!(
            issues.iter().map(|i| (i.field, i.reason)).collect::<Vec<_>>(),
            vec![("previous_postcodes", IssueReason::DistrictOnly)]
        );
        let old_address = keys(&RawIdentity { postcode: "M1 2AB", ni_number: "", ..FULL });
        let staff_keys = keys(&staff);
        let shared: KindSet = staff_keys.iter().filter(|k| old_address.contains(k)).map(|(k, _)| *k).collect();
        for kind in [
            KeyKind::NamePostcode,
            KeyKind::NameDistrict,
            KeyKind::SurnamePostcode,
            KeyKind::ForenamePostcode,
            KeyKind::InitialsPostcode,
            KeyKind::BirthdayPostcode,
        ] {
            assert!(shared.contains(kind), "{}", kind.short_name());
        }
        let without = keys(&RawIdentity { previous_surnames: "Jones", ..FULL });
        let added: Vec<_> = staff_keys.iter().filter(|k| !without.contains(k)).map(|(k, _)| *k).collect();
        // Six kinds with the full previous postcode, the district of the
        // other; the previous surname does not pair with them.
        assert_eq!(added.len(), 7, "{added:?}");
        // A previous address alone, with a name, is enough to use a row.
        let (id, _) = identity(&RawIdentity {
            date_of_birth: "",
            ni_number: "",
            postcode: "",
            previous_postcodes: "M1 2AB",
            ..FULL
        });
        assert!(id.can_match());
        let many = "M1 1AA; M1 2AA; M1 3AA; M1 4AA; M1 5AA; M1 6AA";
        let (id, issues) = identity(&RawIdentity { previous_postcodes: many, ..FULL });
        assert_eq!(id.previous_postcodes.len(), MAX_PREVIOUS_POSTCODES);
        assert_eq!(
            issues.iter().map(|i| i.reason).collect::<Vec<_>>(),
            vec![IssueReason::TooMany(MAX_PREVIOUS_POSTCODES)]
        );
    }

    #[test]
    fn names_in_either_order_and_day_and_month_in_either_order_agree() {
        let a = keys(&FULL);
        let swapped = keys(&RawIdentity { forenames: "Smith", surname: "Zoe", ..FULL });
        let common = |x: &[(KeyKind, Vec<u8>)], y: &[(KeyKind, Vec<u8>)]| -> KindSet {
            x.iter().filter(|k| y.contains(k)).map(|(k, _)| *k).collect()
        };
        let c = common(&a, &swapped);
        assert!(c.contains(KeyKind::NameDob) && c.contains(KeyKind::NamePostcode) && !c.contains(KeyKind::ForenameDob));
        let transposed = keys(&RawIdentity { date_of_birth: "1984-02-07", ..FULL });
        let c = common(&a, &transposed);
        assert!(c.contains(KeyKind::NameMd) && c.contains(KeyKind::BirthdayPostcode) && !c.contains(KeyKind::NameDob));
        // A forename with a nickname-canonical form, keyed in the surname's
        // place: the surname is read through the table too in the kinds
        // that hold both names in either order.
        let jamie = keys(&RawIdentity { forenames: "Jamie", surname: "Taylor", ..FULL });
        let swapped = keys(&RawIdentity { forenames: "TAYLOR", surname: "JAMIE", ..FULL });
        let c = common(&jamie, &swapped);
        assert!(c.contains(KeyKind::NameDob) && c.contains(KeyKind::NameMd) && c.contains(KeyKind::NameDistrict));
        assert!(!c.contains(KeyKind::ForenameDob) && !c.contains(KeyKind::SurnameDob));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// `can_match` says whether `match_keys` forms a key, for rows
            /// with any mix of fields present, partial or invalid.
            #[test]
            fn can_match_agrees_with_the_keys(
                forenames in "(|[A-Z][a-z]{1,6})",
                surname in "(|[A-Z][a-z]{1,6})",
                dob in "(|19[0-9]{2}-[0-3][0-9]-[0-3][0-9])",
                alt in "(|20[01][0-9]-[01][0-9]-[0-3][0-9])",
                nino in "(|AB12345[0-9]C)",
                postcode in "(|LS1 4AP|LS1 4Q!)",
                previous in "(|LS2 1AA|LS2 1Q!|LS1 4AP; M1 2AB)",
            ) {
                let raw = RawIdentity {
                    forenames: &forenames,
                    surname: &surname,
                    date_of_birth: &dob,
                    alt_dates_of_birth: &alt,
                    ni_number: &nino,
                    postcode: &postcode,
                    previous_postcodes: &previous,
                    ..Default::default()
                };
                let id = identity(&raw).0;
                let mut any = false;
                match_keys(&id, |_, _| any = true);
                prop_assert_eq!(id.can_match(), any);
            }

            /// One letter of a name keyed wrongly (any position) still leaves
            /// the kind that holds a part of that name: the forename's initial
            /// or ending (forenames of four letters or more), the surname's
            /// first or last three letters (six letters or more).
            #[test]
            fn one_wrong_letter_leaves_the_part_kind(
                forename in "[A-Z][a-z]{3,8}",
                surname in "[A-Z][a-z]{5,9}",
                which in 0usize..2,
                at in 0usize..10,
                letter in "[A-Z]",
            ) {
                let typo = |name: &str| -> String {
                    let mut c: Vec<char> = name.chars().collect();
                    let i = at % c.len();
                    let new = letter.chars().next().unwrap_or('Q');
                    c[i] = if c[i].eq_ignore_ascii_case(&new) { if new == 'Q' { 'X' } else { 'Q' } } else { new };
                    c.into_iter().collect()
                };
                let base = RawIdentity { forenames: &forename, surname: &surname, ni_number: "", postcode: "", ..FULL };
                let (f2, s2) = if which == 0 { (typo(&forename), surname.clone()) } else { (forename.clone(), typo(&surname)) };
                let changed = RawIdentity { forenames: &f2, surname: &s2, ..base };
                let a = keys(&base);
                let b = keys(&changed);
                let want = if which == 0 { KeyKind::ForenamePartSurnameDob } else { KeyKind::SurnamePartForenameDob };
                let kept = a.iter().any(|k| k.0 == want && b.contains(k));
                // A nickname table can map a changed forename to a different
                // canonical name; the part kind is about spelling only.
                prop_assume!(identity(&changed).0.names[0].canon.len() == f2.len() || which == 1);
                prop_assert!(kept, "{:?} not shared", want);
            }

            /// Two errors together that no one-error kind survives: both names
            /// misspelt after their first letter (`initials_dob`, with the
            /// names in either order); the forename misspelt after its first
            /// letter and the year of birth wrong (`forename_initial_surname_md`);
            /// both names misspelt and the date wrong at the same address
            /// (`initials_postcode`); the surname misspelt, keeping its first
            /// or last three letters (six letters or more), and the year wrong
            /// (`forename_surname_part_md`).
            #[test]
            fn two_errors_together_leave_a_kind(
                forename in "[A-Z][a-z]{3,8}",
                surname in "[A-Z][a-z]{3,9}",
                which in 0usize..5,
                at in 1usize..10,
                other_year in 1930u16..1984,
            ) {
                let typo = |name: &str| -> String {
                    let mut c: Vec<char> = name.chars().collect();
                    let i = at % (c.len() - 1) + 1;
                    c[i] = if c[i] == 'q' { 'x' } else { 'q' };
                    c.into_iter().collect()
                };
                let base = RawIdentity { forenames: &forename, surname: &surname, ni_number: "", postcode: "", ..FULL };
                let at_home = RawIdentity { postcode: FULL.postcode, ..base };
                let (f2, s2) = (typo(&forename), typo(&surname));
                let (year, date) = (format!("{other_year}-07-02"), format!("{other_year}-03-19"));
                let (from, changed, want) = match which {
                    0 => (base, RawIdentity { forenames: &f2, surname: &s2, ..base }, KeyKind::InitialsDob),
                    1 => (base, RawIdentity { forenames: &s2, surname: &f2, ..base }, KeyKind::InitialsDob),
                    2 => (base, RawIdentity { forenames: &f2, date_of_birth: &year, ..base }, KeyKind::ForenameInitialSurnameMd),
                    3 => (
                        at_home,
                        RawIdentity { forenames: &f2, surname: &s2, date_of_birth: &date, ..at_home },
                        KeyKind::InitialsPostcode,
                    ),
                    _ => (base, RawIdentity { surname: &s2, date_of_birth: &year, ..base }, KeyKind::ForenameSurnamePartMd),
                };
                prop_assume!(which != 4 || surname.len() >= 6);
                // A nickname table can map a changed forename to another
                // canonical name, with another initial.
                prop_assume!(identity(&changed).0.names[0].canon.len() == f2.len() || which == 1 || which == 4);
                let a = keys(&from);
                let b = keys(&changed);
                prop_assert!(a.iter().any(|k| k.0 == want && b.contains(k)), "{:?} not shared", want);
            }

            /// Whatever one field of a full row is changed to, the row and its
            /// changed copy still share a key that holds the other fields.
            #[test]
            fn one_changed_field_leaves_a_shared_key(
                field in 0usize..5,
                forename in "[A-Z][a-z]{2,8}",
                surname in "[A-Z][a-z]{2,9}",
                y in 1930u16..2005, m in 1u8..13, d in 1u8..29,
                nino in "[ACEHJLMPRSW][ABCEGHJKLMNPRSTWXYZ][0-9]{6}[A-D]",
                postcode in "(LS|M|B|SW|CF)[1-9] [0-9][ABDEFGHJLNPQRSTUWXYZ]{2}",
            ) {
                let dob = format!("{y:04}-{m:02}-{d:02}");
                let mut changed = FULL;
                match field {
                    0 => changed.forenames = &forename,
                    1 => changed.surname = &surname,
                    2 => changed.date_of_birth = &dob,
                    3 => changed.ni_number = &nino,
                    _ => changed.postcode = &postcode,
                }
                let a = keys(&FULL);
                let b = keys(&changed);
                let shared = a.iter().filter(|k| b.contains(k)).count();
                prop_assert!(shared >= 3, "field {} changed: only {} keys shared", field, shared);
            }
        }
    }
}
