//! A per-caller rate limit over fixed one-minute windows (pre-employment
//! checks). In memory: a restart resets it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most `per_minute` admissions per key per minute.
pub struct RateLimiter {
    per_minute: u32,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    /// A limiter admitting `per_minute` per key.
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter { per_minute, windows: Mutex::new(HashMap::new()) }
    }

    /// Admits one more for `key`, or says why not.
    pub fn admit(&self, key: &str) -> Result<(), String> {
        self.admit_at(key, Instant::now())
    }

    fn admit_at(&self, key: &str, now: Instant) -> Result<(), String> {
        let mut w = self.windows.lock().map_err(|_| "rate limiter lock poisoned".to_string())?;
        let e = w.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(e.0) >= Duration::from_secs(60) {
            *e = (now, 0);
        }
        if e.1 >= self.per_minute {
            return Err(format!("at most {} per minute; try again shortly", self.per_minute));
        }
        e.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_per_key_per_minute() {
        let l = RateLimiter::new(2);
        let t = Instant::now();
        assert!(l.admit_at("gmp", t).is_ok() && l.admit_at("gmp", t).is_ok());
        assert!(l.admit_at("gmp", t).is_err());
        assert!(l.admit_at("met", t).is_ok());
        assert!(l.admit_at("gmp", t + Duration::from_secs(61)).is_ok());
    }
}
