//! Roster sync (force) and national feed (source): diff the file against
//! what this node sent before, then send adds, changes and removes in
//! numbered batches.
//!
//! - **The file is checked whole before anything is sent** ([`input::scan`]:
//!   header, record lengths, duplicate ids). A file refused there changes
//!   nothing at the coordinator. Rows with errors are refused one by one and
//!   keep their previous enrolment or record: they are neither re-sent nor
//!   removed. The report says which rows, and why; every occurrence of a
//!   duplicated id is refused.
//! - **Batches are numbered per sender.** The node asks the coordinator for
//!   the last sequence it applied for this sender and numbers its batches
//!   from there. A batch retried after a lost reply carries the same number
//!   and content and is applied once; later sends of the same content are
//!   new batches and are applied (a withdrawn record fed again, a leaver who
//!   rejoins).
//! - The local store is updated after each acknowledged batch. If a run
//!   stops half-way (the coordinator unreachable beyond `retry_seconds`, the
//!   file changed while being read), the error says how many batches were
//!   applied; running the same command again is safe and sends only what is
//!   left, because every upsert and removal states the final state rather
//!   than a change.
//! - A sync or full feed that would remove more than `max_removal_share` of
//!   what is enrolled (a truncated file), or enrol more staff than the
//!   coordinator allows a force, is refused before anything is sent (the
//!   removal share unless `--allow-removals` is given).

use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use vigil_proto::hex;
use vigil_proto::tokens as wire;
use vigil_proto::v1::feed_service_client::FeedServiceClient;
use vigil_proto::v1::roster_service_client::RosterServiceClient;
use vigil_proto::v1::{
    BatchReceipt, EnrolSubject, NationalBatch, NationalRecord, RecordDetails, RosterBatch, StatusRequest,
};

use crate::client::{self, MAX_MESSAGE};
use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::input::{self, InputError, Report};
use crate::keyfile::Keys;
use crate::local::{EnrolChange, Enrolled, LocalStore};
use vigil_identity::tokens::Ref;

/// What a sync or feed did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    /// Rows read from the file.
    pub rows: u64,
    /// Rows refused (previous state kept).
    pub refused: u64,
    /// Withdrawals naming a record this node never fed (nothing to do).
    pub unknown_withdrawals: u64,
    /// Subjects or records new to the coordinator.
    pub added: u64,
    /// Subjects or records changed.
    pub changed: u64,
    /// Subjects or records removed.
    pub removed: u64,
    /// Rows identical to what was sent before.
    pub unchanged: u64,
    /// Batches sent.
    pub batches: u64,
    /// Retried batches the coordinator had already applied (a lost reply).
    pub replayed: u64,
    /// Total held at the coordinator after the last batch.
    pub total: u64,
    /// Where the input report was written.
    pub report: String,
}

fn progress(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

/// Writes the input report next to the node's data (or where asked).
fn write_report(cfg: &NodeConfig, report: &Report, name: &str, explicit: Option<&Path>) -> Result<String, NodeError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let dir = cfg.data_dir.join("reports");
            vigil_common::secrets::private_dir(&dir)
                .map_err(|e| NodeError::failed(format!("creating {}: {e}", dir.display())))?;
            let ms = vigil_common::clock::now_ms();
            dir.join(format!("{name}-{ms}.json"))
        }
    };
    let text = serde_json::to_vec_pretty(report).map_err(|e| NodeError::failed(e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| NodeError::failed(format!("writing {}: {e}", path.display())))?;
    Ok(path.display().to_string())
}

/// Writes the report of a file refused as a whole, and returns the error
/// naming it.
fn refuse_file(cfg: &NodeConfig, mut report: Report, e: InputError, name: &str, explicit: Option<&Path>) -> NodeError {
    report.error = Some(e.to_string());
    let msg = match write_report(cfg, &report, name, explicit) {
        Ok(path) => format!("{e}. Nothing was sent. Report: {path}"),
        Err(_) => format!("{e}. Nothing was sent"),
    };
    NodeError::input(msg)
}

/// Calls `f` until it succeeds, retrying transient failures for `retry`.
async fn retrying<T, F, Fut>(retry: Duration, what: &str, mut f: F) -> Result<T, NodeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(s) if client::transient(&s) && started.elapsed() < retry => {
                tracing::warn!(error = %s.message(), "{what} failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(s) => return Err(client::status_error(&s, what)),
        }
    }
}

fn row_digest(epoch: u32, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"vigil row digest v1").update(&epoch.to_be_bytes());
    for p in parts {
        h.update(&(p.len() as u32).to_be_bytes()).update(p);
    }
    *h.finalize().as_bytes()
}

/// Refuses to send tokens of a scheme the coordinator does not accept
/// (they could never match).
fn check_scheme(status: &vigil_proto::v1::StatusResponse, keys: &Keys) -> Result<(), NodeError> {
    if status.scheme != keys.scheme {
        return Err(NodeError::config(format!(
            "this node makes tokens of scheme {} ({}) but the coordinator accepts scheme {}: nothing was sent. \
             Every node of a deployment uses one scheme",
            keys.scheme,
            if keys.key_service() { "key service" } else { "linkage key" },
            status.scheme
        )));
    }
    Ok(())
}

fn removal_guard(removes: usize, enrolled: u64, share: f64, allow: bool, what: &str) -> Result<(), NodeError> {
    if allow || enrolled == 0 {
        return Ok(());
    }
    let fraction = removes as f64 / enrolled as f64;
    if fraction > share {
        return Err(NodeError::input(format!(
            "refusing to remove {removes} of {enrolled} {what} ({:.1}%, more than {:.0}%): the file may be truncated. \
                 Nothing was sent. If the numbers really fell, run again with --allow-removals",
            fraction * 100.0,
            share * 100.0
        )));
    }
    Ok(())
}

/// Numbers a sender's batches: the coordinator's last applied sequence
/// plus one, then one more for each batch it acknowledges.
struct Sequence {
    next: u64,
    first: u64,
}

impl Sequence {
    fn after(last: u64) -> Sequence {
        Sequence { next: last + 1, first: last + 1 }
    }

    /// Batches acknowledged in this run.
    fn sent(&self) -> u64 {
        self.next - self.first
    }
}

/// Adds to a failure that stopped a run half-way what had been applied, and
/// that running again is safe.
fn stopped_after(e: NodeError, seq: &Sequence, s: &Summary, what: &str) -> NodeError {
    if seq.sent() == 0 {
        return e.map_message(|m| format!("{m}. Nothing was applied"));
    }
    e.map_message(|m| {
        format!(
            "{m}. Before it stopped, {} batches were applied ({} added, {} changed, {} removed) and are recorded on \
             this node; running the same {what} again is safe and sends only what is left",
            seq.sent(),
            s.added,
            s.changed,
            s.removed
        )
    })
}

struct PendingUp {
    /// Index of the roster row.
    index: usize,
    employee: String,
    subject: EnrolSubject,
    row: Enrolled,
    fresh: bool,
}

/// Syncs a force's roster.
pub async fn sync_roster(
    cfg: &NodeConfig,
    keys: &Keys,
    store: &LocalStore,
    channel: Channel,
    roster: &Path,
    allow_removals: bool,
    report_path: Option<&Path>,
) -> Result<Summary, NodeError> {
    let name = roster.display().to_string();
    let mut report = Report::new(&name, "roster");
    let scan = match input::scan_path(roster, input::Kind::Roster) {
        Ok(s) => s,
        Err(e) => return Err(refuse_file(cfg, report, e, "sync", report_path)),
    };
    let mut rows = Vec::new();
    let read = input::read_roster(
        input::open(roster).map_err(NodeError::from)?,
        &name,
        &scan,
        &mut report,
        |r| rows.push(r),
        |_| {},
    );
    if let Err(e) = read {
        return Err(refuse_file(cfg, report, e, "sync", report_path));
    }
    let enrolled: HashMap<String, Enrolled> = store.enrolled().map_err(NodeError::from)?.into_iter().collect();
    let mut ups: Vec<PendingUp> = Vec::new();
    let mut display_only: Vec<EnrolChange> = Vec::new();
    let mut s = Summary { rows: report.rows, refused: report.refused, ..Default::default() };
    let mut toks = Vec::new();
    for (index, r) in rows.iter().enumerate() {
        let id = keys.identity_digest(&r.identity, &mut toks);
        let digest = hex::encode(&row_digest(keys.epoch, &[id.part()]));
        let set = id.into_tokens().unwrap_or_else(|| wire::pack(&toks));
        let pseudonym = keys.local.subject_pseudonym(&r.employee_id);
        let row = Enrolled {
            pseudonym: hex::encode(&pseudonym),
            digest: digest.clone(),
            forenames: r.forenames.clone(),
            surname: r.surname.clone(),
            role: r.role.clone(),
        };
        match enrolled.get(&r.employee_id) {
            Some(old) if old.digest == digest => {
                s.unchanged += 1;
                if old != &row {
                    display_only.push(EnrolChange::Put(r.employee_id.clone(), row));
                }
            }
            old => {
                ups.push(PendingUp {
                    index,
                    employee: r.employee_id.clone(),
                    subject: EnrolSubject { subject: pseudonym.to_vec().into(), tokens: Some(set) },
                    row,
                    fresh: old.is_none(),
                });
            }
        }
    }
    // Employees no longer in the file leave; refused rows keep their enrolment.
    let mut removes: Vec<(String, Ref)> = Vec::new();
    for (emp, e) in &enrolled {
        if !scan.contains(emp) {
            let p =
                hex::decode_array::<16>(&e.pseudonym).ok_or_else(|| NodeError::failed("corrupt local pseudonym"))?;
            removes.push((emp.clone(), p));
        }
    }
    removes.sort();
    removal_guard(removes.len(), enrolled.len() as u64, cfg.sync.max_removal_share, allow_removals, "enrolled staff")?;
    s.report = write_report(cfg, &report, "sync", report_path)?;

    let client =
        RosterServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE);
    let retry = Duration::from_secs(cfg.sync.retry_seconds);
    let status = retrying(retry, "roster status", || {
        let mut c = client.clone();
        async move { c.status(StatusRequest {}).await.map(|r| r.into_inner()) }
    })
    .await?;
    check_scheme(&status, keys)?;
    let fresh = ups.iter().filter(|u| u.fresh).count() as u64;
    let projected = (status.total + fresh).saturating_sub(removes.len() as u64);
    if status.max_total > 0 && projected > status.max_total {
        return Err(NodeError::input(format!(
            "this roster would enrol {projected} staff, more than the coordinator allows one force ({}). \
                 Nothing was sent",
            status.max_total
        )));
    }
    if keys.key_service() && !ups.is_empty() {
        // Every changed row is evaluated before anything is sent: a refusal
        // by the key service (its allowance spent) sends nothing.
        let mut ks = crate::keyservice::KeyService::connect(cfg).await?;
        let ids: Vec<&vigil_identity::keys::Identity> = ups.iter().map(|u| &rows[u.index].identity).collect();
        let evaluated = ks
            .evaluate(&ids, "roster sync", false)
            .await
            .map_err(|e| e.map_message(|m| format!("{m}. Nothing was sent")))?;
        let mut wraps = Vec::with_capacity(ups.len());
        for (u, e) in ups.iter_mut().zip(evaluated) {
            u.subject.tokens = Some(wire::pack(&e.tokens));
            let p: Ref = u.subject.subject.as_ref().try_into().map_err(|_| NodeError::failed("bad pseudonym"))?;
            wraps.push((p, crate::keyservice::pack_wraps(&e.wraps)));
        }
        // Kept before sending, so that a disclosure arriving at once opens.
        store.put_wraps(keys.epoch, &wraps).map_err(NodeError::from)?;
        tracing::info!(
            evaluated = ks.usage.0,
            allowance = ks.usage.1,
            "the key service evaluated this roster's changed rows"
        );
    }
    store.apply_enrolment(&display_only).map_err(NodeError::from)?;

    let mut seq = Sequence::after(status.last_sequence);
    let pb = progress((ups.len() + removes.len()) as u64, &format!("sync {}", cfg.code));
    let bs = cfg.sync.batch_size;
    let mut ups = ups.into_iter().peekable();
    let mut removes = removes.into_iter().peekable();
    while ups.peek().is_some() || removes.peek().is_some() {
        let chunk_ups: Vec<PendingUp> = ups.by_ref().take(bs).collect();
        let room = bs - chunk_ups.len();
        let chunk_rm: Vec<(String, Ref)> = removes.by_ref().take(room).collect();
        let batch = RosterBatch {
            sequence: seq.next,
            epoch: keys.epoch,
            scheme: keys.scheme,
            upserts: chunk_ups.iter().map(|u| u.subject.clone()).collect(),
            removes: chunk_rm.iter().map(|(_, p)| p.to_vec().into()).collect(),
            allow_removals,
        };
        let sent = retrying(retry, "roster sync", || {
            let mut c = client.clone();
            let b = batch.clone();
            async move { c.sync(b).await.map(|r| r.into_inner()) }
        })
        .await;
        let receipt: BatchReceipt = match sent {
            Ok(r) => r,
            Err(e) => {
                pb.finish_and_clear();
                return Err(stopped_after(e, &seq, &s, "sync"));
            }
        };
        seq.next += 1;
        let mut changes = Vec::with_capacity(chunk_ups.len() + chunk_rm.len());
        for u in chunk_ups {
            if u.fresh {
                s.added += 1;
            } else {
                s.changed += 1;
            }
            changes.push(EnrolChange::Put(u.employee, u.row));
        }
        for (emp, p) in chunk_rm {
            s.removed += 1;
            changes.push(EnrolChange::Remove(emp, p));
        }
        store.apply_enrolment(&changes).map_err(NodeError::from)?;
        s.batches += 1;
        s.replayed += u64::from(receipt.replayed);
        s.total = receipt.total;
        pb.inc(changes.len() as u64);
    }
    pb.finish_and_clear();
    if s.batches == 0 {
        s.total = status.total;
    }
    Ok(s)
}

/// What to feed.
pub struct FeedInput<'a> {
    /// A full extract, diffed against the last one.
    pub extract: Option<&'a Path>,
    /// A delta: records added or changed.
    pub delta: Option<&'a Path>,
    /// Record ids to withdraw (CSV with a `record_id` column).
    pub withdraw: Option<&'a Path>,
    /// Allow removing more than the configured share.
    pub allow_removals: bool,
    /// Where to write the input report.
    pub report: Option<&'a Path>,
}

/// Reads a withdrawals file whole: any problem refuses the file, naming
/// the physical line.
fn read_withdrawals(path: &Path) -> Result<Vec<String>, NodeError> {
    let bad = |m: String| NodeError::input(format!("{}: {m}. Nothing was sent", path.display()));
    let file = input::open(path).map_err(|e| bad(e.to_string()))?;
    let mut rdr = csv::Reader::from_reader(file);
    let h = rdr.headers().map_err(|e| bad(e.to_string()))?.clone();
    if h.iter().map(str::trim).collect::<Vec<_>>() != ["record_id"] {
        return Err(bad("header must be exactly: record_id".into()));
    }
    let mut ids = Vec::new();
    let mut seen = HashSet::new();
    let mut record = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(bad(e.to_string())),
        }
        let line = record.position().map_or(0, |p| p.line());
        let id = record.get(0).unwrap_or("").trim();
        if id.is_empty() || id.len() > 64 {
            return Err(bad(format!("line {line}: record_id must be 1 to 64 characters")));
        }
        if !seen.insert(id.to_string()) {
            return Err(bad(format!("line {line}: this record_id is already listed")));
        }
        ids.push(id.to_string());
    }
    Ok(ids)
}

type Up = (String, NationalRecord, Ref, [u8; 32], bool);

/// Batches a feed keeps in flight: the next is sent while the coordinator
/// applies the one before, which it does in sequence order (its `turns`),
/// so the transfer, decoding and peppering of one overlap the apply of
/// the other.
const IN_FLIGHT: usize = 2;

/// What the node records of a sent record once its batch is acknowledged:
/// record id, reference, row digest, and whether it is new.
type Sent = (String, Ref, [u8; 32], bool);

/// Splits changed records into a batch under `sequence` and what to record
/// of them once it is acknowledged.
fn national_batch(
    (epoch, scheme): (u32, u32),
    sequence: u64,
    ups: Vec<Up>,
    rms: &[(String, Ref)],
) -> (NationalBatch, Vec<Sent>) {
    let mut upserts = Vec::with_capacity(ups.len());
    let mut sent = Vec::with_capacity(ups.len());
    for (id, record, rref, digest, fresh) in ups {
        upserts.push(record);
        sent.push((id, rref, digest, fresh));
    }
    let removes = rms.iter().map(|r| r.1.to_vec().into()).collect();
    (NationalBatch { sequence, epoch, scheme, upserts, removes }, sent)
}

/// Sends one national batch, retrying transient failures.
async fn national_rpc(
    client: FeedServiceClient<Channel>,
    retry: Duration,
    batch: NationalBatch,
) -> Result<BatchReceipt, NodeError> {
    retrying(retry, "national feed", || {
        let mut c = client.clone();
        let b = batch.clone();
        async move { c.feed(b).await.map(|r| r.into_inner()) }
    })
    .await
}

/// Records an acknowledged batch on this node and in the summary.
fn record_national(
    seq: &mut Sequence,
    receipt: &BatchReceipt,
    sent: &[Sent],
    rms: &[(String, Ref)],
    store: &LocalStore,
    s: &mut Summary,
) -> Result<(), NodeError> {
    store_sent(store, sent.iter(), rms)?;
    count_national(seq, receipt, sent, rms, s);
    Ok(())
}

/// Records what was sent, and withdrawn, in the node's local store (one
/// durable transaction).
fn store_sent<'a>(
    store: &LocalStore,
    sent: impl Iterator<Item = &'a Sent>,
    rms: &[(String, Ref)],
) -> Result<(), NodeError> {
    let put: Vec<(String, Ref, [u8; 32])> = sent.map(|u| (u.0.clone(), u.1, u.2)).collect();
    let rm: Vec<String> = rms.iter().map(|r| r.0.clone()).collect();
    store.apply_records(&put, &rm).map_err(NodeError::from)
}

/// Counts an acknowledged batch in the sequence and the summary.
fn count_national(seq: &mut Sequence, receipt: &BatchReceipt, sent: &[Sent], rms: &[(String, Ref)], s: &mut Summary) {
    seq.next += 1;
    for u in sent {
        if u.3 {
            s.added += 1;
        } else {
            s.changed += 1;
        }
    }
    s.removed += rms.len() as u64;
    s.batches += 1;
    s.replayed += u64::from(receipt.replayed);
    s.total = receipt.total;
}

/// Sends one national batch under the next sequence, waits for its
/// receipt and records it locally.
#[allow(clippy::too_many_arguments)]
async fn send_national(
    client: &FeedServiceClient<Channel>,
    retry: Duration,
    header: (u32, u32),
    seq: &mut Sequence,
    ups: Vec<Up>,
    rms: Vec<(String, Ref)>,
    store: &LocalStore,
    s: &mut Summary,
) -> Result<(), NodeError> {
    let (batch, sent) = national_batch(header, seq.next, ups, &rms);
    let receipt = national_rpc(client.clone(), retry, batch).await?;
    record_national(seq, &receipt, &sent, &rms, store, s)
}

/// Acknowledged batches of a full feed recorded in the local store
/// together: one durable transaction for several batches instead of one
/// each. A node stopped before recording them sends those records again
/// on its next run, and the coordinator takes them as unchanged.
const RECORD_EVERY: usize = 8;

/// Sends the batches `rx` yields, [`IN_FLIGHT`] at a time, and records them
/// on this node as their receipts come back, in order, [`RECORD_EVERY`]
/// batches at a time and all of them before it returns. On a failure it
/// sends nothing more, waits for the batches already sent, records those
/// acknowledged, and returns the first failure.
#[allow(clippy::too_many_arguments)]
async fn send_national_stream(
    client: &FeedServiceClient<Channel>,
    retry: Duration,
    header: (u32, u32),
    seq: &mut Sequence,
    rx: &mut tokio::sync::mpsc::Receiver<Vec<Up>>,
    store: &LocalStore,
    s: &mut Summary,
    pb: &ProgressBar,
) -> Result<(), NodeError> {
    type Flying = (tokio::task::JoinHandle<Result<BatchReceipt, NodeError>>, Vec<Sent>);
    let mut flying: std::collections::VecDeque<Flying> = std::collections::VecDeque::new();
    let mut failure = None;
    let mut open = true;
    let mut unrecorded: Vec<Vec<Sent>> = Vec::new();
    while open || !flying.is_empty() {
        if open && failure.is_none() && flying.len() < IN_FLIGHT {
            match rx.recv().await {
                Some(ups) => {
                    pb.inc_length(ups.len() as u64);
                    let (batch, sent) = national_batch(header, seq.next + flying.len() as u64, ups, &[]);
                    flying.push_back((tokio::spawn(national_rpc(client.clone(), retry, batch)), sent));
                }
                None => open = false,
            }
            continue;
        }
        let Some((call, sent)) = flying.pop_front() else { break };
        let receipt = match call.await {
            Ok(r) => r,
            Err(e) => Err(NodeError::failed(format!("a national feed call failed: {e}"))),
        };
        match receipt {
            // After a refused batch the coordinator refuses the rest as out
            // of order. After a failure to record one here, a later one may
            // have been applied: the next run sends its records again, and
            // the coordinator takes them as unchanged.
            Ok(r) if failure.is_none() => {
                count_national(seq, &r, &sent, &[], s);
                pb.inc(sent.len() as u64);
                unrecorded.push(sent);
            }
            Ok(_) => {}
            Err(e) => {
                failure.get_or_insert(e);
                open = false;
            }
        }
        if unrecorded.len() >= RECORD_EVERY || (flying.is_empty() && !unrecorded.is_empty()) {
            if let Err(e) = store_sent(store, unrecorded.iter().flatten(), &[]) {
                failure.get_or_insert(e);
                open = false;
            }
            unrecorded.clear();
        }
    }
    failure.map_or(Ok(()), Err)
}

/// A changed row waiting for the key service (scheme 3).
struct Waiting {
    record_id: String,
    identity: vigil_identity::keys::Identity,
    details: RecordDetails,
    rref: Ref,
    digest: [u8; 32],
    fresh: bool,
}

/// Scheme 3: has the waiting rows' match keys evaluated (on this blocking
/// thread, through the runtime), and seals each row's details under a
/// record key of its own, wrapped for each of its tokens.
fn evaluate_and_seal(
    ks: &mut (tokio::runtime::Handle, crate::keyservice::KeyService),
    source: &str,
    (epoch, source_secret): (u32, &[u8; 32]),
    waiting: &mut Vec<Waiting>,
) -> Result<Vec<Up>, NodeError> {
    let rows = std::mem::take(waiting);
    let ids: Vec<&vigil_identity::keys::Identity> = rows.iter().map(|w| &w.identity).collect();
    let (handle, service) = ks;
    let evaluated = handle.block_on(service.evaluate(&ids, "national feed", false))?;
    let mut out = Vec::with_capacity(rows.len());
    for (w, e) in rows.into_iter().zip(evaluated) {
        let wraps: Vec<(vigil_proto::KeyKind, &vigil_identity::tokens::WrapSecret)> =
            e.wraps.iter().map(|(k, s)| (*k, s)).collect();
        let sealed = vigil_identity::seal::seal_wrapped(epoch, source, &w.rref, &w.details, &wraps, source_secret)
            .map_err(|e| NodeError::failed(format!("a record's details could not be sealed: {e}")))?;
        let rec = NationalRecord {
            record_ref: w.rref.to_vec().into(),
            tokens: Some(wire::pack(&e.tokens)),
            sealed: Some(sealed),
        };
        out.push((w.record_id, rec, w.rref, w.digest, w.fresh));
    }
    Ok(out)
}

/// Reads an extract or delta (after its scan) on a blocking thread,
/// handing batches of changed records to `tx` (bounded, so memory stays at
/// a few batches). Returns the report and the number of unchanged rows; a
/// failure to read comes back with the report as it stood. When this node
/// has sent no records before (`first`), no row can have been sent, and
/// the local store is not asked about each one (a file's ids are unique:
/// the scan refuses duplicates).
#[allow(clippy::too_many_arguments)]
fn read_changes(
    path: PathBuf,
    scan: &input::Scan,
    source: String,
    keys: std::sync::Arc<Keys>,
    store: std::sync::Arc<LocalStore>,
    first: bool,
    (batch_size, workers): (usize, usize),
    tx: tokio::sync::mpsc::Sender<Vec<Up>>,
    key_service: Option<(tokio::runtime::Handle, crate::keyservice::KeyService)>,
    report: &mut Report,
) -> Result<u64, NodeError> {
    let name = path.display().to_string();
    // Scheme 2 tokenises and seals rows on every core as they are read;
    // scheme 3 gathers a batch's changed rows, has their match keys
    // evaluated, then seals each under its own record key wrapped for its
    // tokens.
    let sealer = match &key_service {
        Some(_) => None,
        None => Some(keys.sealer(keys.epoch).ok_or_else(|| NodeError::config("no sealing key for the current epoch"))?),
    };
    if let Some(sealer) = sealer {
        let file = input::open(&path).map_err(NodeError::from)?;
        return read_changes_parallel(
            file,
            &name,
            scan,
            report,
            &keys,
            sealer,
            (&source, &store, first),
            (batch_size, workers),
            tx,
        );
    }
    // Scheme 3 (no sealing key: the key service makes the tokens).
    let Some(mut ks) = key_service else {
        return Err(NodeError::config("no sealing key for the current epoch and no key service"));
    };
    let source_secret = blake3::derive_key("vigil record key scheme v3", keys.local.expose());
    let mut waiting: Vec<Waiting> = Vec::new();
    let mut toks = Vec::new();
    let mut unchanged = 0u64;
    let mut err: Option<NodeError> = None;
    let mut stopped = false;
    input::read_extract(
        input::open(&path).map_err(NodeError::from)?,
        &name,
        scan,
        report,
        |row| {
            if err.is_some() || stopped {
                return;
            }
            let id = keys.identity_digest(&row.identity, &mut toks);
            let event = row.event_date.map(|d| d.to_string()).unwrap_or_default();
            let digest = row_digest(
                keys.epoch,
                &[row.record_id.as_bytes(), row.category.as_bytes(), event.as_bytes(), id.part()],
            );
            let previous = match if first { Ok(None) } else { store.record(&row.record_id) } {
                Ok(p) => p,
                Err(e) => {
                    err = Some(e.into());
                    return;
                }
            };
            if previous.is_some_and(|(_, d)| d == digest) {
                unchanged += 1;
                return;
            }
            let rref = keys.local.record_ref(&source, &row.record_id);
            let details = RecordDetails {
                source: source.clone(),
                record_id: row.record_id.clone(),
                category: row.category.clone(),
                event_date: event,
            };
            waiting.push(Waiting {
                record_id: row.record_id,
                identity: row.identity,
                details,
                rref,
                digest,
                fresh: previous.is_none(),
            });
            if waiting.len() >= batch_size {
                match evaluate_and_seal(&mut ks, &source, (keys.epoch, &source_secret), &mut waiting) {
                    // the sender gave up (a batch failed): stop reading
                    Ok(batch) => stopped = tx.blocking_send(batch).is_err(),
                    Err(e) => err = Some(e),
                }
            }
        },
        |_| {},
    )
    .map_err(NodeError::from)?;
    if err.is_none() && !stopped && !waiting.is_empty() {
        match evaluate_and_seal(&mut ks, &source, (keys.epoch, &source_secret), &mut waiting) {
            Ok(batch) => {
                let _ = tx.blocking_send(batch);
            }
            Err(e) => err = Some(e),
        }
    }
    match err {
        Some(e) => Err(e),
        None => Ok(unchanged),
    }
}

/// Scheme 2: one row's tokens, digest and, if it changed since it was last
/// fed, its sealed details (`None` when unchanged).
fn seal_row(
    keys: &Keys,
    sealer: &vigil_identity::seal::Sealer,
    (source, store, first): (&str, &LocalStore, bool),
    row: input::ExtractRow,
    toks: &mut Vec<(vigil_proto::KeyKind, vigil_proto::Token)>,
) -> Result<Option<Up>, NodeError> {
    let id = keys.identity_digest(&row.identity, toks);
    let event = row.event_date.map(|d| d.to_string()).unwrap_or_default();
    let digest =
        row_digest(keys.epoch, &[row.record_id.as_bytes(), row.category.as_bytes(), event.as_bytes(), id.part()]);
    let previous = if first { None } else { store.record(&row.record_id).map_err(NodeError::from)? };
    if previous.is_some_and(|(_, d)| d == digest) {
        return Ok(None);
    }
    let rref = keys.local.record_ref(source, &row.record_id);
    let details = RecordDetails {
        source: source.to_string(),
        record_id: row.record_id.clone(),
        category: row.category,
        event_date: event,
    };
    let sealed = sealer.seal(&rref, &details).map_err(|e| NodeError::failed(e.to_string()))?;
    let rec = NationalRecord {
        record_ref: rref.to_vec().into(),
        tokens: Some(id.into_tokens().unwrap_or_else(|| wire::pack(&*toks))),
        sealed: Some(sealed),
    };
    Ok(Some((row.record_id, rec, rref, digest, previous.is_none())))
}

/// Rows a worker takes at a time.
const CHUNK: usize = 1024;

/// Scheme 2, on every core: this thread reads and normalises rows and
/// hands them out in chunks; workers (one a core) tokenise and seal them;
/// a forwarder puts the results back in file order and hands batches of
/// `batch_size` changed records to `tx`, so the wire order is the file's.
/// Returns the number of unchanged rows. A failure stops the reading; a
/// closed `tx` (the sender gave up) stops it quietly.
#[allow(clippy::too_many_arguments)]
fn read_changes_parallel(
    file: impl std::io::Read,
    name: &str,
    scan: &input::Scan,
    report: &mut Report,
    keys: &Keys,
    sealer: &vigil_identity::seal::Sealer,
    (source, store, first): (&str, &LocalStore, bool),
    (batch_size, workers): (usize, usize),
    tx: tokio::sync::mpsc::Sender<Vec<Up>>,
) -> Result<u64, NodeError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    type Done = (u64, Result<(Vec<Up>, u64), NodeError>);
    let workers = match workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()).min(16),
        n => n,
    };
    let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<(u64, Vec<input::ExtractRow>)>(workers * 2);
    let work_rx = std::sync::Mutex::new(work_rx);
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<Done>(workers * 2);
    let stop = AtomicBool::new(false);
    std::thread::scope(|sc| {
        for _ in 0..workers {
            let (done_tx, work_rx, stop) = (done_tx.clone(), &work_rx, &stop);
            sc.spawn(move || {
                let mut toks = Vec::new();
                loop {
                    let job = match work_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((i, rows)) = job else { return };
                    // Once stopped, work is drained and dropped, so the
                    // reader never waits on a full queue.
                    if stop.load(Ordering::Relaxed) {
                        continue;
                    }
                    let mut out = Vec::with_capacity(rows.len());
                    let mut unchanged = 0u64;
                    let mut failed = None;
                    for row in rows {
                        match seal_row(keys, sealer, (source, store, first), row, &mut toks) {
                            Ok(Some(up)) => out.push(up),
                            Ok(None) => unchanged += 1,
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    let done = match failed {
                        Some(e) => Err(e),
                        None => Ok((out, unchanged)),
                    };
                    if done_tx.send((i, done)).is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
        drop(done_tx);
        let forwarder = sc.spawn(|| -> Result<u64, NodeError> {
            let done_rx = done_rx;
            let (mut next, mut unchanged) = (0u64, 0u64);
            let mut held: std::collections::BTreeMap<u64, Result<(Vec<Up>, u64), NodeError>> = Default::default();
            let mut pending: Vec<Up> = Vec::with_capacity(batch_size);
            for (i, r) in done_rx.iter() {
                held.insert(i, r);
                while let Some(r) = held.remove(&next) {
                    next += 1;
                    let (ups, u) = r.inspect_err(|_| stop.store(true, Ordering::Relaxed))?;
                    unchanged += u;
                    pending.extend(ups);
                    while pending.len() >= batch_size {
                        // Drained, not split off: `pending` keeps its capacity.
                        let batch: Vec<Up> = pending.drain(..batch_size).collect();
                        if tx.blocking_send(batch).is_err() {
                            stop.store(true, Ordering::Relaxed);
                            return Ok(unchanged);
                        }
                    }
                }
            }
            if !pending.is_empty() && !stop.load(Ordering::Relaxed) {
                let _ = tx.blocking_send(pending);
            }
            Ok(unchanged)
        });
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut index = 0u64;
        let read = input::read_extract(
            file,
            name,
            scan,
            report,
            |row| {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                chunk.push(row);
                if chunk.len() == CHUNK {
                    if work_tx.send((index, std::mem::take(&mut chunk))).is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    index += 1;
                }
            },
            |_| {},
        );
        if !chunk.is_empty() && !stop.load(Ordering::Relaxed) {
            let _ = work_tx.send((index, chunk));
        }
        drop(work_tx);
        let forwarded = forwarder.join().map_err(|_| NodeError::failed("the feed's forwarding thread panicked"))?;
        read.map_err(NodeError::from)?;
        forwarded
    })
}

/// Feeds a source's national records.
pub async fn feed(
    cfg: &NodeConfig,
    keys: std::sync::Arc<Keys>,
    store: std::sync::Arc<LocalStore>,
    channel: Channel,
    input_files: FeedInput<'_>,
) -> Result<Summary, NodeError> {
    let source = cfg.code.clone();
    let mut s = Summary::default();
    let known = store.record_count().map_err(NodeError::from)?;
    let (path, full) = match (input_files.extract, input_files.delta) {
        (Some(p), None) => (Some(p), true),
        (None, Some(p)) => (Some(p), false),
        (None, None) => (None, false),
        (Some(_), Some(_)) => return Err(NodeError::config("give either --extract or --delta, not both")),
    };
    // The whole file is checked before anything is sent.
    let scan = match path {
        Some(p) => {
            let report = Report::new(&p.display().to_string(), "extract");
            match input::scan_path(p, input::Kind::Extract) {
                Ok(sc) => Some(sc),
                Err(e) => return Err(refuse_file(cfg, report, e, "feed", input_files.report)),
            }
        }
        None => None,
    };
    // Withdrawals: records the full extract no longer holds, and --withdraw.
    let mut removes: Vec<String> = Vec::new();
    if full && let Some(sc) = &scan {
        store
            .for_each_record(&mut |id, _, _| {
                if !sc.contains(id) {
                    removes.push(id.to_string());
                }
            })
            .map_err(NodeError::from)?;
    }
    if let Some(w) = input_files.withdraw {
        for id in read_withdrawals(w)? {
            if store.record(&id).map_err(NodeError::from)?.is_some() {
                removes.push(id);
            } else {
                s.unknown_withdrawals += 1;
            }
        }
        if s.unknown_withdrawals > 0 {
            tracing::warn!(
                unknown = s.unknown_withdrawals,
                "withdrawals naming records this node never fed (or already withdrew) change nothing"
            );
        }
    }
    removes.sort();
    removes.dedup();
    removal_guard(removes.len(), known, cfg.sync.max_removal_share, input_files.allow_removals, "national records")?;

    let client =
        FeedServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE);
    let retry = Duration::from_secs(cfg.sync.retry_seconds);
    let status = retrying(retry, "feed status", || {
        let mut c = client.clone();
        async move { c.status(StatusRequest {}).await.map(|r| r.into_inner()) }
    })
    .await?;
    check_scheme(&status, &keys)?;
    let mut seq = Sequence::after(status.last_sequence);
    if let (Some(p), Some(sc)) = (path, scan) {
        let key_service = match keys.key_service() {
            true => Some((tokio::runtime::Handle::current(), crate::keyservice::KeyService::connect(cfg).await?)),
            false => None,
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Up>>(4);
        let reader = tokio::task::spawn_blocking({
            let (p, source, keys, store, bs) = (
                p.to_path_buf(),
                source.clone(),
                keys.clone(),
                store.clone(),
                (cfg.sync.batch_size, cfg.sync.feed_workers),
            );
            move || {
                let mut report = Report::new(&p.display().to_string(), "extract");
                let r = read_changes(p, &sc, source, keys, store, known == 0, bs, tx, key_service, &mut report);
                (report, r)
            }
        });
        let pb = progress(0, &format!("feed {source}"));
        let header = (keys.epoch, keys.scheme);
        let failure = send_national_stream(&client, retry, header, &mut seq, &mut rx, &store, &mut s, &pb).await.err();
        drop(rx);
        pb.finish_and_clear();
        let (mut report, read) = reader.await.map_err(|e| NodeError::failed(e.to_string()))?;
        s.rows = report.rows;
        s.refused = report.refused;
        let failure = match (failure, read) {
            (Some(e), _) => Some(e),
            (None, Err(e)) => {
                report.error = Some(e.message().to_string());
                Some(e)
            }
            (None, Ok(unchanged)) => {
                s.unchanged = unchanged;
                None
            }
        };
        s.report = write_report(cfg, &report, "feed", input_files.report)?;
        if let Some(e) = failure {
            let report = s.report.clone();
            let e = e.map_message(|m| format!("{m} (report: {report})"));
            return Err(stopped_after(e, &seq, &s, "feed"));
        }
    }
    let mut rms: Vec<(String, Ref)> = Vec::new();
    for id in removes {
        if let Some((r, _)) = store.record(&id).map_err(NodeError::from)? {
            rms.push((id, r));
        }
    }
    for chunk in rms.chunks(cfg.sync.batch_size) {
        send_national(&client, retry, (keys.epoch, keys.scheme), &mut seq, Vec::new(), chunk.to_vec(), &store, &mut s)
            .await
            .map_err(|e| stopped_after(e, &seq, &s, "feed"))?;
    }
    if s.batches == 0 {
        s.total = status.total;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_identity::seal::Sealer;
    use vigil_identity::tokens::{LinkageKey, LocalSecret, Tokenizer};

    fn keys() -> Keys {
        let linkage = LinkageKey::new(1, [5; 32]);
        Keys {
            tokenizer: Some(Tokenizer::new(&linkage)),
            sealers: vec![Sealer::new(&linkage)],
            local: LocalSecret::new([7; 32]),
            epoch: 1,
            scheme: vigil_proto::kinds::TOKENS_LINKAGE_KEY,
        }
    }

    /// Runs the parallel reader over `path` and returns what it handed on.
    fn run(path: &std::path::Path, store: &LocalStore, first: bool, workers: usize) -> (Vec<Vec<Up>>, u64) {
        let k = keys();
        let scan = input::scan_path(path, input::Kind::Extract).unwrap();
        let mut report = Report::new("extract.csv", "extract");
        let (tx, mut rx) = tokio::sync::mpsc::channel(1000);
        let unchanged = read_changes_parallel(
            input::open(path).unwrap(),
            "extract.csv",
            &scan,
            &mut report,
            &k,
            k.sealer(1).unwrap(),
            ("pnc", store, first),
            (700, workers),
            tx,
        )
        .unwrap();
        let mut batches = Vec::new();
        while let Ok(b) = rx.try_recv() {
            batches.push(b);
        }
        (batches, unchanged)
    }

    #[test]
    fn the_parallel_feed_keeps_the_file_order_and_the_batch_size() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("extract.csv");
        let mut text = String::from(
            "record_id,category,event_date,forenames,surname,alias_names,date_of_birth,alt_dates_of_birth,ni_number,postcode\n",
        );
        for i in 0..2500 {
            text.push_str(&format!("PNC{i:06},other,2020-01-01,Anne{i},Smith,,1980-02-{:02},,,AB1 2CD\n", 1 + i % 28));
        }
        std::fs::write(&path, text).unwrap();
        let store = LocalStore::open(&d.path().join("store")).unwrap();
        let (one, _) = run(&path, &store, true, 1);
        let (three, unchanged) = run(&path, &store, true, 3);
        assert_eq!(unchanged, 0);
        let sizes: Vec<usize> = three.iter().map(Vec::len).collect();
        assert_eq!(sizes, [700, 700, 700, 400]);
        let ids: Vec<&str> = three.iter().flatten().map(|u| u.0.as_str()).collect();
        let want: Vec<String> = (0..2500).map(|i| format!("PNC{i:06}")).collect();
        assert_eq!(ids, want, "records go out in the file's order");
        // The same records, tokens and references whatever the workers.
        let view = |b: &[Vec<Up>]| -> Vec<(String, Vec<u8>)> {
            b.iter().flatten().map(|u| (u.0.clone(), u.1.record_ref.to_vec())).collect()
        };
        assert_eq!(view(&one), view(&three));
        let tokens = |b: &[Vec<Up>]| -> Vec<Option<vigil_proto::v1::TokenSet>> {
            b.iter().flatten().map(|u| u.1.tokens.clone()).collect()
        };
        assert_eq!(tokens(&one), tokens(&three));
    }
}
