//! Streaming readers for the CSV inputs (docs/formats.md), and the report of
//! what was refused.
//!
//! Every file is read twice, a row at a time, so a 13M-row extract needs no
//! more memory than one row plus a set of 64-bit id hashes:
//!
//! 1. [`scan`] checks the file as a whole (readable, the documented header,
//!    no record longer than [`MAX_RECORD`] bytes, quoted newlines included)
//!    and notes which ids occur more than once. A file that fails here is
//!    refused before anything is sent.
//! 2. The readers ([`read_roster`], [`read_extract`], [`read_applicants`])
//!    normalise each row. A row whose id occurs more than once is held back
//!    to the end of the file; every occurrence of a duplicated id is then
//!    refused, and none is used.
//!
//! A problem with one field is a *warning*: the value is left out and the
//! row is used without it. A row that cannot be used at all (missing id,
//! duplicate id, unknown category, wrong number of fields, no match key) is
//! an *error*: the row is refused. Both land in the [`Report`], which names
//! row, physical line and field and never repeats a value. A problem with
//! the file as a whole is an [`InputError`].

use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::io::{self, Read};

use vigil_identity::category;
use vigil_identity::keys::{FieldIssue, Identity, Phonetic, RawIdentity};
use vigil_identity::normalize::{Date, MAX_FIELD_LEN};

/// Longest record accepted, in bytes (newlines inside quoted fields
/// included).
pub const MAX_RECORD: usize = 64 * 1024;
/// Most issues listed in a report; beyond this they are counted only.
pub const MAX_LISTED_ISSUES: usize = 100_000;

/// Columns of a force roster, in the documented order (the last,
/// `previous_postcodes`, may be left out of the header).
pub const ROSTER_COLUMNS: &[&str] = &[
    "employee_id",
    "forenames",
    "surname",
    "previous_surnames",
    "date_of_birth",
    "ni_number",
    "postcode",
    "role",
    "previous_postcodes",
];
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
/// Columns of an applicants file for a pre-employment check (the last,
/// `previous_postcodes`, may be left out of the header).
pub const APPLICANT_COLUMNS: &[&str] = &[
    "applicant_id",
    "forenames",
    "surname",
    "previous_surnames",
    "date_of_birth",
    "ni_number",
    "postcode",
    "previous_postcodes",
];
/// Columns a header may leave out: their values are then empty. Files
/// written before they existed stay readable.
pub const OPTIONAL_COLUMNS: &[&str] = &["previous_postcodes"];

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
    /// A record is too long to be a row of this file.
    #[error(
        "{file}: the record starting at line {line} is longer than {MAX_RECORD} bytes; this is not a {kind} CSV file"
    )]
    RecordTooLong {
        /// File name.
        file: String,
        /// Physical line (1 is the header) where the record starts.
        line: u64,
        /// What the file should have been.
        kind: &'static str,
    },
    /// The file changed between the check and the read (rows or ids differ).
    #[error("{file} changed while it was being read (at line {line}); read it again from a file nobody is writing")]
    Changed {
        /// File name.
        file: String,
        /// Physical line where the difference was seen.
        line: u64,
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
    /// Why the file was refused as a whole (nothing of it was used), or why
    /// reading stopped part-way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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

    /// Puts warnings and errors in row order (held-back rows are judged
    /// at the end of the file).
    fn sort(&mut self) {
        self.warnings.sort_by_key(|i| i.row);
        self.errors.sort_by_key(|i| i.row);
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

/// Where the bytes of a CSV file are, as the CSV parser will see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CsvState {
    /// At the start of a field.
    FieldStart,
    /// Inside a field that did not start with a quote.
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// Just after a quote inside a quoted field (its end, or the first of
    /// an escaped pair).
    AfterQuote,
}

/// A reader that refuses any record longer than [`MAX_RECORD`] bytes, so
/// that neither a file without line breaks nor a huge quoted field with
/// newlines inside can be buffered whole. It follows quoting as the CSV
/// parser does (a quote is special only at the start of a field) and
/// counts physical lines, to name the line where the long record starts.
struct RecordLimit<R> {
    inner: R,
    state: CsvState,
    /// Bytes of the current record so far.
    run: usize,
    /// Physical line being read (1 is the first).
    line: u64,
    /// Physical line where the current record started.
    record_line: u64,
    tripped: bool,
}

impl<R> RecordLimit<R> {
    fn new(inner: R) -> Self {
        RecordLimit { inner, state: CsvState::FieldStart, run: 0, line: 1, record_line: 1, tripped: false }
    }
}

impl<R: Read> Read for RecordLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tripped {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "record too long"));
        }
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            let end_of_record = match (self.state, b) {
                (CsvState::Quoted, b'"') => {
                    self.state = CsvState::AfterQuote;
                    false
                }
                (CsvState::Quoted, _) => false,
                (CsvState::AfterQuote, b'"') => {
                    self.state = CsvState::Quoted;
                    false
                }
                (CsvState::FieldStart, b'"') => {
                    self.state = CsvState::Quoted;
                    false
                }
                (_, b',') => {
                    self.state = CsvState::FieldStart;
                    false
                }
                (_, b'\n' | b'\r') => {
                    self.state = CsvState::FieldStart;
                    true
                }
                _ => {
                    self.state = CsvState::Unquoted;
                    false
                }
            };
            if b == b'\n' {
                self.line += 1;
            }
            if end_of_record {
                self.run = 0;
                self.record_line = self.line;
            } else {
                self.run += 1;
                if self.run > MAX_RECORD {
                    self.tripped = true;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "record too long"));
                }
            }
        }
        Ok(n)
    }
}

struct Csv<R: Read> {
    rdr: csv::Reader<RecordLimit<R>>,
    file: String,
    kind: &'static str,
    /// Column index in the file of each documented column.
    /// Where each documented column is in the file (none for an optional
    /// column the header leaves out).
    map: Vec<Option<usize>>,
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
        let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(RecordLimit::new(inner));
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
                [i] => map.push(Some(*i)),
                [] if OPTIONAL_COLUMNS.contains(c) => map.push(None),
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

    fn fatal(rdr: &csv::Reader<RecordLimit<R>>, e: csv::Error, file: &str, kind: &'static str) -> InputError {
        let limit = rdr.get_ref();
        if limit.tripped {
            return InputError::RecordTooLong { file: file.to_string(), line: limit.record_line, kind };
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
            Err(e) => return Err(Self::fatal(&self.rdr, e, &self.file, self.kind)),
        }
        report.rows += 1;
        let line = self.record.position().map_or(0, |p| p.line());
        let pos = Pos { row: report.rows, line };
        let id = self.map[0]
            .and_then(|i| self.record.get(i))
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(|s| s.trim().to_string());
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
            let field = &mut self.fields[slot];
            field.clear();
            let Some(i) = i else { continue };
            let raw = &self.record[i];
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

/// What the first pass over a file found: its rows, the hash of every id
/// (first documented column, as [`id_hash`]) and the ids that occur more
/// than once.
#[derive(Debug, Default, Clone)]
pub struct Scan {
    /// Data rows.
    pub rows: u64,
    ids: HashSet<u64>,
    repeated: HashSet<u64>,
}

impl Scan {
    /// Whether the file holds a row with this id (usable or not).
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(&id_hash(id))
    }

    /// Whether the id with this [`id_hash`] may occur more than once (a
    /// 64-bit hash collision is resolved by the second pass, which compares
    /// the ids themselves).
    fn maybe_repeated(&self, hash: u64) -> bool {
        self.repeated.contains(&hash)
    }
}

/// The first pass: checks the file as a whole and notes every id and the
/// ids that repeat. An error here means the file must not be used at all.
pub fn scan<R: Read>(inner: R, file: &str, kind: Kind) -> Result<Scan, InputError> {
    let columns = kind.columns();
    let mut csv = Csv::open(inner, file, kind.name(), columns)?;
    let mut report = Report::new(file, kind.name());
    let mut s = Scan::default();
    loop {
        let id = match csv.next(columns, &mut report)? {
            Next::End => {
                s.rows = report.rows;
                return Ok(s);
            }
            Next::Refused(id) => id,
            Next::Row(_) => Some(csv.fields[0].clone()),
        };
        if let Some(id) = id.filter(|i| !i.is_empty()) {
            let h = id_hash(&id);
            if !s.ids.insert(h) {
                s.repeated.insert(h);
            }
        }
    }
}

/// [`scan`] of a file on disk.
pub fn scan_path(path: &std::path::Path, kind: Kind) -> Result<Scan, InputError> {
    scan(open(path)?, &path.display().to_string(), kind)
}

fn check_id(id: &str, column: &str, pos: Pos, report: &mut Report) -> bool {
    let reason = if id.is_empty() {
        "required but empty".to_string()
    } else if id.len() > 64 {
        "longer than 64 bytes".to_string()
    } else if id.chars().any(char::is_control) {
        "contains control characters".to_string()
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

/// The kinds of input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A force roster.
    Roster,
    /// A national extract or delta.
    Extract,
    /// Applicants for a pre-employment check.
    Applicants,
}

impl Kind {
    /// The documented columns, in order (the id first).
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Kind::Roster => ROSTER_COLUMNS,
            Kind::Extract => EXTRACT_COLUMNS,
            Kind::Applicants => APPLICANT_COLUMNS,
        }
    }

    /// `roster`, `extract` or `applicants`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Roster => "roster",
            Kind::Extract => "extract",
            Kind::Applicants => "applicants",
        }
    }
}

/// A usable row whose id may occur more than once, held to the end of the
/// file.
struct Held<T> {
    id: String,
    pos: Pos,
    row: T,
    warnings: Vec<FieldIssue>,
}

/// The one reading loop: header, record and field checks, ids, prechecks,
/// identity, keys, warnings, then `on_row`; refusals go to the report and
/// their ids (when readable) to `on_refused`. Rows whose id `scan` saw more
/// than once are held back; at the end, every occurrence of an id that
/// really repeats is refused and the others are used.
fn read_rows<R: Read, T>(
    inner: R,
    file: &str,
    scan: &Scan,
    report: &mut Report,
    layout: &Layout<T>,
    mut on_row: impl FnMut(T),
    mut on_refused: impl FnMut(&str),
) -> Result<(), InputError> {
    let columns = layout.columns;
    let mut csv = Csv::open(inner, file, layout.kind, columns)?;
    let mut ph = Phonetic::default();
    let mut issues = Vec::new();
    let mut held: Vec<Held<T>> = Vec::new();
    // Rows already refused whose id also occurs elsewhere: (id, row).
    let mut refused_repeats: Vec<(String, u64)> = Vec::new();
    loop {
        let pos = match csv.next(columns, report)? {
            Next::End => break,
            Next::Refused(id) => {
                if let Some(id) = id.filter(|i| !i.is_empty()) {
                    if scan.maybe_repeated(id_hash(&id)) {
                        refused_repeats.push((id.clone(), report.rows));
                    }
                    on_refused(&id);
                }
                continue;
            }
            Next::Row(p) => p,
        };
        if report.rows > scan.rows {
            return Err(InputError::Changed { file: file.to_string(), line: pos.line });
        }
        let f = &csv.fields;
        if !check_id(&f[0], columns[0], pos, report) {
            if !f[0].is_empty() {
                on_refused(&f[0]);
            }
            continue;
        }
        let hash = id_hash(&f[0]);
        if !scan.ids.contains(&hash) {
            return Err(InputError::Changed { file: file.to_string(), line: pos.line });
        }
        let repeated = scan.maybe_repeated(hash);
        if let Some((field, reason)) = (layout.precheck)(f) {
            report.error(Issue { row: pos.row, line: pos.line, field: Some(field.into()), reason });
            if repeated {
                refused_repeats.push((f[0].clone(), pos.row));
            }
            on_refused(&f[0]);
            continue;
        }
        issues.clear();
        let identity = Identity::from_raw(&(layout.raw)(f), &mut ph, &mut issues);
        if !keyable(&identity, &issues, pos, report) {
            if repeated {
                refused_repeats.push((f[0].clone(), pos.row));
            }
            on_refused(&f[0]);
            continue;
        }
        let row = (layout.make)(f, pos, identity, &mut issues);
        if repeated {
            held.push(Held { id: f[0].clone(), pos, row, warnings: issues.clone() });
            continue;
        }
        push_field_issues(&issues, pos, report);
        report.accepted += 1;
        on_row(row);
    }
    if report.rows != scan.rows {
        return Err(InputError::Changed { file: file.to_string(), line: csv.rdr.position().line() });
    }
    // Every row of each id, usable or refused, in row order.
    let mut rows_of: HashMap<String, Vec<u64>> = HashMap::new();
    for h in &held {
        rows_of.entry(h.id.clone()).or_default().push(h.pos.row);
    }
    for (id, row) in &refused_repeats {
        rows_of.entry(id.clone()).or_default().push(*row);
    }
    for rows in rows_of.values_mut() {
        rows.sort_unstable();
    }
    for h in held {
        let rows = &rows_of[&h.id];
        if rows.len() == 1 {
            push_field_issues(&h.warnings, h.pos, report);
            report.accepted += 1;
            on_row(h.row);
            continue;
        }
        let all: Vec<String> = rows.iter().map(u64::to_string).collect();
        report.error(Issue {
            row: h.pos.row,
            line: h.pos.line,
            field: Some(columns[0].to_string()),
            reason: format!(
                "duplicate {}: rows {} hold the same id, so none of them is used",
                columns[0],
                all.join(", ")
            ),
        });
        on_refused(&h.id);
    }
    report.sort();
    Ok(())
}

fn no_precheck(_: &[String]) -> Option<(&'static str, String)> {
    None
}

/// The identity fields of a roster or applicant row; `PREV` is where its
/// layout puts `previous_postcodes`.
fn person_fields<const PREV: usize>(f: &[String]) -> RawIdentity<'_> {
    RawIdentity {
        forenames: &f[1],
        surname: &f[2],
        previous_surnames: &f[3],
        date_of_birth: &f[4],
        ni_number: &f[5],
        postcode: &f[6],
        previous_postcodes: &f[PREV],
        ..Default::default()
    }
}

const ROSTER: Layout<RosterRow> = Layout {
    kind: "roster",
    columns: ROSTER_COLUMNS,
    precheck: no_precheck,
    raw: person_fields::<8>,
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
    raw: person_fields::<7>,
    make: |f, pos, identity, _| ApplicantRow {
        pos,
        applicant_id: f[0].clone(),
        forenames: f[1].clone(),
        surname: f[2].clone(),
        identity,
    },
};

/// The identity fields of an extract row, its fields in the documented
/// column order ([`EXTRACT_COLUMNS`]).
pub fn extract_identity(f: &[String]) -> RawIdentity<'_> {
    RawIdentity {
        forenames: &f[3],
        surname: &f[4],
        aliases: &f[5],
        date_of_birth: &f[6],
        alt_dates_of_birth: &f[7],
        ni_number: &f[8],
        postcode: &f[9],
        ..Default::default()
    }
}

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
    raw: extract_identity,
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

/// Reads a force roster (second pass, after [`scan`]), calling `on_row`
/// for every usable row and `on_refused(employee_id)` for every refused row
/// whose id could be read, so a sync can keep those employees' previous
/// enrolment. The id is given to the caller only, never to the report.
pub fn read_roster<R: Read>(
    inner: R,
    file: &str,
    scan: &Scan,
    report: &mut Report,
    on_row: impl FnMut(RosterRow),
    on_refused: impl FnMut(&str),
) -> Result<(), InputError> {
    read_rows(inner, file, scan, report, &ROSTER, on_row, on_refused)
}

/// Reads a national extract (second pass, after [`scan`]), as
/// [`read_roster`]: a full feed does not withdraw a record just because
/// this extract's row for it is broken.
pub fn read_extract<R: Read>(
    inner: R,
    file: &str,
    scan: &Scan,
    report: &mut Report,
    on_row: impl FnMut(ExtractRow),
    on_refused: impl FnMut(&str),
) -> Result<(), InputError> {
    read_rows(inner, file, scan, report, &EXTRACT, on_row, on_refused)
}

/// Reads an applicants file (second pass, after [`scan`]).
pub fn read_applicants<R: Read>(
    inner: R,
    file: &str,
    scan: &Scan,
    report: &mut Report,
    on_row: impl FnMut(ApplicantRow),
) -> Result<(), InputError> {
    read_rows(inner, file, scan, report, &APPLICANTS, on_row, |_| {})
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

    fn roster_with(text: &str) -> (Result<(), InputError>, Report, Vec<RosterRow>, Vec<String>) {
        let mut report = Report::new("r.csv", "roster");
        let mut rows = Vec::new();
        let mut refused = Vec::new();
        let res = scan(text.as_bytes(), "r.csv", Kind::Roster).and_then(|sc| {
            read_roster(text.as_bytes(), "r.csv", &sc, &mut report, |r| rows.push(r), |id| refused.push(id.to_string()))
        });
        (res, report, rows, refused)
    }

    fn roster(text: &str) -> (Result<(), InputError>, Report, Vec<RosterRow>) {
        let (res, report, rows, _) = roster_with(text);
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
        assert_eq!(report.accepted, 1, "{report:#?}");
        assert_eq!(report.refused, 5);
        assert_eq!(rows.iter().map(|r| r.employee_id.as_str()).collect::<Vec<_>>(), vec!["E6"]);
        let w: Vec<_> = report.warnings.iter().map(|i| (i.row, i.field.clone().unwrap_or_default())).collect();
        assert!(w.contains(&(6, "forenames".into())));
        assert!(!w.iter().any(|(r, _)| *r == 1), "a refused row's warnings are not listed: {w:?}");
        let e: Vec<_> = report.errors.iter().map(|i| (i.row, i.line, i.reason.clone())).collect();
        assert!(e.iter().any(|(r, l, why)| *r == 2 && *l == 3 && why.contains("required")));
        assert!(e.iter().any(|(r, _, why)| *r == 3
            && why.contains("no match key")
            && why.contains("date_of_birth (not a date in the form YYYY-MM-DD)")));
        assert!(e.iter().any(|(r, _, why)| *r == 1 && why.contains("rows 1, 4")));
        assert!(e.iter().any(|(r, _, why)| *r == 4 && why.contains("rows 1, 4")));
        assert!(e.iter().any(|(r, _, why)| *r == 5 && why.contains("3 fields")));
        assert!(report.errors.windows(2).all(|w| w[0].row <= w[1].row), "errors are in row order");
        let json = serde_json::to_string(&report).unwrap();
        for secret in ["NOTANINO", "nowhere", "not-a-date", "Dup", "Licate"] {
            assert!(!json.contains(secret), "report repeats a value");
        }
    }

    #[test]
    fn refused_ids_reach_the_caller_but_not_the_report() {
        let text =
            format!("{HEADER}E1,John,Smith,,1980-01-02,,,x\nE2,Ann,Lee,,bad,,,x\nE1,J,S,,1980-01-02,,,x\nE4,Short\n");
        let (res, report, rows, refused) = roster_with(&text);
        res.unwrap();
        assert!(rows.is_empty());
        assert_eq!(refused, vec!["E2", "E4", "E1", "E1"]);
        assert_eq!((report.accepted, report.refused), (0, 4));
        let json = serde_json::to_string(&report).unwrap();
        assert!(!json.contains("E2") && !json.contains("E4"));
    }

    #[test]
    fn a_duplicate_is_refused_even_when_its_twin_is_refused_for_another_reason() {
        let text = format!("{HEADER}E1,John,Smith,,1980-01-02,,,x\nE1,Ann,Lee,,bad,,,x\nE3,J,S,,1980-01-02,,,x\n");
        let (res, report, rows, refused) = roster_with(&text);
        res.unwrap();
        assert_eq!(rows.iter().map(|r| r.employee_id.as_str()).collect::<Vec<_>>(), vec!["E3"]);
        assert_eq!(refused, vec!["E1", "E1"]);
        assert_eq!((report.accepted, report.refused), (1, 2));
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

    /// `previous_postcodes` may be left out of a header (files written
    /// before it existed); present, its postcodes are used, a bad one is a
    /// warning naming the column, and the row's role stays where it was.
    #[test]
    fn previous_postcodes_are_optional_and_used_when_given() {
        const WITH: &str = "employee_id,forenames,surname,previous_surnames,date_of_birth,ni_number,postcode,role,previous_postcodes\n";
        let text = format!("{WITH}E1,John,Smith,,1980-01-02,,LS1 4AP,officer,M1 2AB;not a postcode\n");
        let (res, report, rows) = roster(&text);
        res.unwrap();
        assert_eq!((report.accepted, rows[0].role.as_str()), (1, "officer"));
        assert_eq!(rows[0].identity.previous_postcodes.len(), 1);
        let w: Vec<_> = report.warnings.iter().map(|i| (i.row, i.field.clone().unwrap_or_default())).collect();
        assert_eq!(w, vec![(1, "previous_postcodes".to_string())]);
        assert!(!serde_json::to_string(&report).unwrap().contains("not a postcode"));
        // A previous address with a name is enough to use a row.
        let text = format!("{WITH}E2,John,Smith,,,,,staff,M1 2AB\n");
        let (res, report, rows) = roster(&text);
        res.unwrap();
        assert_eq!((report.accepted, rows[0].role.as_str()), (1, "staff"));
        // Without the column: the same row as before it existed.
        let (res, _, rows) = roster(&format!("{HEADER}E1,John,Smith,,1980-01-02,,LS1 4AP,officer\n"));
        res.unwrap();
        assert!(rows[0].identity.previous_postcodes.is_empty());
        assert_eq!(ROSTER_COLUMNS[8], "previous_postcodes", "person_fields::<8> reads it there");
        assert_eq!(APPLICANT_COLUMNS[7], "previous_postcodes", "person_fields::<7> reads it there");
    }

    #[test]
    fn garbage_does_not_exhaust_memory_or_panic() {
        let garbage: Vec<u8> = (0..(MAX_RECORD * 3)).map(|i| (i * 7919 % 251) as u8).filter(|b| *b != b'\n').collect();
        assert!(scan(&garbage[..], "g", Kind::Roster).is_err());
        let mut text = HEADER.as_bytes().to_vec();
        text.extend_from_slice(b"E1,\xff\xfe,Smith,,1980-01-02,,,x\n");
        let sc = scan(&text[..], "g", Kind::Roster).unwrap();
        let mut report = Report::new("g", "roster");
        read_roster(&text[..], "g", &sc, &mut report, |_| {}, |_| {}).unwrap();
        assert_eq!(report.errors[0].field.as_deref(), Some("forenames"));
        assert_eq!(report.errors[0].reason, "not valid UTF-8");
    }

    /// The over-long record is named by the physical line where it starts
    /// (it was one too high), and a huge quoted field with newlines inside
    /// is refused within [`MAX_RECORD`] bytes, not buffered whole.
    #[test]
    fn an_overlong_record_is_named_by_its_physical_line_in_bounded_memory() {
        let mut text = HEADER.to_string();
        for i in 0..5 {
            text.push_str(&format!("E{i},John,Smith,,1980-01-02,,,x\n"));
        }
        let mut long = text.clone();
        long.push_str(&"x".repeat(MAX_RECORD + 10));
        long.push('\n');
        let err = scan(long.as_bytes(), "r.csv", Kind::Roster).unwrap_err().to_string();
        assert!(err.contains("starting at line 7 "), "{err}");
        let mut quoted = text.clone();
        quoted.push_str("E9,\"");
        for _ in 0..100 {
            quoted.push_str(&"y".repeat(1000));
            quoted.push('\n');
        }
        quoted.push_str("\",Smith,,1980-01-02,,,x\n");
        let err = scan(quoted.as_bytes(), "r.csv", Kind::Roster).unwrap_err().to_string();
        assert!(err.contains("starting at line 7 "), "{err}");
        // A stray quote inside an unquoted field is only a character, and a
        // short quoted field with a newline is one record.
        let mut fine = text;
        fine.push_str("E7,Jo\"hn,Smith,,1980-01-02,,,x\nE8,\"Ann\nMarie\",Lee,,1980-01-02,,,x\n");
        for i in 0..2000 {
            fine.push_str(&format!("F{i},John,Smith,,1980-01-02,,,x\n"));
        }
        let (res, report, _) = roster(&fine);
        res.unwrap();
        assert_eq!(report.rows, 2007);
    }

    #[test]
    fn a_file_that_changes_between_the_passes_is_refused() {
        let a = format!("{HEADER}E1,John,Smith,,1980-01-02,,,x\n");
        let b = format!("{HEADER}E1,John,Smith,,1980-01-02,,,x\nE2,Ann,Lee,,1980-01-02,,,x\n");
        let sc = scan(a.as_bytes(), "r", Kind::Roster).unwrap();
        let mut report = Report::new("r", "roster");
        let err = read_roster(b.as_bytes(), "r", &sc, &mut report, |_| {}, |_| {}).unwrap_err();
        assert!(matches!(err, InputError::Changed { line: 3, .. }), "{err}");
    }

    #[test]
    fn extract_rows_categories_and_duplicates() {
        let text = "record_id,category,event_date,forenames,surname,alias_names,date_of_birth,alt_dates_of_birth,ni_number,postcode\n\
            R1,violence,2020-01-01,John,Smith,Jon/Smyth,1980-01-02,1980-02-01,,\n\
            R2,parking,2020-01-01,John,Smith,,1980-01-02,,,\n\
            R3,drugs,someday,John,Smith,,1980-01-02,,,\n\
            R4,drugs,,Ann,Lee,,1980-01-02,,,\n\
            R4,violence,,Ann,Lee,,1980-01-02,,,\n";
        let sc = scan(text.as_bytes(), "x", Kind::Extract).unwrap();
        assert!(sc.contains("R2") && sc.contains("R4") && !sc.contains("R9"));
        let mut report = Report::new("x", "extract");
        let mut rows = Vec::new();
        let mut refused = Vec::new();
        read_extract(text.as_bytes(), "x", &sc, &mut report, |r| rows.push(r), |id| refused.push(id.to_string()))
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].identity.names.len(), 2);
        assert_eq!(rows[0].identity.dobs.len(), 2);
        assert_eq!(report.errors[0].field.as_deref(), Some("category"));
        assert_eq!(report.warnings[0].field.as_deref(), Some("event_date"));
        assert!(rows[1].event_date.is_none());
        assert_eq!(refused, vec!["R2", "R4", "R4"]);
        assert_eq!((report.accepted, report.refused), (2, 3));
    }
}
