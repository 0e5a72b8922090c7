//! Normalisation of identity fields (match-key scheme v2). Pure functions.
//!
//! - Text is folded to lowercase ASCII-or-letter words: Unicode NFKD, combining
//!   marks stripped, a few letters without a decomposition spelled out (ß → ss,
//!   æ → ae, ø → o, ł → l, ...), case folded, apostrophes deleted (O'Brien →
//!   obrien), every other non-alphanumeric character separating words.
//! - Names: titles (Mr, Dr, ...) are dropped from the front and suffixes (Jr,
//!   III, OBE, ...) from the end; the first remaining forename is the forename;
//!   the surname is all its words joined (Smith-Jones → smithjones), and a
//!   multi-part surname also yields each non-particle part as a variant.
//! - National Insurance numbers are validated against HMRC's prefix rules and
//!   canonicalised to `AB123456C`; the match key uses prefix and digits only,
//!   because the suffix letter is often missing or wrong.
//! - Postcodes are validated against the UK formats and canonicalised to
//!   `SW1A 1AA`; the district is the outward code without a trailing letter.
//!   A postcode whose outward code is valid but whose inward code is not
//!   keeps its district ([`Postcode::parse_lenient`]).
//! - Dates are `YYYY-MM-DD` (or `YYYYMMDD`), real calendar dates from 1900 to
//!   2100. A date with a digit error that makes it impossible (month 13, day
//!   32) keeps the parts that are still valid ([`DateParts`]): partial-date
//!   keys can still match on them. An impossible month also gives its likely
//!   readings ([`DateParts::month_readings`]), which a node tries as further
//!   dates of birth.
//!
//! Every error says what was wrong with the value without repeating it.

use std::fmt;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::nicknames;

/// Why a field value was refused. Never carries the value itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    /// Nothing usable after normalisation.
    #[error("empty after normalisation")]
    Empty,
    /// Longer than the field allows.
    #[error("longer than {0} characters")]
    TooLong(usize),
    /// Not a date in the form YYYY-MM-DD.
    #[error("not a date in the form YYYY-MM-DD")]
    DateFormat,
    /// A well-formed date that does not exist or is outside 1900-2100.
    #[error("not a real calendar date between 1900 and 2100")]
    DateRange,
    /// Not a National Insurance number.
    #[error("not a valid National Insurance number (two letters, six digits, optional suffix A-D)")]
    Nino,
    /// Not a UK postcode.
    #[error("not a valid UK postcode")]
    Postcode,
    /// An alias that is not `Forenames/Surname`.
    #[error("alias is not in the form Forenames/Surname")]
    Alias,
}

/// Longest raw field accepted, in bytes.
pub const MAX_FIELD_LEN: usize = 256;

/// Folds `s` into space-separated lowercase words, written into `out`.
pub fn fold_into(s: &str, out: &mut String) {
    out.clear();
    let mut sep = false;
    fn push(c: char, out: &mut String, sep: &mut bool) {
        if *sep && !out.is_empty() {
            out.push(' ');
        }
        *sep = false;
        out.push(c);
    }
    if s.is_ascii() {
        for b in s.bytes() {
            match b {
                b'a'..=b'z' | b'0'..=b'9' => push(b as char, out, &mut sep),
                b'A'..=b'Z' => push((b + 32) as char, out, &mut sep),
                b'\'' | b'`' => {}
                _ => sep = true,
            }
        }
        return;
    }
    for c in s.nfkd() {
        if is_combining_mark(c) {
            continue;
        }
        let spelled: Option<&str> = match c {
            'ß' | 'ẞ' => Some("ss"),
            'æ' | 'Æ' => Some("ae"),
            'œ' | 'Œ' => Some("oe"),
            'ø' | 'Ø' => Some("o"),
            'ł' | 'Ł' => Some("l"),
            'đ' | 'Đ' | 'ð' | 'Ð' => Some("d"),
            'þ' | 'Þ' => Some("th"),
            'ı' => Some("i"),
            _ => None,
        };
        if let Some(sp) = spelled {
            for ch in sp.chars() {
                push(ch, out, &mut sep);
            }
        } else if c.is_alphanumeric() {
            // Lowercasing can itself produce marks (İ → i + U+0307) or
            // decomposable letters: fold what it gives once more.
            for l in c.to_lowercase() {
                unicode_normalization::char::decompose_compatible(l, |d| {
                    if !is_combining_mark(d) && d.is_alphanumeric() {
                        for ll in d.to_lowercase() {
                            push(ll, out, &mut sep);
                        }
                    }
                });
            }
        } else if matches!(c, '\'' | '`' | '\u{2019}' | '\u{2018}' | '\u{02BC}' | '\u{00B4}') {
            // apostrophes join: O'Brien -> obrien
        } else {
            sep = true;
        }
    }
}

/// Folds `s` into space-separated lowercase words.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    fold_into(s, &mut out);
    out
}

const TITLES: &[&str] = &[
    "mr",
    "mrs",
    "ms",
    "miss",
    "mx",
    "dr",
    "prof",
    "professor",
    "sir",
    "dame",
    "lord",
    "lady",
    "rev",
    "revd",
    "reverend",
    "fr",
    "father",
    "capt",
    "captain",
    "master",
];
const SUFFIXES: &[&str] = &[
    "jr", "jnr", "junior", "sr", "snr", "senior", "ii", "iii", "iv", "esq", "obe", "mbe", "cbe", "kbe", "dbe", "qpm",
    "qfsm", "kpm", "bem", "phd",
];
const PARTICLES: &[&str] = &[
    "van", "von", "de", "der", "den", "del", "della", "di", "da", "du", "la", "le", "lo", "st", "ter", "ten", "dos",
    "das", "al", "el", "bin", "ben",
];

fn strip_titles_and_suffixes(words: &mut Vec<&str>) {
    while words.len() > 1 && TITLES.contains(&words[0]) {
        words.remove(0);
    }
    while words.len() > 1 && words.last().is_some_and(|w| SUFFIXES.contains(w)) {
        words.pop();
    }
}

/// A normalised name: one forename and one surname, with the derived forms
/// that match keys use.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name {
    /// First forename as written (folded).
    pub forename: String,
    /// Nickname-canonical forename (`bob` → `robert`), or the forename itself.
    pub canon: String,
    /// Surname, all words joined.
    pub surname: String,
    /// Double Metaphone primary code of `canon`.
    pub forename_code: String,
    /// Double Metaphone primary code of `surname`.
    pub surname_code: String,
}

impl Name {
    /// First letter of the forename.
    pub fn initial(&self) -> &str {
        let end = self.forename.char_indices().nth(1).map_or(self.forename.len(), |(i, _)| i);
        &self.forename[..end]
    }
}

/// The first forename of a forenames field, folded, without titles and
/// suffixes.
pub fn first_forename(raw: &str) -> Result<String, FieldError> {
    check_len(raw)?;
    let folded = fold(raw);
    let mut words: Vec<&str> = folded.split(' ').filter(|w| !w.is_empty()).collect();
    strip_titles_and_suffixes(&mut words);
    words.first().map(|w| w.to_string()).ok_or(FieldError::Empty)
}

/// A surname field, folded, without titles and suffixes: the joined form
/// first, then each non-particle part of a multi-part surname (at most three).
pub fn surnames(raw: &str) -> Result<Vec<String>, FieldError> {
    check_len(raw)?;
    let folded = fold(raw);
    let mut words: Vec<&str> = folded.split(' ').filter(|w| !w.is_empty()).collect();
    strip_titles_and_suffixes(&mut words);
    if words.is_empty() {
        return Err(FieldError::Empty);
    }
    let joined: String = words.concat();
    let mut out = vec![joined];
    if words.len() > 1 {
        for w in words.iter().filter(|w| w.len() >= 2 && !PARTICLES.contains(w)).take(3) {
            if !out.iter().any(|o| o == w) {
                out.push((*w).to_string());
            }
        }
    }
    Ok(out)
}

/// The nickname-canonical form of a folded forename.
pub fn canonical_forename(forename: &str) -> &str {
    nicknames::canonical(forename).unwrap_or(forename)
}

fn check_len(raw: &str) -> Result<(), FieldError> {
    if raw.len() > MAX_FIELD_LEN { Err(FieldError::TooLong(MAX_FIELD_LEN)) } else { Ok(()) }
}

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Year, 1900-2100.
    pub year: u16,
    /// Month, 1-12.
    pub month: u8,
    /// Day of month, 1-31.
    pub day: u8,
}

impl Date {
    /// Parses a strict `YYYY-MM-DD` date (surrounding spaces allowed).
    pub fn parse(raw: &str) -> Result<Date, FieldError> {
        let s = raw.trim().as_bytes();
        if s.len() != 10 || s[4] != b'-' || s[7] != b'-' {
            return Err(FieldError::DateFormat);
        }
        let num = |r: &[u8]| -> Result<u16, FieldError> {
            r.iter().try_fold(0u16, |acc, &b| {
                if b.is_ascii_digit() { Ok(acc * 10 + u16::from(b - b'0')) } else { Err(FieldError::DateFormat) }
            })
        };
        let (year, month, day) = (num(&s[0..4])?, num(&s[5..7])?, num(&s[8..10])?);
        let d = Date::new(year, month as u8, day as u8).ok_or(FieldError::DateRange)?;
        Ok(d)
    }

    /// A date if it exists and lies in 1900-2100.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        if !(1900..=2100).contains(&year) || !(1..=12).contains(&month) || day == 0 {
            return None;
        }
        (day <= days_in_month(year, month)).then_some(Date { year, month, day })
    }
}

/// The parts of a date of birth that could be read: each of year
/// (1900-2100), month (1-12) and day (1-31) that is valid on its own, and
/// the whole date when it is a real calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateParts {
    /// Year, when valid.
    pub year: Option<u16>,
    /// Month, when valid.
    pub month: Option<u8>,
    /// Day, when valid.
    pub day: Option<u8>,
    /// Whether day and month were read the other way round, because the
    /// month as written was 13 to 31 and the day 1 to 12.
    pub swapped: bool,
}

impl DateParts {
    /// Reads `YYYY-MM-DD` or `YYYYMMDD` leniently. Refused only when the
    /// shape is wrong or no part is valid; a well-formed impossible date
    /// keeps its valid parts, and one whose month is 13 to 31 while its day
    /// is 1 to 12 is read with the two swapped.
    pub fn parse(raw: &str) -> Result<DateParts, FieldError> {
        let (y, mut m, mut d) = date_numbers(raw)?;
        let mut swapped = false;
        // Day and month keyed the other way round (`YYYY-DD-MM`): the
        // "month" cannot be one, the "day" can.
        if written_swapped(m, d) {
            (m, d) = (d, m);
            swapped = true;
        }
        let parts = DateParts::of_numbers(y, m, d, swapped);
        if parts.year.is_none() && parts.month.is_none() && parts.day.is_none() {
            return Err(FieldError::DateRange);
        }
        Ok(parts)
    }

    fn of_numbers(y: u16, m: u16, d: u16, swapped: bool) -> DateParts {
        DateParts {
            year: (1900..=2100).contains(&y).then_some(y),
            month: (1..=12).contains(&m).then_some(m as u8),
            day: (1..=31).contains(&d).then_some(d as u8),
            swapped,
        }
    }

    /// The likely readings of a date whose month as written is impossible
    /// (and cannot be a day written first: [`DateParts::parse`] reads those
    /// swapped), for a node to try beside the parts that are valid. A month
    /// has a first digit of 0 or 1, so a month of 13 to 99 is most often one
    /// whose first digit was mistyped (`48` for `08`; `21` for `01` or `11`)
    /// or whose two digits were swapped (`80` for `08`); `00` says nothing.
    /// Each reading keeps the year and day as [`DateParts::parse`] reads
    /// them, and is left out unless one of them is valid. Empty for a
    /// date whose month is valid.
    pub fn month_readings(raw: &str) -> Vec<DateParts> {
        let Ok((y, m, d)) = date_numbers(raw) else { return Vec::new() };
        if (1..=12).contains(&m) || written_swapped(m, d) {
            return Vec::new();
        }
        let (tens, units) = (m / 10, m % 10);
        let months: &[u16] = match (tens, units) {
            (0, _) => &[],
            (1, u) => &[u],
            (_, 0) => &[10, tens],
            (_, 1) => &[1, 11],
            (_, 2) => &[2, 12],
            (_, u) => &[u],
        };
        months
            .iter()
            .map(|&m| DateParts::of_numbers(y, m, d, false))
            .filter(|p| p.year.is_some() || p.day.is_some())
            .collect()
    }

    /// The parts of a whole date.
    pub fn of(d: Date) -> DateParts {
        DateParts { year: Some(d.year), month: Some(d.month), day: Some(d.day), swapped: false }
    }

    /// The whole date, when it is a real calendar date.
    pub fn full(&self) -> Option<Date> {
        Date::new(self.year?, self.month?, self.day?)
    }
}

/// The year, month and day of `YYYY-MM-DD` or `YYYYMMDD` as written.
fn date_numbers(raw: &str) -> Result<(u16, u16, u16), FieldError> {
    let t = raw.trim().as_bytes();
    let mut digits = [0u8; 8];
    match t.len() {
        10 if t[4] == b'-' && t[7] == b'-' => {
            digits[..4].copy_from_slice(&t[..4]);
            digits[4..6].copy_from_slice(&t[5..7]);
            digits[6..].copy_from_slice(&t[8..]);
        }
        8 => digits.copy_from_slice(t),
        _ => return Err(FieldError::DateFormat),
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(FieldError::DateFormat);
    }
    let num = |r: &[u8]| r.iter().fold(0u16, |acc, &b| acc * 10 + u16::from(b - b'0'));
    Ok((num(&digits[0..4]), num(&digits[4..6]), num(&digits[6..8])))
}

/// Whether a date was written day first: its "month" cannot be one and its
/// "day" can.
fn written_swapped(m: u16, d: u16) -> bool {
    (13..=31).contains(&m) && (1..=12).contains(&d)
}

/// Days in a month of the Gregorian calendar.
pub fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => 29,
        2 => 28,
        _ => 31,
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// A validated National Insurance number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nino {
    /// Prefix letters and six digits, e.g. `AB123456`.
    pub stem: [u8; 8],
    /// Suffix letter A-D, when given.
    pub suffix: Option<u8>,
}

impl Nino {
    /// Validates and canonicalises a National Insurance number. Spaces and
    /// case are ignored; the prefix must satisfy HMRC's rules (first letter not
    /// D F I Q U V; second not D F I O Q U V; not BG GB KN NK NT TN ZZ).
    pub fn parse(raw: &str) -> Result<Nino, FieldError> {
        check_len(raw)?;
        let mut c = [0u8; 9];
        let mut n = 0;
        for b in raw.bytes() {
            if b == b' ' || b == b'-' {
                continue;
            }
            if n == 9 {
                return Err(FieldError::Nino);
            }
            c[n] = b.to_ascii_uppercase();
            n += 1;
        }
        if n != 8 && n != 9 {
            return Err(FieldError::Nino);
        }
        let (p0, p1) = (c[0], c[1]);
        if !p0.is_ascii_uppercase() || !p1.is_ascii_uppercase() || !c[2..8].iter().all(u8::is_ascii_digit) {
            return Err(FieldError::Nino);
        }
        if b"DFIQUV".contains(&p0) || b"DFIOQUV".contains(&p1) {
            return Err(FieldError::Nino);
        }
        if [*b"BG", *b"GB", *b"KN", *b"NK", *b"NT", *b"TN", *b"ZZ"].contains(&[p0, p1]) {
            return Err(FieldError::Nino);
        }
        let suffix = if n == 9 {
            if !b"ABCD".contains(&c[8]) {
                return Err(FieldError::Nino);
            }
            Some(c[8])
        } else {
            None
        };
        let mut stem = [0u8; 8];
        stem.copy_from_slice(&c[..8]);
        Ok(Nino { stem, suffix })
    }
}

impl fmt::Display for Nino {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.stem).map_err(|_| fmt::Error)?)?;
        if let Some(s) = self.suffix {
            write!(f, "{}", s as char)?;
        }
        Ok(())
    }
}

/// A validated UK postcode.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Postcode {
    /// Outward code, e.g. `SW1A`.
    pub outward: String,
    /// Inward code, e.g. `1AA`.
    pub inward: String,
}

impl Postcode {
    /// Validates and canonicalises a UK postcode (spaces and case ignored).
    /// Outward code: A9, A99, AA9, AA99, A9A or AA9A; inward code: 9AA with
    /// the inward letters not C I K M O V. `GIR 0AA` is accepted.
    pub fn parse(raw: &str) -> Result<Postcode, FieldError> {
        check_len(raw)?;
        let s: Vec<u8> = raw.bytes().filter(|b| !b.is_ascii_whitespace()).map(|b| b.to_ascii_uppercase()).collect();
        if !(5..=7).contains(&s.len()) {
            return Err(FieldError::Postcode);
        }
        let (out, inw) = s.split_at(s.len() - 3);
        if out == b"GIR" && inw == b"0AA" {
            return Ok(Postcode { outward: "GIR".into(), inward: "0AA".into() });
        }
        let inward_letter = |b: u8| b.is_ascii_uppercase() && !b"CIKMOV".contains(&b);
        if !(inw[0].is_ascii_digit() && inward_letter(inw[1]) && inward_letter(inw[2])) {
            return Err(FieldError::Postcode);
        }
        let a = |b: &u8| b.is_ascii_uppercase();
        let d = |b: &u8| b.is_ascii_digit();
        let ok = match out {
            [x, y] => a(x) && d(y),
            [x, y, z] => (a(x) && d(y) && d(z)) || (a(x) && a(y) && d(z)) || (a(x) && d(y) && a(z)),
            [w, x, y, z] => a(w) && a(x) && d(y) && (d(z) || a(z)),
            _ => false,
        };
        if !ok || b"QVX".contains(&out[0]) {
            return Err(FieldError::Postcode);
        }
        let to_s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Ok(Postcode { outward: to_s(out), inward: to_s(inw) })
    }

    /// As [`Postcode::parse`], but a postcode whose inward code is invalid
    /// (a typo in its last three characters) keeps its outward code, with
    /// an empty inward code: its district still matches.
    pub fn parse_lenient(raw: &str) -> Result<Postcode, FieldError> {
        match Postcode::parse(raw) {
            Ok(p) => Ok(p),
            Err(FieldError::Postcode) => {
                let s: String = raw.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase();
                // A postcode is ASCII; anything else (a stray byte-order
                // mark, say) is refused, never sliced mid-character.
                if !s.is_ascii() || !(5..=7).contains(&s.len()) {
                    return Err(FieldError::Postcode);
                }
                // Validate the outward code with a stand-in inward code.
                let outward = &s[..s.len() - 3];
                let p = Postcode::parse(&format!("{outward} 1AA"))?;
                Ok(Postcode { outward: p.outward, inward: String::new() })
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the whole postcode is known (not only its district).
    pub fn is_full(&self) -> bool {
        !self.inward.is_empty()
    }

    /// The postcode district: the outward code without a trailing letter
    /// (`SW1A` → `SW1`, `M1` → `M1`).
    pub fn district(&self) -> &str {
        let o = self.outward.as_str();
        if o != "GIR" && o.len() > 2 && o.as_bytes()[o.len() - 1].is_ascii_uppercase() { &o[..o.len() - 1] } else { o }
    }
}

impl fmt::Display for Postcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.outward, self.inward)
    }
}

/// Splits an alias `Forenames/Surname` into its two halves.
pub fn split_alias(raw: &str) -> Result<(&str, &str), FieldError> {
    let (f, s) = raw.split_once('/').ok_or(FieldError::Alias)?;
    if s.contains('/') || f.trim().is_empty() || s.trim().is_empty() {
        return Err(FieldError::Alias);
    }
    Ok((f, s))
}

/// Splits a multi-valued field on `;`, trimming and skipping empty values.
pub fn multi(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(';').map(str::trim).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing the CSV readers: a postcode holding a non-ASCII
    /// character (here a byte-order mark) was cut mid-character and the
    /// node panicked. It is refused like any other bad postcode.
    #[test]
    fn a_postcode_with_non_ascii_characters_is_refused_not_sliced() {
        for raw in ["AB\u{feff}12CD", "\u{feff}AB1 2CD", "ÄB12CD", "AB1 2C\u{e9}"] {
            assert!(Postcode::parse_lenient(raw).is_err(), "{raw:?}");
        }
        assert!(Postcode::parse_lenient("AB1 2CD").is_ok());
    }

    #[test]
    fn folding_table() {
        let cases = [
            ("John", "john"),
            ("  JOHN  ", "john"),
            ("O'Brien", "obrien"),
            ("O\u{2019}Brien", "obrien"),
            ("Smith-Jones", "smith jones"),
            ("Zoë", "zoe"),
            ("Siobhán", "siobhan"),
            ("Ægir Straße", "aegir strasse"),
            ("Łukasz Wałęsa", "lukasz walesa"),
            ("Søren", "soren"),
            ("ＪＯＨＮ", "john"),
            ("Anne-Marie  St. Clair", "anne marie st clair"),
            ("İpek", "ipek"),
            ("ǅemal", "dzemal"),
            ("", ""),
            ("---", ""),
        ];
        for (input, want) in cases {
            assert_eq!(fold(input), want, "fold({input:?})");
        }
    }

    #[test]
    fn forename_table() {
        let cases: [(&str, Result<&str, FieldError>); 8] = [
            ("John", Ok("john")),
            ("John Paul", Ok("john")),
            ("Mr John", Ok("john")),
            ("Dr. Jane Ann", Ok("jane")),
            ("Mary-Jane", Ok("mary")),
            ("J.", Ok("j")),
            ("Mr", Ok("mr")),
            ("  ", Err(FieldError::Empty)),
        ];
        for (input, want) in cases {
            assert_eq!(first_forename(input).as_deref().map_err(|e| *e), want, "first_forename({input:?})");
        }
    }

    #[test]
    fn surname_table() {
        let cases: [(&str, &[&str]); 8] = [
            ("Smith", &["smith"]),
            ("SMITH", &["smith"]),
            ("Smith-Jones", &["smithjones", "smith", "jones"]),
            ("Smith Jones", &["smithjones", "smith", "jones"]),
            ("O'Neill", &["oneill"]),
            ("van der Berg", &["vanderberg", "berg"]),
            ("Smith Jr", &["smith"]),
            ("Smith III OBE", &["smith"]),
        ];
        for (input, want) in cases {
            assert_eq!(surnames(input).unwrap(), want, "surnames({input:?})");
        }
        assert_eq!(surnames(" - "), Err(FieldError::Empty));
    }

    #[test]
    fn nickname_canonicalisation() {
        assert_eq!(canonical_forename("bob"), "robert");
        assert_eq!(canonical_forename("robert"), "robert");
        assert_eq!(canonical_forename("bill"), "william");
        assert_eq!(canonical_forename("peggy"), "margaret");
        assert_eq!(canonical_forename("zebedee"), "zebedee");
    }

    #[test]
    fn dates() {
        assert_eq!(Date::parse("1980-02-29"), Ok(Date { year: 1980, month: 2, day: 29 }));
        assert_eq!(Date::parse(" 2000-02-29 "), Ok(Date { year: 2000, month: 2, day: 29 }));
        assert_eq!(Date::parse("1900-02-29"), Err(FieldError::DateRange));
        assert_eq!(Date::parse("1981-02-29"), Err(FieldError::DateRange));
        assert_eq!(Date::parse("1981-13-01"), Err(FieldError::DateRange));
        assert_eq!(Date::parse("1981-04-31"), Err(FieldError::DateRange));
        assert_eq!(Date::parse("1899-12-31"), Err(FieldError::DateRange));
        assert_eq!(Date::parse("01/02/1980"), Err(FieldError::DateFormat));
        assert_eq!(Date::parse("1980-1-2"), Err(FieldError::DateFormat));
        assert_eq!(Date::parse("198a-01-02"), Err(FieldError::DateFormat));
        assert_eq!(Date::parse("1980-01-02").unwrap().to_string(), "1980-01-02");
    }

    /// An impossible month's likely readings: a first digit mistyped, or
    /// the two digits swapped; none for a valid month, a day written first
    /// or `00`.
    #[test]
    fn month_readings_table() {
        let months = |raw: &str| -> Vec<(Option<u16>, Option<u8>, Option<u8>)> {
            DateParts::month_readings(raw).iter().map(|p| (p.year, p.month, p.day)).collect()
        };
        let d = |y: u16, m: u8, x: u8| (Some(y), Some(m), Some(x));
        assert_eq!(months("1960-48-27"), vec![d(1960, 8, 27)]);
        assert_eq!(months("1983-80-21"), vec![d(1983, 10, 21), d(1983, 8, 21)]);
        assert_eq!(months("2001-51-28"), vec![d(2001, 1, 28), d(2001, 11, 28)]);
        assert_eq!(months("1981-42-17"), vec![d(1981, 2, 17), d(1981, 12, 17)]);
        assert_eq!(months("1990-16-24"), vec![d(1990, 6, 24)]);
        assert_eq!(months("4995-93-10"), vec![(None, Some(3), Some(10))]);
        assert_eq!(months("19820609"), vec![]);
        assert_eq!(months("1982-06-09"), vec![]);
        assert_eq!(months("1990-16-04"), vec![], "read day first");
        assert_eq!(months("1990-00-04"), vec![]);
        assert_eq!(months("4995-93-40"), vec![], "nothing else valid");
        assert_eq!(months("1982/60/09"), vec![]);
    }

    #[test]
    fn nino_table() {
        let ok = [
            ("AB123456C", "AB123456C"),
            ("ab 12 34 56 c", "AB123456C"),
            ("AB123456", "AB123456"),
            ("JG-10-32-41-A", "JG103241A"),
        ];
        for (input, want) in ok {
            assert_eq!(Nino::parse(input).map(|n| n.to_string()), Ok(want.to_string()), "{input}");
        }
        let bad = [
            "",
            "A1234567C",
            "AB12345C",
            "AB123456E",
            "DA123456A",
            "AO123456A",
            "GB123456A",
            "TN123456A",
            "AB1234567C",
            "AB123456CC",
            "ÄB123456C",
        ];
        for input in bad {
            assert_eq!(Nino::parse(input), Err(FieldError::Nino), "{input}");
        }
    }

    #[test]
    fn postcode_table() {
        let ok = [
            ("SW1A 1AA", "SW1A 1AA", "SW1"),
            ("sw1a1aa", "SW1A 1AA", "SW1"),
            ("M1 1AE", "M1 1AE", "M1"),
            ("B33 8TH", "B33 8TH", "B33"),
            ("CR2 6XH", "CR2 6XH", "CR2"),
            ("DN55 1PT", "DN55 1PT", "DN55"),
            ("W1A 0AX", "W1A 0AX", "W1"),
            ("EC1A 1BB", "EC1A 1BB", "EC1"),
            ("GIR 0AA", "GIR 0AA", "GIR"),
        ];
        for (input, want, district) in ok {
            let p = Postcode::parse(input).unwrap();
            assert_eq!(p.to_string(), want, "{input}");
            assert_eq!(p.district(), district, "{input}");
        }
        let bad = ["", "SW1A", "1AA SW1", "SW1A 1CA", "QA1 1AA", "SW1A 1A", "ABCDE 1AA", "12345"];
        for input in bad {
            assert_eq!(Postcode::parse(input), Err(FieldError::Postcode), "{input}");
        }
    }

    #[test]
    fn aliases_and_multi_values() {
        assert_eq!(split_alias("John/Smith"), Ok(("John", "Smith")));
        assert_eq!(split_alias("John Smith"), Err(FieldError::Alias));
        assert_eq!(split_alias("/Smith"), Err(FieldError::Alias));
        assert_eq!(split_alias("a/b/c"), Err(FieldError::Alias));
        assert_eq!(multi(" a; ;b ;").collect::<Vec<_>>(), vec!["a", "b"]);
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn folding_is_idempotent(s in "\\PC{0,40}") {
                let once = fold(&s);
                prop_assert_eq!(fold(&once), once.clone());
                prop_assert!(!once.starts_with(' ') && !once.ends_with(' ') && !once.contains("  "));
            }

            #[test]
            fn names_are_idempotent(s in "[ A-Za-zÀ-ÿİıßŁł'.-]{0,30}") {
                if let Ok(f) = first_forename(&s) {
                    prop_assert_eq!(first_forename(&f), Ok(f.clone()));
                }
                if let Ok(ss) = surnames(&s) {
                    prop_assert_eq!(&surnames(&ss[0]).unwrap()[0], &ss[0]);
                }
            }

            #[test]
            fn identifiers_and_dates_are_idempotent(
                n in "[A-Z]{2}[0-9]{6}[A-D]?",
                p in "[A-Z]{1,2}[0-9]{1,2} ?[0-9][A-Z]{2}",
                y in 1900u16..2100, m in 1u8..13, d in 1u8..32,
            ) {
                if let Ok(x) = Nino::parse(&n) {
                    prop_assert_eq!(Nino::parse(&x.to_string()), Ok(x));
                }
                if let Ok(x) = Postcode::parse(&p) {
                    prop_assert_eq!(Postcode::parse(&x.to_string()), Ok(x));
                }
                if let Some(x) = Date::new(y, m, d) {
                    prop_assert_eq!(Date::parse(&x.to_string()), Ok(x));
                }
            }
        }
    }

    #[test]
    fn overlong_fields_are_refused() {
        let long = "a".repeat(MAX_FIELD_LEN + 1);
        assert_eq!(first_forename(&long), Err(FieldError::TooLong(MAX_FIELD_LEN)));
        assert_eq!(Nino::parse(&long), Err(FieldError::TooLong(MAX_FIELD_LEN)));
    }
}
