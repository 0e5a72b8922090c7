//! Roster sync (force) and national feed (source): diff the file against
//! what this node sent before, then send adds, changes and removes in
//! idempotent batches.
//!
//! - Each batch's id is derived from its content, so a batch retried after
//!   a lost reply is recognised by the coordinator and applied once.
//! - The local store is updated after each acknowledged batch. An
//!   interrupted sync resumes where it stopped when it is run again.
//! - Rows with errors keep their previous enrolment: they are neither
//!   re-sent nor removed. The report says which rows, and why.
//! - A sync or full feed that would remove more than `max_removal_share` of
//!   what is enrolled (a truncated file) is refused before anything is sent,
//!   unless `--allow-removals` is given.

use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use vigil_proto::hex;
use vigil_proto::v1::feed_service_client::FeedServiceClient;
use vigil_proto::v1::roster_service_client::RosterServiceClient;
use vigil_proto::v1::{BatchReceipt, EnrolSubject, NationalBatch, NationalRecord, RecordDetails, RosterBatch};
use vigil_proto::{audit, tokens as wire};

use crate::client::{self, MAX_MESSAGE};
use crate::config::NodeConfig;
use crate::exit::{self, Exit};
use crate::input::{self, InputError, Report};
use crate::keyfile;
use crate::local::{EnrolChange, Enrolled, LocalStore};
use crate::seal::Sealer;
use crate::tokens::{LinkageKey, LocalSecret, Ref, Tokenizer};

/// A node's keys, loaded.
pub struct Keys {
    /// Tokenizer of the current epoch.
    pub tokenizer: Tokenizer,
    /// Sealers: the current epoch first, then earlier ones.
    pub sealers: Vec<Sealer>,
    /// The node-local secret.
    pub local: LocalSecret,
    /// The current epoch.
    pub epoch: u32,
}

impl Keys {
    /// Loads the keys named in the config.
    pub fn load(cfg: &NodeConfig) -> Result<Keys, Exit> {
        let k = cfg.keys.as_ref().ok_or_else(|| Exit::new(exit::CONFIG, "this node has no [keys] section"))?;
        let cfg_err = |e: keyfile::KeyFileError| Exit::new(exit::CONFIG, e.to_string());
        let linkage: LinkageKey = keyfile::read_linkage(&k.linkage).map_err(cfg_err)?;
        let mut sealers = vec![Sealer::new(&linkage)];
        for p in &k.previous_linkage {
            sealers.push(Sealer::new(&keyfile::read_linkage(p).map_err(cfg_err)?));
        }
        Ok(Keys {
            tokenizer: Tokenizer::new(&linkage),
            sealers,
            local: keyfile::read_local(&k.local).map_err(cfg_err)?,
            epoch: linkage.epoch,
        })
    }

    /// The sealer for an epoch.
    pub fn sealer(&self, epoch: u32) -> Option<&Sealer> {
        self.sealers.iter().find(|s| s.epoch() == epoch)
    }
}

/// What a sync or feed did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    /// Rows read from the file.
    pub rows: u64,
    /// Rows refused (previous state kept).
    pub refused: u64,
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
    /// Batches the coordinator had already applied (retries).
    pub replayed: u64,
    /// Total held at the coordinator after the last batch.
    pub total: u64,
    /// Where the input report was written.
    pub report: String,
}

fn input_exit(e: InputError) -> Exit {
    Exit::new(exit::INPUT, e.to_string())
}

fn local_exit(e: crate::local::LocalError) -> Exit {
    Exit::new(exit::FAILURE, e.to_string())
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
fn write_report(cfg: &NodeConfig, report: &Report, name: &str, explicit: Option<&Path>) -> Result<String, Exit> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let dir = cfg.data_dir.join("reports");
            std::fs::create_dir_all(&dir)
                .map_err(|e| Exit::new(exit::FAILURE, format!("creating {}: {e}", dir.display())))?;
            let ms =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
            dir.join(format!("{name}-{ms}.json"))
        }
    };
    let text = serde_json::to_vec_pretty(report).map_err(|e| Exit::new(exit::FAILURE, e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| Exit::new(exit::FAILURE, format!("writing {}: {e}", path.display())))?;
    Ok(path.display().to_string())
}

/// Calls `f` until it succeeds, retrying transient failures for `retry`.
async fn retrying<T, F, Fut>(retry: Duration, what: &str, mut f: F) -> Result<T, Exit>
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
            Err(s) => return Err(client::status_exit(&s, what)),
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

fn removal_guard(removes: usize, enrolled: u64, share: f64, allow: bool, what: &str) -> Result<(), Exit> {
    if allow || enrolled == 0 {
        return Ok(());
    }
    let fraction = removes as f64 / enrolled as f64;
    if fraction > share {
        return Err(Exit::new(
            exit::INPUT,
            format!(
                "refusing to remove {removes} of {enrolled} {what} ({:.1}%, more than {:.0}%): the file may be truncated. \
                 Nothing was sent. If the numbers really fell, run again with --allow-removals",
                fraction * 100.0,
                share * 100.0
            ),
        ));
    }
    Ok(())
}

struct PendingUp {
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
) -> Result<Summary, Exit> {
    let name = roster.display().to_string();
    let mut report = Report::new(&name, "roster");
    let mut rows = Vec::new();
    let mut refused: HashSet<String> = HashSet::new();
    input::read_roster_with(
        input::open(roster).map_err(input_exit)?,
        &name,
        &mut report,
        |r| rows.push(r),
        |id| {
            refused.insert(id.to_string());
        },
    )
    .map_err(input_exit)?;
    let enrolled: HashMap<String, Enrolled> = store.enrolled().map_err(local_exit)?.into_iter().collect();
    let mut ups: Vec<PendingUp> = Vec::new();
    let mut display_only: Vec<EnrolChange> = Vec::new();
    let mut s = Summary { rows: report.rows, refused: report.refused, ..Default::default() };
    let mut present: HashSet<&str> = HashSet::new();
    let mut toks = Vec::new();
    for r in &rows {
        present.insert(&r.employee_id);
        if refused.contains(&r.employee_id) {
            // A duplicated id: neither occurrence is applied.
            continue;
        }
        keys.tokenizer.tokens(&r.identity, &mut toks);
        let set = wire::pack(&toks);
        let digest = hex::encode(&row_digest(keys.epoch, &[&set.tokens]));
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
        if !present.contains(emp.as_str()) && !refused.contains(emp) {
            let p = hex::decode_array::<16>(&e.pseudonym)
                .ok_or_else(|| Exit::new(exit::FAILURE, "corrupt local pseudonym"))?;
            removes.push((emp.clone(), p));
        }
    }
    removes.sort();
    removal_guard(removes.len(), enrolled.len() as u64, cfg.sync.max_removal_share, allow_removals, "enrolled staff")?;
    s.report = write_report(cfg, &report, "sync", report_path)?;
    store.apply_enrolment(&display_only).map_err(local_exit)?;

    let client =
        RosterServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE);
    let retry = Duration::from_secs(cfg.sync.retry_seconds);
    let pb = progress((ups.len() + removes.len()) as u64, &format!("sync {}", cfg.code));
    let bs = cfg.sync.batch_size;
    let mut ups = ups.into_iter().peekable();
    let mut removes = removes.into_iter().peekable();
    while ups.peek().is_some() || removes.peek().is_some() {
        let chunk_ups: Vec<PendingUp> = ups.by_ref().take(bs).collect();
        let room = bs - chunk_ups.len();
        let chunk_rm: Vec<(String, Ref)> = removes.by_ref().take(room).collect();
        let mut batch = RosterBatch {
            batch_id: String::new(),
            epoch: keys.epoch,
            upserts: chunk_ups.iter().map(|u| u.subject.clone()).collect(),
            removes: chunk_rm.iter().map(|(_, p)| p.to_vec().into()).collect(),
        };
        batch.batch_id = format!("r-{}", &audit::roster_commitment(&batch)[..32]);
        let receipt: BatchReceipt = retrying(retry, "roster sync", || {
            let mut c = client.clone();
            let b = batch.clone();
            async move { c.sync(b).await.map(|r| r.into_inner()) }
        })
        .await?;
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
        store.apply_enrolment(&changes).map_err(local_exit)?;
        s.batches += 1;
        s.replayed += u64::from(receipt.replayed);
        s.total = receipt.total;
        pb.inc(changes.len() as u64);
    }
    pb.finish_and_clear();
    if s.batches == 0 {
        s.total = store.enrolled_count().map_err(local_exit)?;
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

fn read_withdrawals(path: &Path) -> Result<Vec<String>, Exit> {
    let bad = |m: String| Exit::new(exit::INPUT, format!("{}: {m}", path.display()));
    let mut rdr = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
    let h = rdr.headers().map_err(|e| bad(e.to_string()))?.clone();
    if h.iter().map(str::trim).collect::<Vec<_>>() != ["record_id"] {
        return Err(bad("header must be exactly: record_id".into()));
    }
    let mut ids = Vec::new();
    for (i, r) in rdr.records().enumerate() {
        let r = r.map_err(|e| bad(format!("row {}: {e}", i + 1)))?;
        let id = r.get(0).unwrap_or("").trim();
        if id.is_empty() {
            return Err(bad(format!("row {}: empty record_id", i + 1)));
        }
        ids.push(id.to_string());
    }
    Ok(ids)
}

type Up = (String, NationalRecord, Ref, [u8; 32], bool);

async fn send_national(
    client: &mut FeedServiceClient<Channel>,
    retry: Duration,
    epoch: u32,
    ups: Vec<Up>,
    rms: Vec<(String, Ref)>,
    store: &LocalStore,
    s: &mut Summary,
) -> Result<(), Exit> {
    let mut batch = NationalBatch {
        batch_id: String::new(),
        epoch,
        upserts: ups.iter().map(|u| u.1.clone()).collect(),
        removes: rms.iter().map(|r| r.1.to_vec().into()).collect(),
    };
    batch.batch_id = format!("n-{}", &audit::national_commitment(&batch)[..32]);
    let receipt: BatchReceipt = retrying(retry, "national feed", || {
        let mut c = client.clone();
        let b = batch.clone();
        async move { c.feed(b).await.map(|r| r.into_inner()) }
    })
    .await?;
    let put: Vec<(String, Ref, [u8; 32])> = ups.iter().map(|u| (u.0.clone(), u.2, u.3)).collect();
    let rm: Vec<String> = rms.iter().map(|r| r.0.clone()).collect();
    store.apply_records(&put, &rm).map_err(local_exit)?;
    for u in &ups {
        if u.4 {
            s.added += 1;
        } else {
            s.changed += 1;
        }
    }
    s.removed += rms.len() as u64;
    s.batches += 1;
    s.replayed += u64::from(receipt.replayed);
    s.total = receipt.total;
    Ok(())
}

/// Reads an extract or delta on a blocking thread, handing batches of
/// changed records to `tx` (bounded, so memory stays at a few batches).
fn read_changes(
    path: PathBuf,
    source: String,
    keys: std::sync::Arc<Keys>,
    store: std::sync::Arc<LocalStore>,
    batch_size: usize,
    tx: tokio::sync::mpsc::Sender<Vec<Up>>,
) -> Result<(Report, u64), Exit> {
    let name = path.display().to_string();
    let mut report = Report::new(&name, "extract");
    let sealer =
        keys.sealer(keys.epoch).ok_or_else(|| Exit::new(exit::CONFIG, "no sealing key for the current epoch"))?;
    let mut pending: Vec<Up> = Vec::with_capacity(batch_size);
    let mut toks = Vec::new();
    let mut unchanged = 0u64;
    let mut err: Option<Exit> = None;
    let mut stopped = false;
    input::read_extract_with(
        input::open(&path).map_err(input_exit)?,
        &name,
        &mut report,
        |row| {
            if err.is_some() || stopped {
                return;
            }
            keys.tokenizer.tokens(&row.identity, &mut toks);
            let event = row.event_date.map(|d| d.to_string()).unwrap_or_default();
            let set = wire::pack(&toks);
            let digest = row_digest(
                keys.epoch,
                &[row.record_id.as_bytes(), row.category.as_bytes(), event.as_bytes(), &set.tokens],
            );
            let previous = match store.record(&row.record_id) {
                Ok(p) => p,
                Err(e) => {
                    err = Some(local_exit(e));
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
            match sealer.seal(&rref, &details) {
                Ok(sealed) => {
                    let rec =
                        NationalRecord { record_ref: rref.to_vec().into(), tokens: Some(set), sealed: Some(sealed) };
                    pending.push((row.record_id.clone(), rec, rref, digest, previous.is_none()));
                    if pending.len() >= batch_size && tx.blocking_send(std::mem::take(&mut pending)).is_err() {
                        // the sender gave up (a batch failed): stop reading
                        stopped = true;
                    }
                }
                Err(e) => err = Some(Exit::new(exit::FAILURE, e.to_string())),
            }
        },
        |_| {},
    )
    .map_err(input_exit)?;
    if let Some(e) = err {
        return Err(e);
    }
    if !pending.is_empty() {
        let _ = tx.blocking_send(pending);
    }
    Ok((report, unchanged))
}

/// Feeds a source's national records.
pub async fn feed(
    cfg: &NodeConfig,
    keys: std::sync::Arc<Keys>,
    store: std::sync::Arc<LocalStore>,
    channel: Channel,
    input_files: FeedInput<'_>,
) -> Result<Summary, Exit> {
    let source = cfg.code.clone();
    let mut s = Summary::default();
    let known = store.record_count().map_err(local_exit)?;
    let (path, full) = match (input_files.extract, input_files.delta) {
        (Some(p), None) => (Some(p), true),
        (None, Some(p)) => (Some(p), false),
        (None, None) => (None, false),
        (Some(_), Some(_)) => return Err(Exit::new(exit::CONFIG, "give either --extract or --delta, not both")),
    };
    // Withdrawals: records the full extract no longer holds, and --withdraw.
    let mut removes: Vec<String> = Vec::new();
    if full && let Some(p) = path {
        let name = p.display().to_string();
        let ids = input::read_ids(input::open(p).map_err(input_exit)?, &name, "extract").map_err(input_exit)?;
        store
            .for_each_record(&mut |id, _, _| {
                if !ids.contains(&input::id_hash(id)) {
                    removes.push(id.to_string());
                }
            })
            .map_err(local_exit)?;
    }
    if let Some(w) = input_files.withdraw {
        for id in read_withdrawals(w)? {
            if store.record(&id).map_err(local_exit)?.is_some() {
                removes.push(id);
            } else {
                s.refused += 1;
            }
        }
        if s.refused > 0 {
            tracing::warn!(unknown = s.refused, "withdrawals naming records this node never fed were ignored");
        }
    }
    removes.sort();
    removes.dedup();
    removal_guard(removes.len(), known, cfg.sync.max_removal_share, input_files.allow_removals, "national records")?;

    let mut client =
        FeedServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE);
    let retry = Duration::from_secs(cfg.sync.retry_seconds);
    if let Some(p) = path {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Up>>(4);
        let reader = tokio::task::spawn_blocking({
            let (p, source, keys, store, bs) =
                (p.to_path_buf(), source.clone(), keys.clone(), store.clone(), cfg.sync.batch_size);
            move || read_changes(p, source, keys, store, bs, tx)
        });
        let pb = progress(0, &format!("feed {source}"));
        let mut failure = None;
        while let Some(batch) = rx.recv().await {
            let n = batch.len() as u64;
            pb.inc_length(n);
            if let Err(e) = send_national(&mut client, retry, keys.epoch, batch, Vec::new(), &store, &mut s).await {
                failure = Some(e);
                break;
            }
            pb.inc(n);
        }
        drop(rx);
        pb.finish_and_clear();
        let (report, unchanged) = reader.await.map_err(|e| Exit::new(exit::FAILURE, e.to_string()))??;
        if let Some(e) = failure {
            return Err(e);
        }
        s.rows = report.rows;
        s.unchanged = unchanged;
        s.refused += report.refused;
        s.report = write_report(cfg, &report, "feed", input_files.report)?;
    }
    let mut rms: Vec<(String, Ref)> = Vec::new();
    for id in removes {
        if let Some((r, _)) = store.record(&id).map_err(local_exit)? {
            rms.push((id, r));
        }
    }
    for chunk in rms.chunks(cfg.sync.batch_size) {
        send_national(&mut client, retry, keys.epoch, Vec::new(), chunk.to_vec(), &store, &mut s).await?;
    }
    if s.batches == 0 {
        s.total = store.record_count().map_err(local_exit)?;
    }
    Ok(s)
}
