//! Allowances per caller and epoch ([`Allowance`], [`Usage::admit`]: pure),
//! and the store that keeps each caller's usage and the key service's log
//! across restarts ([`QuotaStore`]: redb; an evaluation's usage and its log
//! entry are committed together, before it is answered).
//!
//! A caller first spends its epoch allowance (for a force: its headcount
//! times what one identity needs, with a margin; for a source: its
//! declared volume); beyond it, at most `per_day` evaluations in any
//! calendar day (UTC): joiners, checks and deltas. A new epoch starts
//! afresh.

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::Path;

const USAGE: TableDefinition<&str, &[u8]> = TableDefinition::new("usage");
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("log_entries");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const CHECKPOINT: &str = "checkpoint";

/// What a caller may have evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Evaluations per epoch.
    pub per_epoch: u64,
    /// Evaluations per day beyond the epoch allowance.
    pub per_day: u64,
    /// Evaluations for pre-employment checks per day (within the above:
    /// a further bound on what checks may use).
    pub checks_per_day: u64,
}

/// A caller's usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// The epoch counted.
    pub epoch: u32,
    /// Evaluations in that epoch.
    pub in_epoch: u64,
    /// The day (days since 1970-01-01, UTC) `beyond` counts.
    pub day: i64,
    /// Evaluations beyond the epoch allowance on that day.
    pub beyond: u64,
    /// Evaluations for pre-employment checks on that day.
    pub checks: u64,
}

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct Exhausted {
    /// For checks: used today and the daily check allowance (the check
    /// bound was the one reached).
    pub checks: Option<(u64, u64)>,
    /// Asked for.
    pub n: u64,
    /// Used in the epoch.
    pub used: u64,
    /// Epoch allowance.
    pub per_epoch: u64,
    /// The epoch.
    pub epoch: u32,
    /// Used beyond it today.
    pub beyond: u64,
    /// Daily allowance beyond it.
    pub per_day: u64,
}

impl Exhausted {
    fn describe(&self) -> String {
        match self.checks {
            Some((used, per_day)) => format!(
                "{} evaluations asked for a pre-employment check; this caller has used {used} of its {per_day} \
                 check evaluations today",
                self.n
            ),
            None => format!(
                "{} evaluations asked; this caller has used {} of its {} for epoch {}, and {} of {} more allowed today",
                self.n, self.used, self.per_epoch, self.epoch, self.beyond, self.per_day
            ),
        }
    }
}

impl Usage {
    /// Usage after `n` more evaluations in `epoch` on `day` (`check`: for
    /// a pre-employment check, which the daily check allowance bounds too),
    /// or why not.
    pub fn admit(self, a: Allowance, epoch: u32, day: i64, n: u64, check: bool) -> Result<Usage, Exhausted> {
        let mut u = if self.epoch == epoch { self } else { Usage { epoch, ..Usage::default() } };
        if u.day != day {
            u.day = day;
            u.beyond = 0;
            u.checks = 0;
        }
        let refused = |checks| Exhausted {
            checks,
            n,
            used: u.in_epoch,
            per_epoch: a.per_epoch,
            epoch,
            beyond: u.beyond,
            per_day: a.per_day,
        };
        if check && u.checks + n > a.checks_per_day {
            return Err(refused(Some((u.checks, a.checks_per_day))));
        }
        let within = a.per_epoch.saturating_sub(u.in_epoch).min(n);
        let over = n - within;
        if u.beyond + over > a.per_day {
            return Err(refused(None));
        }
        u.in_epoch += n;
        u.beyond += over;
        if check {
            u.checks += n;
        }
        Ok(u)
    }

    fn to_bytes(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(36);
        b.extend_from_slice(&self.epoch.to_be_bytes());
        b.extend_from_slice(&self.in_epoch.to_be_bytes());
        b.extend_from_slice(&self.day.to_be_bytes());
        b.extend_from_slice(&self.beyond.to_be_bytes());
        b.extend_from_slice(&self.checks.to_be_bytes());
        b
    }

    /// 36 bytes; 28 (written before checks were counted apart) reads as no
    /// checks that day.
    fn from_bytes(b: &[u8]) -> Option<Usage> {
        if b.len() != 28 && b.len() != 36 {
            return None;
        }
        Some(Usage {
            epoch: u32::from_be_bytes(b[0..4].try_into().ok()?),
            in_epoch: u64::from_be_bytes(b[4..12].try_into().ok()?),
            day: i64::from_be_bytes(b[12..20].try_into().ok()?),
            beyond: u64::from_be_bytes(b[20..28].try_into().ok()?),
            checks: match b.get(28..36) {
                Some(c) => u64::from_be_bytes(c.try_into().ok()?),
                None => 0,
            },
        })
    }
}

/// The store failed.
#[derive(Debug, thiserror::Error)]
#[error("quota store: {0}")]
pub struct StoreError(String);

fn e(x: impl std::fmt::Display) -> StoreError {
    StoreError(x.to_string())
}

/// Usage per caller, durable.
pub struct QuotaStore {
    db: Database,
}

impl QuotaStore {
    /// Opens (or creates) the store in `dir` (mode 0700).
    pub fn open(dir: &Path) -> Result<QuotaStore, StoreError> {
        vigil_common::secrets::private_dir(dir).map_err(e)?;
        let db = Database::create(dir.join("quota.redb")).map_err(e)?;
        let w = db.begin_write().map_err(e)?;
        w.open_table(USAGE).map_err(e)?;
        w.open_table(ENTRIES).map_err(e)?;
        w.open_table(META).map_err(e)?;
        w.commit().map_err(e)?;
        Ok(QuotaStore { db })
    }

    /// Every log entry, in order, and the latest checkpoint.
    pub fn log(&self) -> Result<(Vec<Vec<u8>>, Option<String>), StoreError> {
        let r = self.db.begin_read().map_err(e)?;
        let t = r.open_table(ENTRIES).map_err(e)?;
        let mut entries = Vec::new();
        for row in t.iter().map_err(e)? {
            let (_, v) = row.map_err(e)?;
            entries.push(v.value().to_vec());
        }
        let m = r.open_table(META).map_err(e)?;
        let cp = m.get(CHECKPOINT).map_err(e)?.map(|v| String::from_utf8_lossy(v.value()).into_owned());
        Ok((entries, cp))
    }

    /// Log entries `start..end`.
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let r = self.db.begin_read().map_err(e)?;
        let t = r.open_table(ENTRIES).map_err(e)?;
        let mut out = Vec::new();
        for row in t.range(start..end).map_err(e)? {
            out.push(row.map_err(e)?.1.value().to_vec());
        }
        Ok(out)
    }

    /// Stores a fresh checkpoint of the log as it stands.
    pub fn put_checkpoint(&self, note: &str) -> Result<(), StoreError> {
        let w = self.db.begin_write().map_err(e)?;
        w.open_table(META).map_err(e)?.insert(CHECKPOINT, note.as_bytes()).map_err(e)?;
        w.commit().map_err(e)
    }

    /// Admits `n` evaluations for `caller` and, when admitted, commits the
    /// new usage together with the log entry `log(usage, index)` gives (at
    /// `index`) and the checkpoint that covers it, before returning (one
    /// writer at a time, so concurrent batches cannot both spend the same
    /// allowance). A refusal changes nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn spend_logged(
        &self,
        caller: &str,
        a: Allowance,
        (epoch, day): (u32, i64),
        (n, check): (u64, bool),
        log: impl FnOnce(&Usage, u64) -> (Vec<u8>, String),
    ) -> Result<Result<Usage, Exhausted>, StoreError> {
        let w = self.db.begin_write().map_err(e)?;
        let admitted = {
            // Usage per caller and epoch (two epochs are served while
            // parties move; spending in one must not reset the other).
            let key = format!("{caller} {epoch}");
            let mut t = w.open_table(USAGE).map_err(e)?;
            let read = |k: &str| -> Result<Option<Usage>, StoreError> {
                Ok(t.get(k).map_err(e)?.and_then(|v| Usage::from_bytes(v.value())))
            };
            // Stores written before per-epoch keys hold one row per caller.
            let before = match read(&key)? {
                Some(u) => u,
                None => read(caller)?.filter(|u| u.epoch == epoch).unwrap_or_default(),
            };
            match before.admit(a, epoch, day, n, check) {
                Ok(u) => {
                    t.insert(key.as_str(), u.to_bytes().as_slice()).map_err(e)?;
                    Ok(u)
                }
                Err(x) => Err(x),
            }
        };
        let u = match admitted {
            Ok(u) => u,
            Err(x) => {
                w.abort().map_err(e)?;
                return Ok(Err(x));
            }
        };
        {
            let mut entries = w.open_table(ENTRIES).map_err(e)?;
            let index = entries.len().map_err(e)?;
            let (entry, checkpoint) = log(&u, index);
            entries.insert(index, entry.as_slice()).map_err(e)?;
            w.open_table(META).map_err(e)?.insert(CHECKPOINT, checkpoint.as_bytes()).map_err(e)?;
        }
        w.commit().map_err(e)?;
        Ok(Ok(u))
    }

    /// A caller's usage so far in `epoch`.
    pub fn usage(&self, caller: &str, epoch: u32) -> Result<Usage, StoreError> {
        let r = self.db.begin_read().map_err(e)?;
        let t = r.open_table(USAGE).map_err(e)?;
        Ok(t.get(format!("{caller} {epoch}").as_str())
            .map_err(e)?
            .and_then(|v| Usage::from_bytes(v.value()))
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Allowance = Allowance { per_epoch: 100, per_day: 10, checks_per_day: 5 };

    fn entry(u: &Usage, index: u64) -> (Vec<u8>, String) {
        (format!("used {}", u.in_epoch).into_bytes(), format!("checkpoint {index}"))
    }

    #[test]
    fn the_epoch_allowance_then_a_daily_one_then_a_new_epoch() {
        let u = Usage::default().admit(A, 1, 0, 95, false).unwrap();
        let u = u.admit(A, 1, 0, 12, false).unwrap();
        assert_eq!((u.in_epoch, u.beyond), (107, 7));
        let err = u.admit(A, 1, 0, 4, false).unwrap_err();
        assert_eq!((err.used, err.beyond), (107, 7));
        assert!(err.to_string().contains("used 107 of its 100 for epoch 1"));
        let u = u.admit(A, 1, 1, 10, false).unwrap();
        assert_eq!(u.beyond, 10, "a new day");
        assert!(u.admit(A, 1, 1, 1, false).is_err());
        assert_eq!(u.admit(A, 2, 1, 100, false).unwrap().in_epoch, 100, "a new epoch");
        // Checks: at most 5 evaluations a day, also counted as usual.
        let c = Usage::default().admit(A, 1, 0, 4, true).unwrap();
        assert_eq!((c.in_epoch, c.checks), (4, 4));
        let err = c.admit(A, 1, 0, 2, true).unwrap_err();
        assert!(err.to_string().contains("used 4 of its 5 check evaluations today"), "{err}");
        assert_eq!(c.admit(A, 1, 0, 2, false).unwrap().checks, 4, "other evaluations are not checks");
        assert_eq!(c.admit(A, 1, 1, 5, true).unwrap().checks, 5, "a new day");
        assert_eq!(Usage::from_bytes(&c.to_bytes()), Some(c));
        assert_eq!(Usage::from_bytes(&c.to_bytes()[..28]).map(|u| u.checks), Some(0));
    }

    #[test]
    fn usage_survives_reopening_and_refusals_spend_nothing() {
        let d = tempfile::tempdir().unwrap();
        {
            let s = QuotaStore::open(d.path()).unwrap();
            assert!(s.spend_logged("force/gmp", A, (1, 0), (100, false), entry).unwrap().is_ok());
            assert!(s.spend_logged("force/gmp", A, (1, 0), (11, false), entry).unwrap().is_err());
        }
        let s = QuotaStore::open(d.path()).unwrap();
        assert_eq!(s.usage("force/gmp", 1).unwrap().in_epoch, 100);
        assert_eq!(s.spend_logged("force/gmp", A, (1, 0), (10, false), entry).unwrap().unwrap().beyond, 10);
        let (entries, cp) = s.log().unwrap();
        assert_eq!((entries.len(), cp.as_deref()), (2, Some("checkpoint 1")), "one entry per admitted batch");
        assert_eq!(s.usage("force/wmp", 1).unwrap(), Usage::default());
        // Two epochs served at once (while parties move) are counted apart:
        // spending in one neither resets nor draws on the other.
        assert_eq!(s.spend_logged("force/gmp", A, (2, 0), (50, false), entry).unwrap().unwrap().in_epoch, 50);
        assert!(s.spend_logged("force/gmp", A, (1, 0), (1, false), entry).unwrap().is_err(), "epoch 1 is still spent");
        assert_eq!(s.usage("force/gmp", 1).unwrap().in_epoch, 110);
        assert_eq!(s.usage("force/gmp", 2).unwrap().in_epoch, 50);
    }
}
