//! Quotas per force, over sliding windows of wall-clock time: checks a
//! minute and applicants a day ([`CheckQuotas`]), and new enrolments a day
//! after the first load ([`AdditionQuotas`]). Pure: the caller gives the
//! time. The coordinator seeds them at start from the audit log, so a
//! restart does not reset them.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
/// Share of the daily quota at which a force is said to be nearing it.
const NEARING: f64 = 0.8;

/// What an admission leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// Applicants checked by this force in the last 24 hours, this check
    /// included.
    pub applicants_today: u64,
    /// Whether this check took the force past 80% of its daily quota.
    pub nearing: bool,
}

/// At most `per_minute` checks and `per_day` applicants per force.
pub struct CheckQuotas {
    per_minute: u32,
    per_day: u64,
    seen: Mutex<HashMap<String, VecDeque<(i64, u64)>>>,
}

impl CheckQuotas {
    /// Quotas of `per_minute` checks and `per_day` applicants per force.
    pub fn new(per_minute: u32, per_day: u64) -> CheckQuotas {
        CheckQuotas { per_minute, per_day, seen: Mutex::new(HashMap::new()) }
    }

    /// Forgets every check seen.
    pub fn clear(&self) {
        if let Ok(mut m) = self.seen.lock() {
            m.clear();
        }
    }

    /// Counts a check made at `at_ms` (read back from the log at start, in
    /// log order, so oldest first).
    pub fn seed(&self, force: &str, at_ms: i64, applicants: u64) {
        if let Ok(mut m) = self.seen.lock() {
            m.entry(force.to_string()).or_default().push_back((at_ms, applicants));
        }
    }

    /// Admits a check of `applicants` for `force` at `now_ms`, or says why
    /// not.
    pub fn admit(&self, force: &str, applicants: u64, now_ms: i64) -> Result<Admitted, String> {
        let mut m = self.seen.lock().map_err(|_| "check quota lock poisoned".to_string())?;
        let q = m.entry(force.to_string()).or_default();
        while q.front().is_some_and(|(t, _)| *t <= now_ms - DAY_MS) {
            q.pop_front();
        }
        let last_minute = q.iter().filter(|(t, _)| *t > now_ms - MINUTE_MS).count();
        if last_minute >= self.per_minute as usize {
            return Err(format!("at most {} checks a minute; try again shortly", self.per_minute));
        }
        let today: u64 = q.iter().map(|(_, a)| a).sum();
        if today + applicants > self.per_day {
            return Err(format!(
                "at most {} applicants a day ({today} checked in the last 24 hours; this check has {applicants})",
                self.per_day
            ));
        }
        q.push_back((now_ms, applicants));
        let limit = self.per_day as f64 * NEARING;
        let after = today + applicants;
        Ok(Admitted { applicants_today: after, nearing: (today as f64) < limit && after as f64 >= limit })
    }
}

/// A force may enrol at most `per_day` new subjects in any 24 hours, from
/// the day after its first roster batch (its first load is bounded by its
/// headcount only). Enrolling and removing people within the cap, day
/// after day, would otherwise let a force look up anyone in time.
pub struct AdditionQuotas {
    per_day: u64,
    seen: Mutex<HashMap<String, Additions>>,
}

/// A force's first roster batch (ms) and its additions (time, count).
type Additions = (i64, VecDeque<(i64, u64)>);

impl AdditionQuotas {
    /// At most `per_day` additions per force in any 24 hours.
    pub fn new(per_day: u64) -> AdditionQuotas {
        AdditionQuotas { per_day, seen: Mutex::new(HashMap::new()) }
    }

    /// Forgets every addition seen.
    pub fn clear(&self) {
        if let Ok(mut m) = self.seen.lock() {
            m.clear();
        }
    }

    /// Counts `added` subjects enrolled by `force` at `at_ms` (from the log
    /// at start, oldest first, or after a batch is applied). The first call
    /// for a force sets the time of its first batch.
    pub fn record(&self, force: &str, at_ms: i64, added: u64) {
        if let Ok(mut m) = self.seen.lock() {
            let (_, q) = m.entry(force.to_string()).or_insert_with(|| (at_ms, VecDeque::new()));
            if added > 0 {
                q.push_back((at_ms, added));
            }
        }
    }

    /// Whether `force` may enrol `added` more at `now_ms`, or why not; if
    /// it may, whether this batch takes it past 80% of the daily quota.
    pub fn admit(&self, force: &str, added: u64, now_ms: i64) -> Result<bool, String> {
        let mut m = self.seen.lock().map_err(|_| "enrolment quota lock poisoned".to_string())?;
        let Some((first, q)) = m.get_mut(force) else { return Ok(false) };
        if now_ms - *first < DAY_MS {
            return Ok(false);
        }
        while q.front().is_some_and(|(t, _)| *t <= now_ms - DAY_MS) {
            q.pop_front();
        }
        let today: u64 = q.iter().map(|(_, a)| a).sum();
        if today + added > self.per_day {
            return Err(format!(
                "at most {} new subjects a day after the first load ({today} enrolled in the last 24 hours; this batch adds {added})",
                self.per_day
            ));
        }
        let limit = NEARING * self.per_day as f64;
        Ok((today as f64) < limit && (today + added) as f64 >= limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn additions_are_bounded_from_the_day_after_the_first_load() {
        let t = 1_000_000_000;
        let q = AdditionQuotas::new(10);
        assert!(q.admit("gmp", 40_000, t).is_ok(), "nothing known: a first load");
        q.record("gmp", t, 40_000);
        assert!(q.admit("gmp", 500, t + 3_600_000).is_ok(), "still the first day");
        q.record("gmp", t + 3_600_000, 500);
        let day2 = t + DAY_MS + 3_600_000 + 1;
        assert!(q.admit("gmp", 11, day2).unwrap_err().contains("at most 10 new subjects a day"));
        q.record("gmp", day2, 6);
        assert_eq!(q.admit("gmp", 1, day2 + 1), Ok(false), "7 of 10: not yet near");
        assert_eq!(q.admit("gmp", 2, day2 + 1), Ok(true), "8 of 10: past 80% with this batch");
        assert_eq!(q.admit("gmp", 4, day2 + 1), Ok(true));
        assert!(q.admit("gmp", 5, day2 + 1).is_err());
        q.record("gmp", day2 + 1, 3);
        assert_eq!(q.admit("gmp", 1, day2 + 2), Ok(false), "already past: warned once");
    }

    #[test]
    fn checks_a_minute_per_force() {
        let q = CheckQuotas::new(2, 1000);
        let t = 1_000_000_000;
        assert!(q.admit("gmp", 1, t).is_ok() && q.admit("gmp", 1, t).is_ok());
        assert!(q.admit("gmp", 1, t + 59_000).unwrap_err().contains("2 checks a minute"));
        assert!(q.admit("met", 1, t).is_ok());
        assert!(q.admit("gmp", 1, t + 61_000).is_ok());
    }

    #[test]
    fn applicants_a_day_survive_a_restart_through_the_seed() {
        let t = 1_000_000_000;
        let q = CheckQuotas::new(100, 10);
        let a = q.admit("gmp", 7, t).unwrap();
        assert_eq!(a, Admitted { applicants_today: 7, nearing: false });
        assert!(q.admit("gmp", 4, t + 1).unwrap_err().contains("at most 10 applicants a day (7 checked"));
        assert!(q.admit("gmp", 1, t + 2).unwrap().nearing);
        // A new process seeded from the log refuses the same.
        let again = CheckQuotas::new(100, 10);
        again.seed("gmp", t, 7);
        again.seed("gmp", t + 2, 1);
        assert!(again.admit("gmp", 3, t + 3).is_err());
        assert!(again.admit("gmp", 2, t + 3).is_ok());
        // A day later the window has moved on.
        assert!(again.admit("gmp", 10, t + DAY_MS + 3).is_ok());
    }
}
