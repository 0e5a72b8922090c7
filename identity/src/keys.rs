//! Match keys of scheme v1: from raw identity fields to the canonical bytes
//! that are hashed into tokens. Pure: no I/O, no keys.
//!
//! An [`Identity`] is built from the raw fields of a roster row, an extract
//! row or an applicant ([`RawIdentity`]). Every field that cannot be used is
//! reported as a [`FieldIssue`] naming the field (never its value); the rest
//! of the row is still used. [`match_keys`] then derives every key:
//!
//! | kind | bytes (fields joined by 0x1F) |
//! |---|---|
//! | `nino` | NI number prefix and digits, e.g. `AB123456` |
//! | `name_dob` | forename, surname, date of birth |
//! | `canon_name_dob` | canonical forename, surname, date of birth |
//! | `initial_surname_dob` | first initial, surname, date of birth |
//! | `phonetic_dob` | Double Metaphone of canonical forename and of surname, date of birth |
//! | `name_pair_dob` | canonical forename and surname sorted, date of birth |
//! | `name_dob_unordered` | canonical forename, surname, year, min(day, month), max(day, month) |
//! | `name_yob_district` | canonical forename and surname sorted, year of birth, postcode district |
//! | `forename_dob` | canonical forename, date of birth |
//!
//! Every name variant (the primary name, each part of a multi-part surname,
//! each previous surname, each alias) is combined with every date of birth
//! (primary and alternatives). No key is made of one low-entropy field alone.

use rphonetic::DoubleMetaphone;
use std::collections::HashMap;
use vigil_proto::KeyKind;

use crate::normalize::{self, Date, FieldError, Name, Nino, Postcode};

/// Most name variants kept for one identity; more are reported and ignored.
pub const MAX_NAMES: usize = 12;
/// Most dates of birth kept for one identity; more are reported and ignored.
pub const MAX_DOBS: usize = 4;
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
}

/// A normalised identity: every name variant and date of birth, and the
/// optional identifiers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Name variants, primary first.
    pub names: Vec<Name>,
    /// Dates of birth, primary first.
    pub dobs: Vec<Date>,
    /// National Insurance number.
    pub nino: Option<Nino>,
    /// Postcode.
    pub postcode: Option<Postcode>,
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

    /// The primary Double Metaphone code (at most four letters) of a folded name.
    pub fn code(&mut self, name: &str) -> String {
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
    /// Whether at least one match key can be formed: a NI number, or a name
    /// and a date of birth.
    pub fn can_match(&self) -> bool {
        self.nino.is_some() || (!self.names.is_empty() && !self.dobs.is_empty())
    }

    /// Normalises raw fields. Unusable fields are reported in `issues` and
    /// skipped; what remains is kept.
    pub fn from_raw(raw: &RawIdentity<'_>, ph: &mut Phonetic, issues: &mut Vec<FieldIssue>) -> Identity {
        let mut id = Identity::default();
        let mut push_issue = |field: &'static str, reason: IssueReason| issues.push(FieldIssue { field, reason });

        let forename = required(raw.forenames, "forenames", normalize::first_forename, &mut push_issue);
        let surnames = required(raw.surname, "surname", normalize::surnames, &mut push_issue);
        let mut names: Vec<(String, String)> = Vec::new();
        if let (Some(f), Some(ss)) = (&forename, &surnames) {
            for s in ss {
                names.push((f.clone(), s.clone()));
            }
        }
        if let Some(f) = &forename {
            for prev in normalize::multi(raw.previous_surnames) {
                match normalize::surnames(prev) {
                    Ok(ss) => names.extend(ss.into_iter().map(|s| (f.clone(), s))),
                    Err(e) => push_issue("previous_surnames", e.into()),
                }
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
            let forename_code = ph.code(&canon);
            let surname_code = ph.code(&surname);
            id.names.push(Name { forename, canon, surname, forename_code, surname_code });
        }

        if let Some(d) = required(raw.date_of_birth, "date_of_birth", Date::parse, &mut push_issue) {
            id.dobs.push(d);
        }
        for alt in normalize::multi(raw.alt_dates_of_birth) {
            match Date::parse(alt) {
                Ok(d) if !id.dobs.contains(&d) => id.dobs.push(d),
                Ok(_) => {}
                Err(e) => push_issue("alt_dates_of_birth", e.into()),
            }
        }
        if id.dobs.len() > MAX_DOBS {
            push_issue("alt_dates_of_birth", IssueReason::TooMany(MAX_DOBS));
            id.dobs.truncate(MAX_DOBS);
        }
        if !raw.ni_number.trim().is_empty() {
            match Nino::parse(raw.ni_number) {
                Ok(n) => id.nino = Some(n),
                Err(e) => push_issue("ni_number", e.into()),
            }
        }
        if !raw.postcode.trim().is_empty() {
            match Postcode::parse(raw.postcode) {
                Ok(p) => id.postcode = Some(p),
                Err(e) => push_issue("postcode", e.into()),
            }
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
    if let Some(n) = &id.nino {
        emit(KeyKind::Nino, &n.stem);
    }
    let district = id.postcode.as_ref().map(|p| p.district());
    for name in &id.names {
        let (lo, hi) =
            if name.canon <= name.surname { (&name.canon, &name.surname) } else { (&name.surname, &name.canon) };
        let mut years: [u16; MAX_DOBS] = [0; MAX_DOBS];
        for (i, dob) in id.dobs.iter().enumerate() {
            let date = dob.to_string();
            let date = date.as_bytes();
            key(&mut buf, &[name.forename.as_bytes(), name.surname.as_bytes(), date]);
            emit(KeyKind::NameDob, &buf);
            key(&mut buf, &[name.canon.as_bytes(), name.surname.as_bytes(), date]);
            emit(KeyKind::CanonNameDob, &buf);
            key(&mut buf, &[name.initial().as_bytes(), name.surname.as_bytes(), date]);
            emit(KeyKind::InitialSurnameDob, &buf);
            if !name.forename_code.is_empty() && !name.surname_code.is_empty() {
                key(&mut buf, &[name.forename_code.as_bytes(), name.surname_code.as_bytes(), date]);
                emit(KeyKind::PhoneticDob, &buf);
            }
            key(&mut buf, &[lo.as_bytes(), hi.as_bytes(), date]);
            emit(KeyKind::NamePairDob, &buf);
            let (a, b) = (dob.day.min(dob.month), dob.day.max(dob.month));
            let unordered = format!("{:04}{}{a:02}{}{b:02}", dob.year, SEP as char, SEP as char);
            key(&mut buf, &[name.canon.as_bytes(), name.surname.as_bytes(), unordered.as_bytes()]);
            emit(KeyKind::NameDobUnordered, &buf);
            key(&mut buf, &[name.canon.as_bytes(), date]);
            emit(KeyKind::ForenameDob, &buf);
            years[i] = dob.year;
        }
        if let Some(district) = district {
            for (i, year) in years.iter().take(id.dobs.len()).enumerate() {
                if years[..i].contains(year) {
                    continue;
                }
                let y = format!("{year:04}");
                key(&mut buf, &[lo.as_bytes(), hi.as_bytes(), y.as_bytes(), district.as_bytes()]);
                emit(KeyKind::NameYobDistrict, &buf);
            }
        }
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

    fn ident(raw: RawIdentity<'_>) -> (Identity, Vec<FieldIssue>) {
        let mut issues = Vec::new();
        let id = Identity::from_raw(&raw, &mut Phonetic::default(), &mut issues);
        (id, issues)
    }

    fn keys(id: &Identity) -> Vec<(KeyKind, String)> {
        let mut out = Vec::new();
        match_keys(id, |k, b| out.push((k, String::from_utf8_lossy(b).replace('\u{1f}', "|"))));
        out
    }

    fn base() -> RawIdentity<'static> {
        RawIdentity {
            forenames: "Robert James",
            surname: "Smith",
            date_of_birth: "1980-03-25",
            ni_number: "AB123456C",
            postcode: "SW1A 1AA",
            ..Default::default()
        }
    }

    #[test]
    fn keys_of_a_full_record() {
        let (id, issues) = ident(base());
        assert!(issues.is_empty());
        let got = keys(&id);
        let want = [
            (KeyKind::Nino, "AB123456"),
            (KeyKind::NameDob, "robert|smith|1980-03-25"),
            (KeyKind::CanonNameDob, "robert|smith|1980-03-25"),
            (KeyKind::InitialSurnameDob, "r|smith|1980-03-25"),
            (KeyKind::PhoneticDob, "RPRT|SM0|1980-03-25"),
            (KeyKind::NamePairDob, "robert|smith|1980-03-25"),
            (KeyKind::NameDobUnordered, "robert|smith|1980|03|25"),
            (KeyKind::ForenameDob, "robert|1980-03-25"),
            (KeyKind::NameYobDistrict, "robert|smith|1980|SW1"),
        ];
        let want: Vec<_> = want.iter().map(|(k, s)| (*k, s.to_string())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn nickname_swapped_order_and_transposed_dates_still_share_keys() {
        let (a, _) = ident(base());
        let (b, _) = ident(RawIdentity { forenames: "Bob", ..base() });
        let (c, _) = ident(RawIdentity { forenames: "Smith", surname: "Robert", ..base() });
        let (d, _) = ident(RawIdentity { date_of_birth: "1980-25-03", ..base() });
        let ka = keys(&a);
        let shared =
            |x: &Identity| -> Vec<KeyKind> { keys(x).into_iter().filter(|k| ka.contains(k)).map(|(k, _)| k).collect() };
        assert!(shared(&b).contains(&KeyKind::CanonNameDob));
        assert!(!shared(&b).contains(&KeyKind::NameDob));
        assert!(shared(&c).contains(&KeyKind::NamePairDob));
        assert!(shared(&c).contains(&KeyKind::NameYobDistrict));
        // 1980-25-03 is not a date: reported, and the NINO still keys the row
        assert_eq!(d.dobs.len(), 0);
        let (e, _) = ident(RawIdentity { date_of_birth: "1980-12-03", ..base() });
        let (f, _) = ident(RawIdentity { date_of_birth: "1980-03-12", ..base() });
        let kf = keys(&f);
        assert!(keys(&e).iter().any(|k| k.0 == KeyKind::NameDobUnordered && kf.contains(k)));
    }

    #[test]
    fn previous_surnames_aliases_and_alternative_dobs_expand_keys() {
        let (id, issues) = ident(RawIdentity {
            previous_surnames: "Jones; Brown",
            aliases: "Bobby/Smythe",
            alt_dates_of_birth: "1980-03-26;1980-03-25",
            ..base()
        });
        assert!(issues.is_empty());
        assert_eq!(id.names.len(), 4);
        assert_eq!(id.dobs.len(), 2);
        let k = keys(&id);
        assert!(k.contains(&(KeyKind::NameDob, "robert|jones|1980-03-25".into())));
        assert!(k.contains(&(KeyKind::NameDob, "robert|brown|1980-03-26".into())));
        assert!(k.contains(&(KeyKind::CanonNameDob, "robert|smythe|1980-03-25".into())));
        // one name_yob_district per name: both DOBs share a year
        assert_eq!(k.iter().filter(|x| x.0 == KeyKind::NameYobDistrict).count(), 4);
    }

    #[test]
    fn bad_optional_fields_are_reported_by_field_and_skipped() {
        let (id, issues) = ident(RawIdentity { ni_number: "XX", postcode: "nowhere", aliases: "Nobody", ..base() });
        assert!(id.nino.is_none() && id.postcode.is_none());
        let fields: Vec<_> = issues.iter().map(|i| i.field).collect();
        assert_eq!(fields, vec!["alias_names", "ni_number", "postcode"]);
        assert!(!keys(&id).is_empty());
    }

    #[test]
    fn no_key_from_a_row_without_name_date_or_nino() {
        let (id, issues) = ident(RawIdentity { date_of_birth: "", ni_number: "", ..base() });
        assert!(keys(&id).is_empty());
        assert_eq!(issues, vec![FieldIssue { field: "date_of_birth", reason: IssueReason::Missing }]);
        let (id, _) = ident(RawIdentity { forenames: "", surname: "", ni_number: "", ..base() });
        assert!(keys(&id).is_empty());
    }

    #[test]
    fn no_key_is_made_of_one_low_entropy_field() {
        let (id, _) = ident(base());
        let s = id.names[0].surname.as_bytes().to_vec();
        match_keys(&id, |k, b| {
            let fields = b.iter().filter(|&&c| c == SEP).count() + 1;
            match k {
                KeyKind::Nino => assert_eq!(fields, 1),
                KeyKind::ForenameDob => assert_eq!(fields, 2),
                _ => assert!(fields >= 3, "{k:?} has fewer than three fields"),
            }
            assert_ne!(b, s.as_slice());
            assert_ne!(b, b"SW1");
        });
    }
}
