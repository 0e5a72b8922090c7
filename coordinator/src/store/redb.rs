//! The embedded store: one redb file in the data directory. redb commits
//! are copy-on-write with fsync (durability `Immediate`), so a commit is
//! either wholly on disk or not at all, whenever the process dies.
//!
//! Acknowledgements are the one exception. They are committed without an
//! fsync (durability `None`) and reach the disk with the next batch, with
//! the first acknowledgement more than [`ACK_SYNC_INTERVAL`] after the last
//! durable commit, with [`Store::flush`] (the server calls it every second
//! and as it stops), or when the store closes. A crash loses at most that
//! window of acknowledgements, and the lost ones are simply delivered again:
//! delivery is at-least-once and nodes store a disclosure id once. Without
//! this, 43 watchers acknowledging during a national feed queued an fsync
//! each in front of the feed's own commits.

use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::Path;

use vigil_proto::kinds::KindSet;

use super::{
    ActiveRow, Commit, RecordRow, Ref, SenderState, Store, StoreError, StoreRead, StoredToken, SubjectRow, pack_tokens,
    unpack_tokens,
};

/// name 0x00 pseudonym → packed tokens
const SUBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("subjects");
/// record sequence number → name 0x00 ref, u32 token-bytes length, packed
/// tokens, sealed. Keyed by a counter so that a batch's records append to
/// fresh pages instead of rewriting pages all over a tree of random keys.
/// Which sequence holds a given (source, reference) is kept in memory
/// ([`RefMap`]), rebuilt by the first pass over this table (the engine's load
/// at start-up), or when first needed if that comes earlier: an on-disk
/// index of random references would bring back the page rewriting (at a
/// million records, 10,000 random inserts touch most of its pages).
const RECORD_DATA: TableDefinition<u64, &[u8]> = TableDefinition::new("record_data");
/// caller → u64 sequence, u16 commitment length, commitment, encoded
/// receipt: the last batch applied for each sender.
const SENDERS: TableDefinition<&str, &[u8]> = TableDefinition::new("senders");
/// force 0x00 seq (8 bytes BE) → encoded disclosure
const DISCLOSURES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("disclosures");
/// force 0x00 seq → (empty): not yet acknowledged
const PENDING: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pending");
/// force 0x00 pseudonym source 0x00 ref → u32 version, u64 agreeing kinds,
/// f64 probability, disclosure id
const ACTIVE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("active_cases");
/// leaf index → entry
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// tree size → signed checkpoint
const CHECKPOINTS: TableDefinition<u64, &str> = TableDefinition::new("checkpoints");
/// name → value
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The `META` key of the store's format version.
const FORMAT_KEY: &str = "store_format";
/// The format this code reads and writes: 2 since batches carry sequence
/// numbers and disclosures versions; 3 since tokens are of match-key scheme
/// 2 and disclosures carry a probability; 4 since each stored token's last
/// bit is the parity of its epoch (so that two epochs can be served at
/// once and the old one dropped).
pub const FORMAT: u32 = 4;

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

fn key(name: &str, tail: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1 + tail.len());
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.extend_from_slice(tail);
    k
}

fn split_key(k: &[u8]) -> Result<(String, &[u8]), StoreError> {
    let i = k.iter().position(|b| *b == 0).ok_or_else(|| err("corrupt key"))?;
    Ok((String::from_utf8_lossy(&k[..i]).into_owned(), &k[i + 1..]))
}

fn to_ref(b: &[u8]) -> Result<Ref, StoreError> {
    b.try_into().map_err(|_| err("corrupt reference"))
}

fn active_key(force: &str, pseudonym: &Ref, source: &str, record_ref: &Ref) -> Vec<u8> {
    let mut k = key(force, pseudonym);
    k.extend_from_slice(&key(source, record_ref));
    k
}

fn record_value(k: &[u8], tokens: &[StoredToken], sealed: &[u8]) -> Vec<u8> {
    let t = pack_tokens(tokens);
    let mut v = Vec::with_capacity(2 + k.len() + 4 + t.len() + sealed.len());
    v.extend_from_slice(&(k.len() as u16).to_be_bytes());
    v.extend_from_slice(k);
    v.extend_from_slice(&(t.len() as u32).to_be_bytes());
    v.extend_from_slice(&t);
    v.extend_from_slice(sealed);
    v
}

fn sender_value(b: &SenderState) -> Vec<u8> {
    let mut v = Vec::with_capacity(10 + b.commitment.len() + b.receipt.len());
    v.extend_from_slice(&b.sequence.to_be_bytes());
    v.extend_from_slice(&(b.commitment.len() as u16).to_be_bytes());
    v.extend_from_slice(b.commitment.as_bytes());
    v.extend_from_slice(&b.receipt);
    v
}

fn parse_sender(caller: &str, v: &[u8]) -> Result<SenderState, StoreError> {
    let bad = || err("corrupt sender state");
    let sequence = u64::from_be_bytes(v.get(..8).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
    let n = u16::from_be_bytes(v.get(8..10).ok_or_else(bad)?.try_into().map_err(|_| bad())?) as usize;
    let commitment = std::str::from_utf8(v.get(10..10 + n).ok_or_else(bad)?).map_err(|_| bad())?.to_string();
    Ok(SenderState { caller: caller.to_string(), sequence, commitment, receipt: v[10 + n..].to_vec() })
}

/// A stored record's source and reference alone, nothing allocated (the
/// reference map is built from these when needed before any load).
fn record_key(v: &[u8]) -> Result<(&[u8], Ref), StoreError> {
    let bad = || err("corrupt record");
    let kl = u16::from_be_bytes([*v.first().ok_or_else(bad)?, *v.get(1).ok_or_else(bad)?]) as usize;
    let k = v.get(2..2 + kl).ok_or_else(bad)?;
    let i = k.iter().position(|b| *b == 0).ok_or_else(|| err("corrupt key"))?;
    Ok((&k[..i], to_ref(&k[i + 1..])?))
}

fn parse_record(v: &[u8], with_sealed: bool) -> Result<RecordRow, StoreError> {
    let kl = u16::from_be_bytes([
        *v.first().ok_or_else(|| err("corrupt record"))?,
        *v.get(1).ok_or_else(|| err("corrupt record"))?,
    ]) as usize;
    let k = v.get(2..2 + kl).ok_or_else(|| err("corrupt record"))?;
    let (source, rr) = split_key(k)?;
    let record_ref = to_ref(rr)?;
    let v = &v[2 + kl..];
    if v.len() < 4 {
        return Err(err("corrupt record"));
    }
    let n = u32::from_be_bytes([v[0], v[1], v[2], v[3]]) as usize;
    let t = v.get(4..4 + n).ok_or_else(|| err("corrupt record"))?;
    let sealed = if with_sealed { v[4 + n..].to_vec() } else { Vec::new() };
    Ok(RecordRow { source, record_ref, tokens: unpack_tokens(t)?, sealed })
}

/// The error of a reference map lock poisoned by a panic.
fn poisoned<T>(_: T) -> StoreError {
    err("reference map lock poisoned")
}

/// (source, reference) → sequence of the record's row in `RECORD_DATA`.
/// Built on first use, or by the first full pass over the records (a
/// coordinator's load at start-up), so that a start reads the records once.
#[derive(Default)]
struct RefMap {
    built: bool,
    sources: Vec<String>,
    map: std::collections::HashMap<(u16, Ref), u64>,
}

impl RefMap {
    fn source(&mut self, s: &str) -> u16 {
        match self.sources.iter().position(|x| x == s) {
            Some(i) => i as u16,
            None => {
                self.sources.push(s.to_string());
                (self.sources.len() - 1) as u16
            }
        }
    }

    /// An empty map, marked built, with room for `n` records.
    fn with_capacity(n: u64) -> RefMap {
        let mut m = RefMap { built: true, ..RefMap::default() };
        m.map.reserve(usize::try_from(n).unwrap_or(0));
        m
    }

    fn insert(&mut self, source: &str, r: Ref, seq: u64) {
        let s = self.source(source);
        self.map.insert((s, r), seq);
    }

    fn get(&self, s: &str, r: &Ref) -> Option<u64> {
        let i = self.sources.iter().position(|x| x == s)? as u16;
        self.map.get(&(i, *r)).copied()
    }
}

/// The redb-backed store.
pub struct RedbStore {
    db: Database,
    refs: std::sync::RwLock<RefMap>,
    /// When the first acknowledgement not yet on disk was committed.
    unsynced_since: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How long acknowledgements may stay off the disk while more arrive.
pub const ACK_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl RedbStore {
    /// Opens (or creates) `dir/coordinator.redb`.
    pub fn open(dir: &Path) -> Result<RedbStore, StoreError> {
        vigil_common::secrets::private_dir(dir).map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join("coordinator.redb");
        let told = std::sync::atomic::AtomicBool::new(false);
        let db = Database::builder()
            .set_cache_size(256 * 1024 * 1024)
            .set_repair_callback(move |r| {
                if !told.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(
                        progress = r.progress(),
                        "the store was not closed cleanly: repairing it (reads the whole file) before loading"
                    );
                }
            })
            .create(&path)
            .map_err(|e| err(format!("opening {}: {e}", path.display())))?;
        let w = db.begin_write().map_err(err)?;
        {
            w.open_table(SUBJECTS).map_err(err)?;
            w.open_table(RECORD_DATA).map_err(err)?;
            w.open_table(SENDERS).map_err(err)?;
            w.open_table(DISCLOSURES).map_err(err)?;
            w.open_table(PENDING).map_err(err)?;
            w.open_table(ACTIVE).map_err(err)?;
            w.open_table(LOG).map_err(err)?;
            w.open_table(CHECKPOINTS).map_err(err)?;
            w.open_table(META).map_err(err)?;
        }
        {
            let mut m = w.open_table(META).map_err(err)?;
            let format = m.get(FORMAT_KEY).map_err(err)?.map(|v| v.value().to_vec());
            match format {
                Some(f) if f == FORMAT.to_be_bytes() => {}
                Some(f) => {
                    return Err(err(format!(
                        "{} was written in store format {}; this coordinator reads format {FORMAT} only \
                         (format 4 marks each token with its epoch's parity). Start from an empty data directory \
                         and have every force and source send again",
                        path.display(),
                        f.iter().fold(0u64, |a, b| a << 8 | u64::from(*b))
                    )));
                }
                None if w.open_table(LOG).map_err(err)?.len().map_err(err)? > 0 => {
                    return Err(err(format!(
                        "{} was written by an earlier Vigil (store format 1: batches named by content, \
                         disclosures without versions); this coordinator reads format {FORMAT}. \
                         Start from an empty data directory and have every force and source send again",
                        path.display()
                    )));
                }
                None => {
                    m.insert(FORMAT_KEY, FORMAT.to_be_bytes().as_slice()).map_err(err)?;
                }
            }
        }
        w.commit().map_err(err)?;
        Ok(RedbStore {
            db,
            refs: std::sync::RwLock::new(RefMap::default()),
            unsynced_since: std::sync::Mutex::new(None),
        })
    }

    /// The reference map, built first if no pass over the records has yet.
    fn refs(&self) -> Result<std::sync::RwLockReadGuard<'_, RefMap>, StoreError> {
        {
            let refs = self.refs.read().map_err(poisoned)?;
            if refs.built {
                return Ok(refs);
            }
        }
        {
            let mut refs = self.refs.write().map_err(poisoned)?;
            if !refs.built {
                let r = self.db.begin_read().map_err(err)?;
                let t = r.open_table(RECORD_DATA).map_err(err)?;
                let mut built = RefMap::with_capacity(t.len().map_err(err)?);
                for item in t.iter().map_err(err)? {
                    let (k, v) = item.map_err(err)?;
                    let (source, record_ref) = record_key(v.value())?;
                    built.insert(&String::from_utf8_lossy(source), record_ref, k.value());
                }
                *refs = built;
            }
        }
        self.refs.read().map_err(poisoned)
    }

    /// Notes that everything committed so far is on disk. Called after a
    /// durable commit (the redb writer is released by then, so the lock
    /// order is always: writer, then this mutex).
    fn synced(&self) {
        if let Ok(mut u) = self.unsynced_since.lock() {
            *u = None;
        }
    }

    fn sync(&self) -> Result<(), StoreError> {
        if self.unsynced_since.lock().map_err(|_| err("store lock poisoned"))?.is_none() {
            return Ok(());
        }
        // An empty durable commit persists the non-durable ones before it.
        self.db.begin_write().map_err(err)?.commit().map_err(err)?;
        self.synced();
        Ok(())
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::warn!(error = %e, "acknowledgements not written at close: they will be delivered again");
        }
    }
}

impl StoreRead for RedbStore {
    fn for_each_subject(&self, f: &mut dyn FnMut(SubjectRow)) -> Result<(), StoreError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(SUBJECTS).map_err(err)?;
        for item in t.iter().map_err(err)? {
            let (k, v) = item.map_err(err)?;
            let (force, p) = split_key(k.value())?;
            f(SubjectRow { force, pseudonym: to_ref(p)?, tokens: unpack_tokens(v.value())? });
        }
        Ok(())
    }

    fn for_each_record(&self, f: &mut dyn FnMut(RecordRow)) -> Result<(), StoreError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(RECORD_DATA).map_err(err)?;
        // The first pass (the load at start-up) builds the reference map
        // as it goes, from the same snapshot; a commit in the meantime
        // builds its own first, and then this one is dropped.
        let building = !self.refs.read().map_err(poisoned)?.built;
        let mut built = if building { RefMap::with_capacity(t.len().map_err(err)?) } else { RefMap::default() };
        for item in t.iter().map_err(err)? {
            let (k, v) = item.map_err(err)?;
            let row = parse_record(v.value(), false)?;
            if building {
                built.insert(&row.source, row.record_ref, k.value());
            }
            f(row);
        }
        if building {
            let mut refs = self.refs.write().map_err(poisoned)?;
            if !refs.built {
                *refs = built;
            }
        }
        Ok(())
    }

    fn for_each_active(&self, f: &mut dyn FnMut(ActiveRow)) -> Result<(), StoreError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(ACTIVE).map_err(err)?;
        for item in t.iter().map_err(err)? {
            let (k, v) = item.map_err(err)?;
            let (force, rest) = split_key(k.value())?;
            let pseudonym = to_ref(rest.get(..16).ok_or_else(|| err("corrupt active key"))?)?;
            let (source, rr) = split_key(&rest[16..])?;
            let v = v.value();
            if v.len() < 20 {
                return Err(err("corrupt disclosure in force"));
            }
            let corrupt = |_| err("corrupt disclosure in force");
            let version = u32::from_be_bytes(v[0..4].try_into().map_err(corrupt)?);
            let bits = u64::from_be_bytes(v[4..12].try_into().map_err(corrupt)?);
            let agreeing = KindSet(u32::try_from(bits).map_err(|_| err("corrupt kinds of a disclosure in force"))?);
            let probability = f64::from_be_bytes(v[12..20].try_into().map_err(corrupt)?);
            let disclosure_id = String::from_utf8(v[20..].to_vec()).map_err(|_| err("corrupt disclosure id"))?;
            f(ActiveRow {
                force,
                pseudonym,
                source,
                record_ref: to_ref(rr)?,
                disclosure_id,
                version,
                agreeing,
                probability,
            });
        }
        Ok(())
    }

    fn for_each_log_entry(&self, f: &mut dyn FnMut(u64, &[u8])) -> Result<(), StoreError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(LOG).map_err(err)?;
        for item in t.iter().map_err(err)? {
            let (k, v) = item.map_err(err)?;
            f(k.value(), v.value());
        }
        Ok(())
    }

    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(CHECKPOINTS).map_err(err)?;
        Ok(t.last().map_err(err)?.map(|(k, v)| (k.value(), v.value().to_string())))
    }

    fn meta(&self, k: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(META).map_err(err)?;
        Ok(t.get(k).map_err(err)?.map(|v| v.value().to_vec()))
    }

    fn sender(&self, caller: &str) -> Result<Option<SenderState>, StoreError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(SENDERS).map_err(err)?;
        t.get(caller).map_err(err)?.map(|v| parse_sender(caller, v.value())).transpose()
    }

    fn subject(&self, force: &str, pseudonym: &Ref) -> Result<Option<Vec<StoredToken>>, StoreError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(SUBJECTS).map_err(err)?;
        t.get(key(force, pseudonym).as_slice()).map_err(err)?.map(|v| unpack_tokens(v.value())).transpose()
    }

    fn record(&self, source: &str, record_ref: &Ref) -> Result<Option<RecordRow>, StoreError> {
        let Some(seq) = self.refs()?.get(source, record_ref) else {
            return Ok(None);
        };
        let r = self.db.begin_read().map_err(err)?;
        let data = r.open_table(RECORD_DATA).map_err(err)?;
        data.get(seq).map_err(err)?.map(|v| parse_record(v.value(), true)).transpose()
    }

    fn last_sequences(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let r = self.db.begin_read().map_err(err)?;
        let d = r.open_table(DISCLOSURES).map_err(err)?;
        let mut out: Vec<(String, u64)> = Vec::new();
        for item in d.iter().map_err(err)? {
            let (k, _) = item.map_err(err)?;
            let (force, seq) = split_key(k.value())?;
            let seq = u64::from_be_bytes(seq.try_into().map_err(|_| err("corrupt sequence"))?);
            match out.last_mut() {
                Some((f, s)) if *f == force => *s = (*s).max(seq),
                _ => out.push((force, seq)),
            }
        }
        Ok(out)
    }
}

impl Store for RedbStore {
    fn commit(&self, c: &Commit) -> Result<(), StoreError> {
        let mut staged: std::collections::HashMap<(String, Ref), Option<u64>> = std::collections::HashMap::new();
        let w = self.db.begin_write().map_err(err)?;
        if c.shred_parity.is_some() {
            let mut t = w.open_table(SUBJECTS).map_err(err)?;
            let mut rewrite: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
            for item in t.iter().map_err(err)? {
                let (k, v) = item.map_err(err)?;
                let old = unpack_tokens(v.value())?;
                let kept = super::surviving(&old, c.shred_parity);
                if kept.len() != old.len() {
                    rewrite.push((k.value().to_vec(), (!kept.is_empty()).then(|| pack_tokens(&kept))));
                }
            }
            for (k, v) in rewrite {
                match v {
                    Some(v) => t.insert(k.as_slice(), v.as_slice()).map_err(err)?,
                    None => t.remove(k.as_slice()).map_err(err)?,
                };
            }
            // Records are rewritten one at a time (a national store does
            // not fit in memory twice): first which ones, then each.
            let mut data = w.open_table(RECORD_DATA).map_err(err)?;
            let mut seqs: Vec<u64> = Vec::new();
            for item in data.iter().map_err(err)? {
                let (seq, v) = item.map_err(err)?;
                let row = parse_record(v.value(), false)?;
                if super::surviving(&row.tokens, c.shred_parity).len() != row.tokens.len() {
                    seqs.push(seq.value());
                }
            }
            for seq in seqs {
                let Some(v) = data.get(seq).map_err(err)?.map(|v| v.value().to_vec()) else { continue };
                let mut row = parse_record(&v, true)?;
                row.tokens = super::surviving(&row.tokens, c.shred_parity);
                if row.tokens.is_empty() {
                    data.remove(seq).map_err(err)?;
                    staged.insert((row.source.clone(), row.record_ref), None);
                } else {
                    let k = key(&row.source, &row.record_ref);
                    data.insert(seq, record_value(&k, &row.tokens, &row.sealed).as_slice()).map_err(err)?;
                }
            }
        }
        {
            let mut t = w.open_table(SUBJECTS).map_err(err)?;
            for (force, p) in &c.subjects_del {
                t.remove(key(force, p).as_slice()).map_err(err)?;
            }
            // Inserting in key order touches each B-tree page once.
            let mut rows: Vec<(Vec<u8>, Vec<u8>)> =
                c.subjects_put.iter().map(|s| (key(&s.force, &s.pseudonym), pack_tokens(&s.tokens))).collect();
            rows.sort_unstable();
            for (k, v) in &rows {
                t.insert(k.as_slice(), v.as_slice()).map_err(err)?;
            }
            let mut data = w.open_table(RECORD_DATA).map_err(err)?;
            let refs = self.refs()?;
            // Changes to the reference map, applied once the commit succeeds.
            for (source, r) in &c.records_del {
                if let Some(seq) = staged.get(&(source.clone(), *r)).copied().flatten().or_else(|| refs.get(source, r))
                {
                    data.remove(seq).map_err(err)?;
                }
                staged.insert((source.clone(), *r), None);
            }
            let first = data.last().map_err(err)?.map_or(0, |(k, _)| k.value() + 1);
            for (next, r) in (first..).zip(&c.records_put) {
                let k = key(&r.source, &r.record_ref);
                let id = (r.source.clone(), r.record_ref);
                let old = match staged.get(&id) {
                    Some(s) => *s,
                    None => refs.get(&r.source, &r.record_ref),
                };
                if let Some(old) = old {
                    data.remove(old).map_err(err)?;
                }
                data.insert(next, record_value(&k, &r.tokens, &r.sealed).as_slice()).map_err(err)?;
                staged.insert(id, Some(next));
            }
            let mut t = w.open_table(SENDERS).map_err(err)?;
            for b in &c.batches {
                t.insert(b.caller.as_str(), sender_value(b).as_slice()).map_err(err)?;
            }
            drop(t);
            let mut d = w.open_table(DISCLOSURES).map_err(err)?;
            let mut p = w.open_table(PENDING).map_err(err)?;
            for row in &c.disclosures {
                let k = key(&row.force, &row.seq.to_be_bytes());
                d.insert(k.as_slice(), row.message.as_slice()).map_err(err)?;
                p.insert(k.as_slice(), [].as_slice()).map_err(err)?;
            }
            let mut a = w.open_table(ACTIVE).map_err(err)?;
            for (f, s, src, r) in &c.active_del {
                a.remove(active_key(f, s, src, r).as_slice()).map_err(err)?;
            }
            for row in &c.active_put {
                let mut v = Vec::with_capacity(20 + row.disclosure_id.len());
                v.extend_from_slice(&row.version.to_be_bytes());
                v.extend_from_slice(&u64::from(row.agreeing.0).to_be_bytes());
                v.extend_from_slice(&row.probability.to_be_bytes());
                v.extend_from_slice(row.disclosure_id.as_bytes());
                a.insert(active_key(&row.force, &row.pseudonym, &row.source, &row.record_ref).as_slice(), v.as_slice())
                    .map_err(err)?;
            }
            let mut l = w.open_table(LOG).map_err(err)?;
            let size = l.len().map_err(err)?;
            for (i, (index, entry)) in c.log.iter().enumerate() {
                if *index != size + i as u64 {
                    return Err(err(format!("log entry {index} does not follow the log's size {size}")));
                }
                l.insert(*index, entry.as_slice()).map_err(err)?;
            }
            if let Some((size, note)) = &c.checkpoint {
                let mut t = w.open_table(CHECKPOINTS).map_err(err)?;
                t.insert(*size, note.as_str()).map_err(err)?;
            }
            let mut m = w.open_table(META).map_err(err)?;
            for (k, v) in &c.meta {
                m.insert(k.as_str(), v.as_slice()).map_err(err)?;
            }
        }
        w.commit().map_err(err)?;
        self.synced();
        let mut refs = self.refs.write().map_err(poisoned)?;
        for ((source, r), seq) in staged {
            let s = refs.source(&source);
            match seq {
                Some(q) => refs.map.insert((s, r), q),
                None => refs.map.remove(&(s, r)),
            };
        }
        Ok(())
    }

    fn log_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(LOG).map_err(err)?;
        let mut out = Vec::new();
        for item in t.range(start..end).map_err(err)? {
            let (_, v) = item.map_err(err)?;
            out.push(v.value().to_vec());
        }
        Ok(out)
    }

    fn pending(&self, force: &str, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let r = self.db.begin_read().map_err(err)?;
        let p = r.open_table(PENDING).map_err(err)?;
        let d = r.open_table(DISCLOSURES).map_err(err)?;
        let start = key(force, &(after.saturating_add(1)).to_be_bytes());
        let end = key(force, &u64::MAX.to_be_bytes());
        let mut out = Vec::new();
        for item in p.range(start.as_slice()..=end.as_slice()).map_err(err)? {
            if out.len() >= limit {
                break;
            }
            let (k, _) = item.map_err(err)?;
            let (_, seq) = split_key(k.value())?;
            let seq = u64::from_be_bytes(seq.try_into().map_err(|_| err("corrupt sequence"))?);
            let msg = d.get(k.value()).map_err(err)?.ok_or_else(|| err("pending disclosure without its message"))?;
            out.push((seq, msg.value().to_vec()));
        }
        Ok(out)
    }

    fn acknowledge(&self, force: &str, seqs: &[u64]) -> Result<u64, StoreError> {
        let mut w = self.db.begin_write().map_err(err)?;
        let mut unsynced = self.unsynced_since.lock().map_err(|_| err("store lock poisoned"))?;
        let now = std::time::Instant::now();
        let durable = unsynced.is_some_and(|t| now.duration_since(t) >= ACK_SYNC_INTERVAL);
        if !durable {
            w.set_durability(Durability::None).map_err(err)?;
        }
        let mut n = 0;
        {
            let mut p = w.open_table(PENDING).map_err(err)?;
            for s in seqs {
                if p.remove(key(force, &s.to_be_bytes()).as_slice()).map_err(err)?.is_some() {
                    n += 1;
                }
            }
        }
        w.commit().map_err(err)?;
        *unsynced = if durable { None } else { Some(unsynced.unwrap_or(now)) };
        Ok(n)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.sync()
    }

    fn pending_count(&self, force: &str) -> Result<u64, StoreError> {
        let r = self.db.begin_read().map_err(err)?;
        let p = r.open_table(PENDING).map_err(err)?;
        let start = key(force, &0u64.to_be_bytes());
        let end = key(force, &u64::MAX.to_be_bytes());
        Ok(p.range(start.as_slice()..=end.as_slice()).map_err(err)?.count() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DisclosureRow;
    use vigil_proto::KeyKind;

    #[test]
    fn commit_read_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(dir.path()).unwrap();
        let c = Commit {
            subjects_put: vec![SubjectRow {
                force: "gmp".into(),
                pseudonym: [1; 16],
                tokens: vec![(KeyKind::Nino, [9; 16])],
            }],
            records_put: vec![RecordRow {
                source: "pnc".into(),
                record_ref: [2; 16],
                tokens: vec![(KeyKind::NameDob, [8; 16])],
                sealed: vec![5, 5, 5],
            }],
            batches: vec![SenderState {
                caller: "force/gmp".into(),
                sequence: 1,
                commitment: "c1".into(),
                receipt: vec![1, 2],
            }],
            disclosures: vec![
                DisclosureRow { force: "gmp".into(), seq: 1, message: vec![7] },
                DisclosureRow { force: "gmp".into(), seq: 2, message: vec![8] },
            ],
            active_put: vec![ActiveRow {
                force: "gmp".into(),
                pseudonym: [1; 16],
                source: "pnc".into(),
                record_ref: [2; 16],
                disclosure_id: "gmp-1".into(),
                version: 2,
                agreeing: KindSet(0b101),
                probability: 0.995,
            }],
            log: vec![(0, b"e0".to_vec()), (1, b"e1".to_vec())],
            checkpoint: Some((2, "cp".into())),
            meta: vec![("epoch".into(), vec![1])],
            ..Default::default()
        };
        s.commit(&c).unwrap();
        drop(s);
        let s = RedbStore::open(dir.path()).unwrap();
        assert_eq!(s.subject("gmp", &[1; 16]).unwrap().unwrap(), vec![(KeyKind::Nino, [9; 16])]);
        assert_eq!(s.record("pnc", &[2; 16]).unwrap().unwrap().sealed, vec![5, 5, 5]);
        // a changed record replaces the old one; a removed one is gone
        let change = RecordRow { source: "pnc".into(), record_ref: [2; 16], tokens: vec![], sealed: vec![6] };
        s.commit(&Commit { records_put: vec![change], ..Default::default() }).unwrap();
        let mut n = 0;
        s.for_each_record(&mut |_| n += 1).unwrap();
        assert_eq!((n, s.record("pnc", &[2; 16]).unwrap().unwrap().sealed), (1, vec![6]));
        let sender = s.sender("force/gmp").unwrap().unwrap();
        assert_eq!((sender.sequence, sender.commitment.as_str(), sender.receipt), (1, "c1", vec![1, 2]));
        assert_eq!(s.sender("force/wmp").unwrap(), None);
        assert_eq!(s.pending("gmp", 0, 10).unwrap(), vec![(1, vec![7]), (2, vec![8])]);
        assert_eq!(s.pending("gmp", 1, 10).unwrap(), vec![(2, vec![8])]);
        assert_eq!(s.acknowledge("gmp", &[1, 1, 9]).unwrap(), 1);
        assert_eq!(s.pending_count("gmp").unwrap(), 1);
        assert_eq!(s.last_sequences().unwrap(), vec![("gmp".into(), 2)]);
        let mut active = Vec::new();
        s.for_each_active(&mut |a| active.push(a)).unwrap();
        assert_eq!(
            (active[0].disclosure_id.as_str(), active[0].version, active[0].agreeing),
            ("gmp-1", 2, KindSet(0b101))
        );
        assert_eq!(s.log_entries(0, 5).unwrap(), vec![b"e0".to_vec(), b"e1".to_vec()]);
        assert_eq!(s.latest_checkpoint().unwrap(), Some((2, "cp".into())));
        // a log entry that does not follow the log is refused, and nothing of
        // that commit is applied
        let bad = Commit {
            subjects_del: vec![("gmp".into(), [1; 16])],
            log: vec![(5, b"gap".to_vec())],
            ..Default::default()
        };
        assert!(s.commit(&bad).is_err());
        assert!(s.subject("gmp", &[1; 16]).unwrap().is_some());
    }

    /// The reference map is built by the first pass over the records (the
    /// load at start-up), and a commit made while that pass is under way
    /// (which builds the map itself first) is not undone when it ends.
    #[test]
    fn reference_map_from_the_first_pass_and_a_commit_during_it() {
        let dir = tempfile::tempdir().unwrap();
        let record = |r: u8, sealed: u8| RecordRow {
            source: "pnc".into(),
            record_ref: [r; 16],
            tokens: vec![(KeyKind::NameDob, [r; 16])],
            sealed: vec![sealed],
        };
        let s = RedbStore::open(dir.path()).unwrap();
        s.commit(&Commit { records_put: (1..=3).map(|r| record(r, 0)).collect(), ..Default::default() }).unwrap();
        drop(s);

        let s = RedbStore::open(dir.path()).unwrap();
        assert!(!s.refs.read().unwrap().built, "opening reads no records");
        let mut seen = 0;
        s.for_each_record(&mut |_| seen += 1).unwrap();
        assert_eq!(seen, 3);
        assert!(s.refs.read().unwrap().built, "the pass built the map");
        assert_eq!(s.record("pnc", &[2; 16]).unwrap().unwrap().sealed, vec![0]);
        drop(s);

        let s = RedbStore::open(dir.path()).unwrap();
        let mut seen = 0;
        s.for_each_record(&mut |_| {
            if seen == 0 {
                // record 2 changes (a new row), record 3 goes
                let c = Commit {
                    records_put: vec![record(2, 1)],
                    records_del: vec![("pnc".into(), [3; 16])],
                    ..Default::default()
                };
                s.commit(&c).unwrap();
            }
            seen += 1;
        })
        .unwrap();
        assert_eq!(seen, 3, "the pass reads its own snapshot");
        assert_eq!(s.record("pnc", &[2; 16]).unwrap().unwrap().sealed, vec![1]);
        assert!(s.record("pnc", &[3; 16]).unwrap().is_none());
        assert!(s.record("pnc", &[1; 16]).unwrap().is_some());
        // and the old row of record 2 was removed, not left behind
        let mut rows = 0;
        s.for_each_record(&mut |_| rows += 1).unwrap();
        assert_eq!(rows, 2);
    }

    /// Acknowledgements are committed without an fsync, but a flush, the
    /// next batch, or closing the store puts them on disk.
    #[test]
    fn acknowledgements_reach_the_disk_by_flush_commit_or_close() {
        let dir = tempfile::tempdir().unwrap();
        let disclosures = |seqs: std::ops::Range<u64>| Commit {
            disclosures: seqs.map(|q| DisclosureRow { force: "gmp".into(), seq: q, message: vec![q as u8] }).collect(),
            ..Default::default()
        };
        let s = RedbStore::open(dir.path()).unwrap();
        s.commit(&disclosures(1..7)).unwrap();
        assert_eq!(s.acknowledge("gmp", &[1]).unwrap(), 1);
        assert!(s.unsynced_since.lock().unwrap().is_some(), "an acknowledgement alone is not synced");
        s.flush().unwrap();
        assert!(s.unsynced_since.lock().unwrap().is_none());
        assert_eq!(s.acknowledge("gmp", &[2]).unwrap(), 1);
        s.commit(&disclosures(7..8)).unwrap();
        assert!(s.unsynced_since.lock().unwrap().is_none(), "a batch commit syncs what came before");
        assert_eq!(s.acknowledge("gmp", &[3, 4]).unwrap(), 2);
        drop(s);
        let s = RedbStore::open(dir.path()).unwrap();
        assert_eq!(s.pending("gmp", 0, 10).unwrap().iter().map(|p| p.0).collect::<Vec<_>>(), vec![5, 6, 7]);
    }
}
