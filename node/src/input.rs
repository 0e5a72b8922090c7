//! Streaming readers for the CSV inputs (docs/formats.md), and the report of
//! what was refused.
//!
//! Files are read a row at a time, so a 13M-row extract needs no more memory
//! than one row plus a duplicate-id set; a line longer than [`MAX_LINE`]
//! bytes stops the read (a file without line breaks is not a CSV file).
//!
//! A problem with one field is a *warning*: the value is left out and the
//! row is used without it. A row that cannot be used at all (missing id,
//! duplicate id, unknown category, wrong number of fields, no match key) is
//! an *error*: the row is refused. Both land in the [`Report`], which names
//! row, line and field and never repeats a value. A problem with the file as
//! a whole (unreadable, wrong header, an overlong line) is an [`InputError`].

use serde::Serialize;
use std::collections::HashMap;
use std::io::{self, Read};

use crate::category;
use crate::keys::{FieldIssue, Identity, Phonetic, RawIdentity};
use crate::normalize::{Date, MAX_FIELD_LEN};

/// Longest line accepted, in bytes.
pub const MAX_LINE: usize = 64 * 1024;
/// Most issues listed in a report; beyond this they are counted only.
pub const MAX_LISTED_ISSUES: usize = 100_000;

/// Columns of a force roster, in the documented order.
pub const ROSTER_COLUMNS: &[&str] =
    &["employee_id", "forenames", "surname", "previous_surnames", "date_of_birth", "ni_number", "postcode", "role"];
/// Columns of a national extract, in the documented order.
pub const EXTRACT_COLUMNS: &[&str] = &[
    "record_id",
    "category",
    "event_date",
    "forenames",
    "surname",
    "alias_names",
    "date_of_birth",
    "alt_dates_of_birth",
    "ni_number",
    "postcode",
];
/// Columns of an applicants file for a pre-employment check.
pub const APPLICANT_COLUMNS: &[&str] =
    &["applicant_id", "forenames", "surname", "previous_surnames", "date_of_birth", "ni_number", "postcode"];

/// A problem with a file as a whole: nothing from it should be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The file could not be read.
    #[error("cannot read {file}: {source}")]
    Io {
        /// File name.
        file: String,
        /// Cause.
        source: io::Error,
    },
    /// The header row is not the documented one.
    #[error("{file}: header {problem} (expected columns: {expected})")]
    Header {
        /// File name.
        file: String,
        /// What is wrong.
        problem: String,
        /// The documented columns.
        expected: String,
    },
    /// A line is too long to be a row of this file.
    #[error("{file}: line {line} is longer than {MAX_LINE} bytes; this is not a {kind} CSV file")]
    LineTooLong {
        /// File name.
        file: String,
        /// Line number.
        line: u64,
        /// What the file should have been.
        kind: &'static str,
    },
}

/// One refused field or row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// Data row number, 1 for the first row after the header.
    pub row: u64,
    /// Line number in the file (1 is the header).
    pub line: u64,
    /// The column concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What was wrong (never the value).
    pub reason: String,
}

/// The machine-readable account of one input file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// File name as given.
    pub file: String,
    /// `roster`, `extract` or `applicants`.
    pub kind: &'static str,
    /// Data rows read.
    pub rows: u64,
    /// Rows used (possibly with some fields left out).
    pub accepted: u64,
    /// Rows refused.
    pub refused: u64,
    /// Fields left out, with the row still used.
    pub warnings: Vec<Issue>,
    /// Rows refused.
    pub errors: Vec<Issue>,
    /// Warnings and errors counted but not listed (beyond the listing bound).
    pub unlisted_issues: u64,
    /// Number of warnings in all.
    pub warning_count: u64,
}

impl Report {
    /// An empty report for a file.
    pub fn new(file: &str, kind: &'static str) -> Report {
        Report { file: file.to_string(), kind, ..Default::default() }
    }

    fn listed(&self) -> usize {
        self.warnings.len() + self.errors.len()
    }

    fn warn(&mut self, issue: Issue) {
        self.warning_count += 1;
        if self.listed() < MAX_LISTED_ISSUES {
            self.warnings.push(issue);
        } else {
            self.unlisted_issues += 1;
        }
    }

    fn error(&mut self, issue: Issue) {
        self.refused += 1;
        if self.listed() < MAX_LISTED_ISSUES {
            self.errors.push(issue);
        } else {
            self.unlisted_issues += 1;
        }
    }

    /// One line for a person: rows read, used, refused, fields left out.
    pub fn summary(&self) -> String {
        format!(
            "{}: {} rows read, {} used, {} refused, {} fields left out",
            self.file, self.rows, self.accepted, self.refused, self.warning_count
        )
    }
}

/// Where a row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// Data row number (1-based).
    pub row: u64,
    /// Line number in the file.
    pub line: u64,
}

/// One usable roster row.
#[derive(Debug, Clone)]
pub struct RosterRow {
    /// Where it came from.
    pub pos: Pos,
    /// The force's employee number.
    pub employee_id: String,
    /// Forenames as written (kept locally for the inbox).
    pub forenames: String,
    /// Surname as written (kept locally for the inbox).
    pub surname: String,
    /// Role as written.
    pub role: String,
    /// The normalised identity.
    pub identity: Identity,
}

/// One usable national record.
#[derive(Debug, Clone)]
pub struct ExtractRow {
    /// Where it came from.
    pub pos: Pos,
    /// The custodian's record id.
    pub record_id: String,
    /// Category from the vocabulary.
    pub category: String,
    /// Event date, when given and valid.
    pub event_date: Option<Date>,
    /// The normalised identity.
    pub identity: Identity,
}

/// One usable applicant row.
#[derive(Debug, Clone)]
pub struct ApplicantRow {
    /// Where it came from.
    pub pos: Pos,
    /// The force's applicant reference.
    pub applicant_id: String,
    /// Forenames as written.
    pub forenames: String,
    /// Surname as written.
    pub surname: String,
    /// The normalised identity.
    pub identity: Identity,
}

/// A reader that refuses lines longer than [`MAX_LINE`] bytes, so that a
/// file without line breaks cannot be buffered whole.
struct LineLimit<R> {
    inner: R,
    run: usize,
    tripped: bool,
}

impl<R: Read> Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if b == b'\n' {
                self.run = 0;
            } else {
                self.run += 1;
                if self.run > MAX_LINE {
                    self.tripped = true;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
                }
            }
        }
        Ok(n)
    }
}

struct Csv<R: Read> {
    rdr: csv::Reader<LineLimit<R>>,
    file: String,
    kind: &'static str,
    /// Column index in the file of each documented column.
    map: Vec<usize>,
    width: usize,
    record: csv::ByteRecord,
    fields: Vec<String>,
}

enum Next {
    Row(Pos),
    /// A refused row, with its id (first documented column) when readable.
    Refused(Option<String>),
    End,
}

impl<R: Read> Csv<R> {
    fn open(inner: R, file: &str, kind: &'static str, columns: &[&str]) -> Result<Self, InputError> {
        let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(LineLimit {
            inner,
            run: 0,
            tripped: false,
        });
        let mut header = csv::ByteRecord::new();
        let expected = columns.join(",");
        let bad = |problem: String| InputError::Header { file: file.to_string(), problem, expected: expected.clone() };
        match rdr.read_byte_record(&mut header) {
            Ok(true) => {}
            Ok(false) => return Err(bad("is missing: the file is empty".into())),
            Err(e) => return Err(Self::fatal(&rdr, e, file, kind)),
        }
        let mut names = Vec::with_capacity(header.len());
        for (i, h) in header.iter().enumerate() {
            let h = if i == 0 { h.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(h) } else { h };
            let name = std::str::from_utf8(h).map_err(|_| bad(format!("column {} is not UTF-8", i + 1)))?;
            names.push(name.trim().to_string());
        }
        for n in &names {
            if !columns.contains(&n.as_str()) {
                return Err(bad(format!("has an unknown column {n:?}")));
            }
        }
        let mut map = Vec::with_capacity(columns.len());
        for c in columns {
            let found: Vec<usize> = names.iter().enumerate().filter(|(_, n)| n == c).map(|(i, _)| i).collect();
            match found.as_slice() {
                [i] => map.push(*i),
                [] => return Err(bad(format!("is missing column {c:?}"))),
                _ => return Err(bad(format!("repeats column {c:?}"))),
            }
        }
        Ok(Csv {
            rdr,
            file: file.to_string(),
            kind,
            map,
            width: names.len(),
            record: csv::ByteRecord::new(),
            fields: vec![String::new(); columns.len()],
        })
    }

    fn fatal(rdr: &csv::Reader<LineLimit<R>>, e: csv::Error, file: &str, kind: &'static str) -> InputError {
        let line = e.position().map_or(0, |p| p.line());
        if rdr.get_ref().tripped {
            return InputError::LineTooLong { file: file.to_string(), line: line.max(1), kind };
        }
        let source = match e.into_kind() {
            csv::ErrorKind::Io(io) => io,
            other => io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
        };
        InputError::Io { file: file.to_string(), source }
    }

    /// Reads the next row into `self.fields` (documented column order).
    fn next(&mut self, columns: &[&str], report: &mut Report) -> Result<Next, InputError> {
        match self.rdr.read_byte_record(&mut self.record) {
            Ok(true) => {}
            Ok(false) => return Ok(Next::End),
            Err(e) => {
                if self.rdr.get_ref().tripped {
                    let line = self.rdr.position().line() + 1;
                    return Err(InputError::LineTooLong { file: self.file.clone(), line, kind: self.kind });
                }
                return Err(Self::fatal(&self.rdr, e, &self.file, self.kind));
            }
        }
        report.rows += 1;
        let line = self.record.position().map_or(0, |p| p.line());
        let pos = Pos { row: report.rows, line };
        let id = self.record.get(self.map[0]).and_then(|b| std::str::from_utf8(b).ok()).map(|s| s.trim().to_string());
        if self.record.len() != self.width {
            report.error(Issue {
                row: pos.row,
                line,
                field: None,
                reason: format!("row has {} fields, the header has {}", self.record.len(), self.width),
            });
            return Ok(Next::Refused(id));
        }
        for (slot, &i) in self.map.iter().enumerate() {
            let raw = &self.record[i];
            let field = &mut self.fields[slot];
            field.clear();
            if raw.len() > MAX_FIELD_LEN * 4 {
                report.error(Issue {
                    row: pos.row,
                    line,
                    field: Some(columns[slot].to_string()),
                    reason: format!("longer than {} bytes", MAX_FIELD_LEN * 4),
                });
                return Ok(Next::Refused(id));
            }
            match std::str::from_utf8(raw) {
                Ok(s) => field.push_str(s.trim()),
                Err(_) => {
                    report.error(Issue {
                        row: pos.row,
                        line,
                        field: Some(columns[slot].to_string()),
                        reason: "not valid UTF-8".into(),
                    });
                    return Ok(Next::Refused(id));
                }
            }
        }
        Ok(Next::Row(pos))
    }
}

/// Tracks ids seen in a file, to refuse duplicates.
#[derive(Default)]
struct Seen(HashMap<u64, u64>);

impl Seen {
    /// The row where `id` was first seen, or `None` (and records it).
    fn first(&mut self, id: &str, row: u64) -> Option<u64> {
        let h = blake3::hash(id.as_bytes());
        let k = u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or_default());
        match self.0.entry(k) {
            std::collections::hash_map::Entry::Occupied(e) => Some(*e.get()),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(row);
                None
            }
        }
    }
}

fn check_id(id: &str, column: &str, pos: Pos, seen: &mut Seen, report: &mut Report) -> bool {
    let reason = if id.is_empty() {
        "required but empty".to_string()
    } else if id.len() > 64 {
        "longer than 64 bytes".to_string()
    } else if id.chars().any(char::is_control) {
        "contains control characters".to_string()
    } else if let Some(first) = seen.first(id, pos.row) {
        format!("duplicate {column}; first used at row {first}")
    } else {
        return true;
    };
    report.error(Issue { row: pos.row, line: pos.line, field: Some(column.to_string()), reason });
    false
}

fn push_field_issues(issues: &[FieldIssue], pos: Pos, report: &mut Report) {
    for i in issues {
        report.warn(Issue {
            row: pos.row,
            line: pos.line,
            field: Some(i.field.to_string()),
            reason: i.reason.to_string(),
        });
    }
}

/// Whether any match key can be formed, or else refuses the row, saying
/// which fields were unusable.
fn keyable(id: &Identity, issues: &[FieldIssue], pos: Pos, report: &mut Report) -> bool {
    if id.can_match() {
        return true;
    }
    let mut reason =
        "no match key can be formed: needs a valid NI number, or forename, surname and date of birth".to_string();
    if !issues.is_empty() {
        let fields: Vec<String> = issues.iter().map(|i| format!("{} ({})", i.field, i.reason)).collect();
        reason.push_str("; unusable: ");
        reason.push_str(&fields.join(", "));
    }
    report.error(Issue { row: pos.row, line: pos.line, field: None, reason });
    false
}

/// What differs between the three kinds of file.
struct Layout<T> {
    kind: &'static str,
    columns: &'static [&'static str],
    /// Checks that refuse a row before its identity is read (the
    /// documented column and reason).
    precheck: fn(&[String]) -> Option<(&'static str, String)>,
    /// The identity fields of a row.
    raw: fn(&[String]) -> RawIdentity<'_>,
    /// Builds the row; may add field issues (warnings).
    make: fn(&[String], Pos, Identity, &mut Vec<FieldIssue>) -> T,
}

/// The one reading loop: header, line and field checks, ids, prechecks,
/// identity, keys, warnings, then `on_row`; refusals go to the report and
/// their ids (when readable) to `on_refused`.
fn read_rows<R: Read, T>(
    inner: R,
    file: &str,
    report: &mut Report,
    layout: &Layout<T>,
    mut on_row: impl FnMut(T),
    mut on_refused: impl FnMut(&str),
) -> Result<(), InputError> {
    let columns = layout.columns;
    let mut csv = Csv::open(inner, file, layout.kind, columns)?;
    let mut ph = Phonetic::default();
    let mut seen = Seen::default();
    let mut issues = Vec::new();
    loop {
        let pos = match csv.next(columns, report)? {
            Next::End => return Ok(()),
            Next::Refused(id) => {
                if let Some(id) = id.filter(|i| !i.is_empty()) {
                    on_refused(&id);
                }
                continue;
            }
            Next::Row(p) => p,
        };
        let f = &csv.fields;
        if !check_id(&f[0], columns[0], pos, &mut seen, report) {
            if !f[0].is_empty() {
                on_refused(&f[0]);
            }
            continue;
        }
        if let Some((field, reason)) = (layout.precheck)(f) {
            report.error(Issue { row: pos.row, line: pos.line, field: Some(field.into()), reason });
            on_refused(&f[0]);
            continue;
        }
        issues.clear();
        let identity = Identity::from_raw(&(layout.raw)(f), &mut ph, &mut issues);
        if !keyable(&identity, &issues, pos, report) {
            on_refused(&f[0]);
            continue;
        }
        let row = (layout.make)(f, pos, identity, &mut issues);
        push_field_issues(&issues, pos, report);
        report.accepted += 1;
        on_row(row);
    }
}

fn no_precheck(_: &[String]) -> Option<(&'static str, String)> {
    None
}

fn person_fields(f: &[String]) -> RawIdentity<'_> {
    RawIdentity {
        forenames: &f[1],
        surname: &f[2],
        previous_surnames: &f[3],
        date_of_birth: &f[4],
        ni_number: &f[5],
        postcode: &f[6],
        ..Default::default()
    }
}

const ROSTER: Layout<RosterRow> = Layout {
    kind: "roster",
    columns: ROSTER_COLUMNS,
    precheck: no_precheck,
    raw: person_fields,
    make: |f, pos, identity, _| RosterRow {
        pos,
        employee_id: f[0].clone(),
        forenames: f[1].clone(),
        surname: f[2].clone(),
        role: f[7].clone(),
        identity,
    },
};

const APPLICANTS: Layout<ApplicantRow> = Layout {
    kind: "applicants",
    columns: APPLICANT_COLUMNS,
    precheck: no_precheck,
    raw: person_fields,
    make: |f, pos, identity, _| ApplicantRow {
        pos,
        applicant_id: f[0].clone(),
        forenames: f[1].clone(),
        surname: f[2].clone(),
        identity,
    },
};

const EXTRACT: Layout<ExtractRow> = Layout {
    kind: "extract",
    columns: EXTRACT_COLUMNS,
    precheck: |f| {
        if category::is_known(&f[1]) {
            None
        } else if f[1].is_empty() {
            Some(("category", "required but empty".to_string()))
        } else {
            Some(("category", "not in the category vocabulary (docs/formats.md)".to_string()))
        }
    },
    raw: |f| RawIdentity {
        forenames: &f[3],
        surname: &f[4],
        aliases: &f[5],
        date_of_birth: &f[6],
        alt_dates_of_birth: &f[7],
        ni_number: &f[8],
        postcode: &f[9],
        ..Default::default()
    },
    make: |f, pos, identity, issues| {
        let event_date = if f[2].is_empty() {
            None
        } else {
            match Date::parse(&f[2]) {
                Ok(d) => Some(d),
                Err(e) => {
                    issues.push(FieldIssue { field: "event_date", reason: e.into() });
                    None
                }
            }
        };
        ExtractRow { pos, record_id: f[0].clone(), category: f[1].clone(), event_date, identity }
    },
};

/// Reads a force roster, calling `on_row` for every usable row.
pub fn read_roster<R: Read>(
    inner: R,
    file: &str,
    report: &mut Report,
    on_row: impl FnMut(RosterRow),
) -> Result<(), InputError> {
    read_rows(inner, file, report, &ROSTER, on_row, |_| {})
}

/// As [`read_roster`], also calling `on_refused(employee_id)` for every
/// refused row whose id could be read (a duplicate id is reported each
/// time it repeats), so a sync can keep those employees' previous
/// enrolment. The id is given to the caller only, never to the report.
pub fn read_roster_with<R: Read>(
    inner: R,
    file: &str,
    report: &mut Report,
    on_row: impl FnMut(RosterRow),
    on_refused: impl FnMut(&str),
) -> Result<(), InputError> {
    read_rows(inner, file, report, &ROSTER, on_row, on_refused)
}

/// Reads a national extract, calling `on_row` for every usable row.
pub fn read_extract<R: Read>(
    inner: R,
    file: &str,
    report: &mut Report,
    on_row: impl FnMut(ExtractRow),
) -> Result<(), InputError> {
    read_rows(inner, file, report, &EXTRACT, on_row, |_| {})
}

/// As [`read_extract`], also calling `on_refused(record_id)` for every
/// refused row whose id could be read, so a full feed does not withdraw a
/// record just because this extract's row for it is broken.
pub fn read_extract_with<R: Read>(
    inner: R,
    file: &str,
    report: &mut Report,
    on_row: impl FnMut(ExtractRow),
    on_refused: impl FnMut(&str),
) -> Result<(), InputError> {
    read_rows(inner, file, report, &EXTRACT, on_row, on_refused)
}

/// Reads an applicants file, calling `on_row` for every usable row.
pub fn read_applicants<R: Read>(
    inner: R,
    file: &str,
    report: &mut Report,
    on_row: impl FnMut(ApplicantRow),
) -> Result<(), InputError> {
    read_rows(inner, file, report, &APPLICANTS, on_row, |_| {})
}

/// The ids (first documented column) of every row of a roster or extract
/// file, hashed to 64 bits, without normalising anything: a cheap first
/// pass that tells a full sync or feed what the file still contains. The
/// header and line lengths are checked as in the full readers.
pub fn read_ids<R: Read>(
    inner: R,
    file: &str,
    kind: &'static str,
) -> Result<std::collections::HashSet<u64>, InputError> {
    let columns = match kind {
        "roster" => ROSTER_COLUMNS,
        "extract" => EXTRACT_COLUMNS,
        _ => APPLICANT_COLUMNS,
    };
    let mut csv = Csv::open(inner, file, kind, columns)?;
    let mut report = Report::new(file, kind);
    let mut ids = std::collections::HashSet::new();
    loop {
        match csv.next(columns, &mut report)? {
            Next::End => return Ok(ids),
            Next::Refused(Some(id)) => {
                ids.insert(id_hash(&id));
            }
            Next::Refused(None) => {}
            Next::Row(_) => {
                ids.insert(id_hash(&csv.fields[0]));
            }
        }
    }
}

/// The 64-bit hash used for id sets.
pub fn id_hash(id: &str) -> u64 {
    let h = blake3::hash(id.trim().as_bytes());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or_default())
}

/// Opens a file for one of the readers above.
pub fn open(path: &std::path::Path) -> Result<std::io::BufReader<std::fs::File>, InputError> {
    std::fs::File::open(path)
        .map(|f| std::io::BufReader::with_capacity(1 << 16, f))
        .map_err(|source| InputError::Io { file: path.display().to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "employee_id,forenames,surname,previous_surnames,date_of_birth,ni_number,postcode,role\n";

    fn roster(text: &str) -> (Result<(), InputError>, Report, Vec<RosterRow>) {
        let mut report = Report::new("r.csv", "roster");
        let mut rows = Vec::new();
        let res = read_roster(text.as_bytes(), "r.csv", &mut report, |r| rows.push(r));
        (res, report, rows)
    }

    #[test]
    fn good_rows_are_read() {
        let (res, report, rows) = roster(&format!(
            "{HEADER}E1,John,Smith,,1980-01-02,AB123456C,SW1A 1AA,officer\nE2,Jane,Doe,Roe,1990-05-06,,,staff\n"
        ));
        res.unwrap();
        assert_eq!((report.rows, report.accepted, report.refused), (2, 2, 0));
        assert_eq!(rows[1].identity.names.len(), 2);
        assert_eq!(rows[0].pos, Pos { row: 1, line: 2 });
    }

    #[test]
    fn bad_fields_warn_bad_rows_are_refused_and_nothing_is_silent() {
        let text = format!(
            "{HEADER}E1,John,Smith,,1980-01-02,NOTANINO,nowhere,officer\n\
             ,Ann,Jones,,1970-01-01,,,staff\n\
             E3,Tom,Brown,,not-a-date,,,staff\n\
             E1,Dup,Licate,,1980-01-02,,,staff\n\
             E5,Short,Row\n\
             E6,,,,,AB123456C,,staff\n"
        );
        let (res, report, rows) = roster(&text);
        res.unwrap();
        assert_eq!(report.rows, 6);
        assert_eq!(report.accepted, 2, "{report:#?}");
        assert_eq!(report.refused, 4);
        assert_eq!(rows.iter().map(|r| r.employee_id.as_str()).collect::<Vec<_>>(), vec!["E1", "E6"]);
        let w: Vec<_> = report.warnings.iter().map(|i| (i.row, i.field.clone().unwrap_or_default())).collect();
        assert!(w.contains(&(1, "ni_number".into())) && w.contains(&(1, "postcode".into())));
        assert!(w.contains(&(6, "forenames".into())));
        let e: Vec<_> = report.errors.iter().map(|i| (i.row, i.line, i.reason.clone())).collect();
        assert!(e.iter().any(|(r, l, why)| *r == 2 && *l == 3 && why.contains("required")));
        assert!(e.iter().any(|(r, _, why)| *r == 3
            && why.contains("no match key")
            && why.contains("date_of_birth (not a date in the form YYYY-MM-DD)")));
        assert!(e.iter().any(|(r, _, why)| *r == 4 && why.contains("first used at row 1")));
        assert!(e.iter().any(|(r, _, why)| *r == 5 && why.contains("3 fields")));
        let json = serde_json::to_string(&report).unwrap();
        for secret in ["NOTANINO", "nowhere", "not-a-date", "Dup", "Licate"] {
            assert!(!json.contains(secret), "report repeats a value");
        }
    }

    #[test]
    fn refused_ids_reach_the_caller_but_not_the_report() {
        let text =
            format!("{HEADER}E1,John,Smith,,1980-01-02,,,x\nE2,Ann,Lee,,bad,,,x\nE1,J,S,,1980-01-02,,,x\nE4,Short\n");
        let mut report = Report::new("r", "roster");
        let mut refused = Vec::new();
        read_roster_with(text.as_bytes(), "r", &mut report, |_| {}, |id| refused.push(id.to_string())).unwrap();
        assert_eq!(refused, vec!["E2", "E1", "E4"]);
        let json = serde_json::to_string(&report).unwrap();
        assert!(!json.contains("E2") && !json.contains("E4"));
    }

    #[test]
    fn headers_are_checked() {
        for (text, want) in [
            ("", "empty"),
            ("employee_id,forenames\n", "missing column \"surname\""),
            (
                "employee_id,forenames,surname,previous_surnames,date_of_birth,ni_number,postcode,role,salary\n",
                "unknown column \"salary\"",
            ),
        ] {
            let (res, _, _) = roster(text);
            let msg = res.unwrap_err().to_string();
            assert!(msg.contains(want), "{msg}");
        }
        // reordered columns and a byte-order mark are fine
        let text = "\u{feff}role,employee_id,forenames,surname,previous_surnames,date_of_birth,ni_number,postcode\nofficer,E1,John,Smith,,1980-01-02,,\n";
        let (res, report, rows) = roster(text);
        res.unwrap();
        assert_eq!((report.accepted, rows[0].role.as_str()), (1, "officer"));
    }

    #[test]
    fn garbage_does_not_exhaust_memory_or_panic() {
        let garbage: Vec<u8> = (0..(MAX_LINE * 3)).map(|i| (i * 7919 % 251) as u8).filter(|b| *b != b'\n').collect();
        let mut report = Report::new("g", "roster");
        let res = read_roster(&garbage[..], "g", &mut report, |_| {});
        assert!(res.is_err());
        let mut text = HEADER.as_bytes().to_vec();
        text.extend_from_slice(b"E1,\xff\xfe,Smith,,1980-01-02,,,x\n");
        let mut report = Report::new("g", "roster");
        read_roster(&text[..], "g", &mut report, |_| {}).unwrap();
        assert_eq!(report.errors[0].field.as_deref(), Some("forenames"));
        assert_eq!(report.errors[0].reason, "not valid UTF-8");
    }

    #[test]
    fn extract_rows_and_categories() {
        let text = "record_id,category,event_date,forenames,surname,alias_names,date_of_birth,alt_dates_of_birth,ni_number,postcode\n\
            R1,violence,2020-01-01,John,Smith,Jon/Smyth,1980-01-02,1980-02-01,,\n\
            R2,parking,2020-01-01,John,Smith,,1980-01-02,,,\n\
            R3,drugs,someday,John,Smith,,1980-01-02,,,\n";
        let mut report = Report::new("x", "extract");
        let mut rows = Vec::new();
        read_extract(text.as_bytes(), "x", &mut report, |r| rows.push(r)).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].identity.names.len(), 2);
        assert_eq!(rows[0].identity.dobs.len(), 2);
        assert_eq!(report.errors[0].field.as_deref(), Some("category"));
        assert_eq!(report.warnings[0].field.as_deref(), Some("event_date"));
        assert!(rows[1].event_date.is_none());
    }
}
