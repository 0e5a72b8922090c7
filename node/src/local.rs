//! The node's local store: one SQLite database (WAL mode) in the node's
//! data directory, shared by its processes: `watch` writes disclosures while
//! an officer runs `inbox list` and the HR job runs `sync`.
//!
//! - A force keeps what it enrolled (employee → pseudonym, a digest of the
//!   row, and the names it shows in its inbox), the reverse pseudonym map,
//!   its inbox of disclosures with their review status, and the latest
//!   checkpoint it verified.
//! - A source keeps, for each record it fed, its reference and a digest, to
//!   diff the next full extract against. A full feed records acknowledged
//!   batches several at a time: a record acknowledged but not yet recorded
//!   when the node stops is sent again by the next run, and the coordinator
//!   takes it as unchanged.
//!
//! This store holds personal data (names, employee numbers) and stays on
//! the node's own machine. Commits are durable (`synchronous = FULL`) before
//! a batch or a disclosure is acknowledged.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Mutex;

use vigil_identity::tokens::Ref;

/// Why the local store failed.
#[derive(Debug, thiserror::Error)]
#[error("local store: {0}")]
pub struct LocalError(pub String);

fn err(e: impl std::fmt::Display) -> LocalError {
    LocalError(e.to_string())
}

/// What a force enrolled for one employee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolled {
    /// Pseudonym (hex).
    pub pseudonym: String,
    /// Digest of the row as sent (hex).
    pub digest: String,
    /// Forenames, for the inbox.
    pub forenames: String,
    /// Surname, for the inbox.
    pub surname: String,
    /// Role, for the inbox.
    pub role: String,
}

/// Review status of a disclosure in the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not looked at yet.
    New,
    /// Being reviewed by the professional standards department.
    UnderReview,
    /// Review finished.
    Closed,
}

impl Status {
    /// Parses `new`, `under_review` (or `under-review`) or `closed`.
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "new" => Some(Status::New),
            "under_review" | "under-review" => Some(Status::UnderReview),
            "closed" => Some(Status::Closed),
            _ => None,
        }
    }

    /// The status's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::UnderReview => "under_review",
            Status::Closed => "closed",
        }
    }
}

/// The review state of a disclosure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewState {
    /// Status.
    pub status: Status,
    /// When it arrived (Unix ms).
    pub received_ms: i64,
    /// When the status last changed (Unix ms).
    pub updated_ms: i64,
    /// Free-text note by the reviewer.
    #[serde(default)]
    pub note: String,
}

/// A change to a force's enrolment.
#[derive(Debug, Clone)]
pub enum EnrolChange {
    /// Enrolled or re-enrolled.
    Put(String, Enrolled),
    /// Removed: (employee id, pseudonym).
    Remove(String, Ref),
}

/// A monotonic counter in `meta` (big-endian `u64`) moved forward with a
/// write: set to `value` when that is higher than the one held, and then
/// `clears` is removed.
#[derive(Debug, Clone, Copy)]
pub struct Mark<'a> {
    /// The counter's key.
    pub key: &'a str,
    /// Its new value, if higher.
    pub value: u64,
    /// A key removed when the counter moves.
    pub clears: &'a str,
}

/// Values written to `meta` only if the greatest key under `prefix` is
/// still `base` (`None`: no key under it), as the writer last read it: a
/// compare-and-set between the processes sharing the store. Two processes
/// that each verified a checkpoint against the one held must not both keep
/// theirs without one of them comparing it with the other's.
#[derive(Debug, Clone)]
pub struct Guarded<'a> {
    /// The keys compared.
    pub prefix: &'a str,
    /// The greatest key under `prefix` when the writer read it.
    pub base: Option<String>,
    /// What to write: (key, value).
    pub put: Vec<(String, &'a [u8])>,
}

/// The local store.
pub struct LocalStore {
    db: Mutex<Connection>,
}

/// The tables. `records` is one B-tree keyed by the record id (`WITHOUT
/// ROWID`; a rowid table keeps a second tree, the index of the ids, and a
/// national feed writes a row to both for every record). A store created
/// before keeps its rowid table: the statements are the same for both.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS enrolled (
    employee_id TEXT PRIMARY KEY,
    row TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pseudonyms (
    pseudonym BLOB PRIMARY KEY,
    employee_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    record_id TEXT PRIMARY KEY,
    ref BLOB NOT NULL,
    digest BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbox (
    id TEXT PRIMARY KEY,
    message BLOB NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS wraps (
    pseudonym BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    secrets BLOB NOT NULL,
    PRIMARY KEY (pseudonym, epoch)
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
";

impl LocalStore {
    /// Opens (or creates) `dir/node.sqlite`.
    pub fn open(dir: &Path) -> Result<LocalStore, LocalError> {
        vigil_common::secrets::private_dir(dir).map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join("node.sqlite");
        let db = Connection::open(&path).map_err(|e| err(format!("opening {}: {e}", path.display())))?;
        db.busy_timeout(std::time::Duration::from_secs(30)).map_err(err)?;
        db.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        db.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        db.execute_batch(SCHEMA).map_err(err)?;
        Ok(LocalStore { db: Mutex::new(db) })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, LocalError> {
        self.db.lock().map_err(|_| err("local store lock poisoned"))
    }

    /// Every enrolled employee.
    pub fn enrolled(&self) -> Result<Vec<(String, Enrolled)>, LocalError> {
        let db = self.conn()?;
        let mut st = db.prepare("SELECT employee_id, row FROM enrolled").map_err(err)?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(err)?;
        let mut out = Vec::new();
        for row in rows {
            let (emp, json) = row.map_err(err)?;
            out.push((emp, serde_json::from_str(&json).map_err(err)?));
        }
        Ok(out)
    }

    /// Number of enrolled employees.
    pub fn enrolled_count(&self) -> Result<u64, LocalError> {
        let db = self.conn()?;
        db.query_row("SELECT COUNT(*) FROM enrolled", [], |r| r.get::<_, i64>(0)).map(|n| n as u64).map_err(err)
    }

    /// The employee behind a pseudonym (also after they left).
    pub fn employee_of(&self, pseudonym: &[u8]) -> Result<Option<(String, Enrolled)>, LocalError> {
        let db = self.conn()?;
        let emp: Option<String> = db
            .query_row("SELECT employee_id FROM pseudonyms WHERE pseudonym = ?1", [pseudonym], |r| r.get(0))
            .optional()
            .map_err(err)?;
        let Some(emp) = emp else { return Ok(None) };
        let row: Option<String> = db
            .query_row("SELECT row FROM enrolled WHERE employee_id = ?1", [&emp], |r| r.get(0))
            .optional()
            .map_err(err)?;
        let row: Option<String> = match row {
            Some(r) => Some(r),
            None => db
                .query_row("SELECT value FROM meta WHERE key = ?1", [format!("left:{emp}")], |r| {
                    r.get::<_, Vec<u8>>(0).map(|b| String::from_utf8_lossy(&b).into_owned())
                })
                .optional()
                .map_err(err)?,
        };
        Ok(match row {
            Some(r) => Some((emp, serde_json::from_str(&r).map_err(err)?)),
            None => None,
        })
    }

    /// Applies enrolment changes in one durable transaction.
    pub fn apply_enrolment(&self, changes: &[EnrolChange]) -> Result<(), LocalError> {
        let mut db = self.conn()?;
        let tx = write_tx(&mut db)?;
        for c in changes {
            match c {
                EnrolChange::Put(emp, row) => {
                    let ps = vigil_proto::hex::decode(&row.pseudonym).ok_or_else(|| err("bad pseudonym"))?;
                    let json = serde_json::to_string(row).map_err(err)?;
                    tx.execute(
                        "INSERT OR REPLACE INTO enrolled (employee_id, row) VALUES (?1, ?2)",
                        params![emp, json],
                    )
                    .map_err(err)?;
                    tx.execute(
                        "INSERT OR REPLACE INTO pseudonyms (pseudonym, employee_id) VALUES (?1, ?2)",
                        params![ps, emp],
                    )
                    .map_err(err)?;
                    tx.execute("DELETE FROM meta WHERE key = ?1", [format!("left:{emp}")]).map_err(err)?;
                }
                EnrolChange::Remove(emp, _) => {
                    // Keep the leaver's name so disclosures about them (and
                    // their retractions) can still be shown.
                    let row: Option<String> = tx
                        .query_row("SELECT row FROM enrolled WHERE employee_id = ?1", [emp], |r| r.get(0))
                        .optional()
                        .map_err(err)?;
                    if let Some(r) = row {
                        tx.execute(
                            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                            params![format!("left:{emp}"), r.into_bytes()],
                        )
                        .map_err(err)?;
                    }
                    tx.execute("DELETE FROM enrolled WHERE employee_id = ?1", [emp]).map_err(err)?;
                }
            }
        }
        tx.commit().map_err(err)
    }

    /// Stores the wrap secrets of enrolled subjects in `epoch` (token scheme
    /// 3: what opens the details of a record that matches them), replacing
    /// that epoch's earlier ones. Kept after a subject leaves, and for
    /// earlier epochs, for the disclosures already received.
    pub fn put_wraps(&self, epoch: u32, wraps: &[(Ref, Vec<u8>)]) -> Result<(), LocalError> {
        let mut db = self.conn()?;
        let tx = write_tx(&mut db)?;
        for (p, w) in wraps {
            tx.execute(
                "INSERT OR REPLACE INTO wraps (pseudonym, epoch, secrets) VALUES (?1, ?2, ?3)",
                params![&p[..], epoch, w],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// A subject's wrap secrets of `epoch`, packed (empty if none).
    pub fn wraps_of(&self, pseudonym: &[u8], epoch: u32) -> Result<Vec<u8>, LocalError> {
        let db = self.conn()?;
        Ok(db
            .query_row(
                "SELECT secrets FROM wraps WHERE pseudonym = ?1 AND epoch = ?2",
                params![pseudonym, epoch],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?
            .unwrap_or_default())
    }

    /// Every record a source fed: (record id, reference, digest).
    pub fn for_each_record(&self, f: &mut dyn FnMut(&str, Ref, [u8; 32])) -> Result<(), LocalError> {
        let db = self.conn()?;
        let mut st = db.prepare("SELECT record_id, ref, digest FROM records").map_err(err)?;
        let mut rows = st.query([]).map_err(err)?;
        while let Some(r) = rows.next().map_err(err)? {
            let id: String = r.get(0).map_err(err)?;
            let rf: Vec<u8> = r.get(1).map_err(err)?;
            let dg: Vec<u8> = r.get(2).map_err(err)?;
            f(&id, to_ref(&rf)?, to_digest(&dg)?);
        }
        Ok(())
    }

    /// A fed record: (reference, digest).
    pub fn record(&self, record_id: &str) -> Result<Option<(Ref, [u8; 32])>, LocalError> {
        let db = self.conn()?;
        // Asked once for every row of an extract: the statement is prepared once.
        let mut st = db.prepare_cached("SELECT ref, digest FROM records WHERE record_id = ?1").map_err(err)?;
        let row: Option<(Vec<u8>, Vec<u8>)> =
            st.query_row([record_id], |r| Ok((r.get(0)?, r.get(1)?))).optional().map_err(err)?;
        row.map(|(r, d)| Ok((to_ref(&r)?, to_digest(&d)?))).transpose()
    }

    /// Number of fed records.
    pub fn record_count(&self) -> Result<u64, LocalError> {
        let db = self.conn()?;
        db.query_row("SELECT COUNT(*) FROM records", [], |r| r.get::<_, i64>(0)).map(|n| n as u64).map_err(err)
    }

    /// Records fed (put) and withdrawn (remove), in one durable transaction.
    pub fn apply_records(&self, put: &[(String, Ref, [u8; 32])], remove: &[String]) -> Result<(), LocalError> {
        let mut db = self.conn()?;
        let tx = write_tx(&mut db)?;
        {
            let mut ins = tx
                .prepare_cached("INSERT OR REPLACE INTO records (record_id, ref, digest) VALUES (?1, ?2, ?3)")
                .map_err(err)?;
            for (id, rf, dg) in put {
                ins.execute(params![id, &rf[..], &dg[..]]).map_err(err)?;
            }
            let mut del = tx.prepare_cached("DELETE FROM records WHERE record_id = ?1").map_err(err)?;
            for id in remove {
                del.execute([id]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Stores disclosures (each unless it is already there), moves `mark`
    /// forward and writes `keep`, in one durable transaction: one sync for a
    /// burst, and a disclosure is never stored without its mark or the
    /// checkpoint it was verified against. Returns, for each disclosure,
    /// whether it was new; `None`, with nothing written, if `keep`'s guard
    /// failed (another process wrote under its prefix since it was read).
    pub fn store_disclosures(
        &self,
        items: &[(&str, &[u8])],
        now_ms: i64,
        mark: Option<Mark<'_>>,
        keep: Option<&Guarded<'_>>,
    ) -> Result<Option<Vec<bool>>, LocalError> {
        let mut db = self.conn()?;
        let tx = write_tx(&mut db)?;
        if let Some(g) = keep
            && !put_guarded(&tx, g)?
        {
            return Ok(None);
        }
        let st = ReviewState { status: Status::New, received_ms: now_ms, updated_ms: now_ms, note: String::new() };
        let state = serde_json::to_string(&st).map_err(err)?;
        let mut fresh = Vec::with_capacity(items.len());
        {
            let mut ins = tx
                .prepare_cached("INSERT OR IGNORE INTO inbox (id, message, state) VALUES (?1, ?2, ?3)")
                .map_err(err)?;
            for (id, message) in items {
                fresh.push(ins.execute(params![id, message, state]).map_err(err)? == 1);
            }
        }
        if let Some(m) = mark {
            let held: Option<Vec<u8>> =
                tx.query_row("SELECT value FROM meta WHERE key = ?1", [m.key], |r| r.get(0)).optional().map_err(err)?;
            let held = held.and_then(|b| b.as_slice().try_into().ok().map(u64::from_be_bytes));
            if held.is_none_or(|h| m.value > h) {
                tx.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                    params![m.key, &m.value.to_be_bytes()[..]],
                )
                .map_err(err)?;
                tx.execute("DELETE FROM meta WHERE key = ?1", [m.clears]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(Some(fresh))
    }

    /// Every disclosure in the inbox: (id, encoded message, review state).
    pub fn inbox(&self) -> Result<Vec<(String, Vec<u8>, ReviewState)>, LocalError> {
        let db = self.conn()?;
        let mut st = db.prepare("SELECT id, message, state FROM inbox ORDER BY id").map_err(err)?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, String>(2)?)))
            .map_err(err)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, m, s) = row.map_err(err)?;
            out.push((id, m, serde_json::from_str(&s).map_err(err)?));
        }
        Ok(out)
    }

    /// One inbox message by id.
    pub fn inbox_message(&self, id: &str) -> Result<Option<Vec<u8>>, LocalError> {
        let db = self.conn()?;
        db.query_row("SELECT message FROM inbox WHERE id = ?1", [id], |r| r.get(0)).optional().map_err(err)
    }

    /// Sets the review status (and note) of a disclosure; false if unknown.
    pub fn set_status(&self, id: &str, status: Status, note: Option<&str>, now_ms: i64) -> Result<bool, LocalError> {
        let mut db = self.conn()?;
        let tx = write_tx(&mut db)?;
        let cur: Option<String> =
            tx.query_row("SELECT state FROM inbox WHERE id = ?1", [id], |r| r.get(0)).optional().map_err(err)?;
        let Some(cur) = cur else { return Ok(false) };
        let mut st: ReviewState = serde_json::from_str(&cur).map_err(err)?;
        st.status = status;
        st.updated_ms = now_ms;
        if let Some(n) = note {
            st.note = n.to_string();
        }
        tx.execute("UPDATE inbox SET state = ?2 WHERE id = ?1", params![id, serde_json::to_string(&st).map_err(err)?])
            .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(true)
    }

    /// A remembered value.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, LocalError> {
        let db = self.conn()?;
        db.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional().map_err(err)
    }

    /// Remembers a value durably.
    pub fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), LocalError> {
        let db = self.conn()?;
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![key, value]).map_err(err)?;
        Ok(())
    }

    /// The remembered key and value with the greatest key starting with
    /// `prefix`.
    pub fn meta_last(&self, prefix: &str) -> Result<Option<(String, Vec<u8>)>, LocalError> {
        let db = self.conn()?;
        last_under(&db, prefix)
    }

    /// Writes `g` durably if its guard holds; false, with nothing written,
    /// if another process wrote under its prefix since it was read.
    pub fn put_meta_guarded(&self, g: &Guarded<'_>) -> Result<bool, LocalError> {
        let mut db = self.conn()?;
        let tx = write_tx(&mut db)?;
        if !put_guarded(&tx, g)? {
            return Ok(false);
        }
        tx.commit().map_err(err)?;
        Ok(true)
    }

    /// Every remembered value whose key starts with `prefix`, in key order.
    pub fn meta_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, LocalError> {
        let db = self.conn()?;
        let mut st =
            db.prepare("SELECT key, value FROM meta WHERE key >= ?1 AND key < ?2 ORDER BY key").map_err(err)?;
        let end = format!("{prefix}\u{10FFFF}");
        let rows = st
            .query_map(params![prefix, end], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    /// Forgets a value.
    pub fn clear_meta(&self, key: &str) -> Result<(), LocalError> {
        let db = self.conn()?;
        db.execute("DELETE FROM meta WHERE key = ?1", [key]).map_err(err)?;
        Ok(())
    }
}

/// Begins a write transaction that takes the write lock at once.
///
/// `watch`, `sync`, `inbox set` and `feed` are separate processes sharing
/// this file. A deferred transaction that reads first and writes later
/// cannot wait for the lock: if another process committed in between, SQLite
/// fails it at once with "database is locked" (the busy timeout does not
/// apply). Taking the lock up front makes it wait its turn instead.
fn write_tx(db: &mut Connection) -> Result<rusqlite::Transaction<'_>, LocalError> {
    db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(err)
}

fn last_under(db: &Connection, prefix: &str) -> Result<Option<(String, Vec<u8>)>, LocalError> {
    let end = format!("{prefix}\u{10FFFF}");
    db.query_row(
        "SELECT key, value FROM meta WHERE key >= ?1 AND key < ?2 ORDER BY key DESC LIMIT 1",
        params![prefix, end],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(err)
}

/// Checks `g`'s guard inside a write transaction and, if it holds, writes.
fn put_guarded(tx: &rusqlite::Transaction<'_>, g: &Guarded<'_>) -> Result<bool, LocalError> {
    if last_under(tx, g.prefix)?.map(|(k, _)| k) != g.base {
        return Ok(false);
    }
    for (k, v) in &g.put {
        tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![k, v]).map_err(err)?;
    }
    Ok(true)
}

fn to_ref(v: &[u8]) -> Result<Ref, LocalError> {
    v.try_into().map_err(|_| err("corrupt record reference"))
}

fn to_digest(v: &[u8]) -> Result<[u8; 32], LocalError> {
    v.try_into().map_err(|_| err("corrupt record digest"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `watch` stores disclosures while `sync` removes leavers (a read, then
    /// writes) from another process. Neither may fail with "database is
    /// locked"; before write transactions took the lock up front, this failed
    /// within a few rounds.
    #[test]
    fn concurrent_writers_from_two_connections_wait_their_turn() {
        let dir = tempfile::tempdir().unwrap();
        let sync = LocalStore::open(dir.path()).unwrap();
        let watch = LocalStore::open(dir.path()).unwrap();
        let row = |i: u8| Enrolled {
            pseudonym: vigil_proto::hex::encode(&[i; 16]),
            digest: "d".into(),
            forenames: "Ann".into(),
            surname: "Lee".into(),
            role: "officer".into(),
        };
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..300 {
                    watch.store_disclosures(&[(&format!("d-{i}"), b"m")], i, None, None).unwrap();
                }
            });
            for i in 0..150u8 {
                sync.apply_enrolment(&[
                    EnrolChange::Remove(format!("E{i}"), [i; 16]),
                    EnrolChange::Put(format!("E{i}"), row(i)),
                ])
                .unwrap();
                sync.apply_enrolment(&[EnrolChange::Remove(format!("E{i}"), [i; 16])]).unwrap();
            }
        });
        assert_eq!(watch.inbox().unwrap().len(), 300);
    }

    #[test]
    fn enrolment_inbox_and_records() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path()).unwrap();
        let row = Enrolled {
            pseudonym: vigil_proto::hex::encode(&[1; 16]),
            digest: "d".into(),
            forenames: "Ann".into(),
            surname: "Lee".into(),
            role: "officer".into(),
        };
        s.apply_enrolment(&[EnrolChange::Put("E1".into(), row.clone())]).unwrap();
        assert_eq!(s.employee_of(&[1; 16]).unwrap().unwrap().0, "E1");
        assert_eq!(s.enrolled_count().unwrap(), 1);
        s.apply_enrolment(&[EnrolChange::Remove("E1".into(), [1; 16])]).unwrap();
        assert_eq!(s.enrolled_count().unwrap(), 0);
        assert_eq!(s.employee_of(&[1; 16]).unwrap().unwrap().1.surname, "Lee", "a leaver keeps a name in the inbox");
        // a second process (here: a second connection) can read while one writes
        let other = LocalStore::open(dir.path()).unwrap();
        assert_eq!(other.enrolled_count().unwrap(), 0);
        assert_eq!(s.store_disclosures(&[("gmp-1", b"m")], 5, None, None).unwrap(), Some(vec![true]));
        assert_eq!(
            s.store_disclosures(&[("gmp-1", b"other")], 6, None, None).unwrap(),
            Some(vec![false]),
            "a redelivery is not stored twice"
        );
        assert!(s.set_status("gmp-1", Status::UnderReview, Some("called in"), 7).unwrap());
        assert!(!s.set_status("gmp-9", Status::Closed, None, 7).unwrap());
        let inbox = s.inbox().unwrap();
        assert_eq!((inbox.len(), inbox[0].1.as_slice(), inbox[0].2.status), (1, &b"m"[..], Status::UnderReview));
        s.apply_records(&[("R1".into(), [2; 16], [3; 32])], &[]).unwrap();
        assert_eq!(s.record("R1").unwrap(), Some(([2; 16], [3; 32])));
        s.apply_records(&[], &["R1".into()]).unwrap();
        assert_eq!(s.record_count().unwrap(), 0);
    }

    /// A store created before `records` was a `WITHOUT ROWID` table keeps
    /// its rowid table, and its records read, change and go as before.
    #[test]
    fn a_store_with_the_earlier_records_table_still_works() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Connection::open(dir.path().join("node.sqlite")).unwrap();
            db.execute_batch(
                "CREATE TABLE records (record_id TEXT PRIMARY KEY, ref BLOB NOT NULL, digest BLOB NOT NULL);
                 INSERT INTO records VALUES ('R1', x'02020202020202020202020202020202', zeroblob(32));",
            )
            .unwrap();
        }
        let s = LocalStore::open(dir.path()).unwrap();
        assert_eq!(s.record("R1").unwrap(), Some(([2; 16], [0; 32])));
        s.apply_records(&[("R1".into(), [4; 16], [5; 32]), ("R2".into(), [6; 16], [7; 32])], &[]).unwrap();
        assert_eq!(s.record("R1").unwrap(), Some(([4; 16], [5; 32])));
        s.apply_records(&[], &["R2".into()]).unwrap();
        assert_eq!(s.record_count().unwrap(), 1);
        let mut seen = Vec::new();
        s.for_each_record(&mut |id, r, d| seen.push((id.to_string(), r, d))).unwrap();
        assert_eq!(seen, vec![("R1".to_string(), [4; 16], [5; 32])]);
    }
}
