//! Witnessing rounds: collecting C2SP cosignatures of checkpoints from the
//! configured witnesses (https://c2sp.org/tlog-cosignature).
//!
//! Witnesses poll; they do not see every checkpoint. So that k of them
//! cosign the *same* checkpoint, the coordinator holds one checkpoint per
//! round and gives it to every witness that asks. A round ends when every
//! configured witness has cosigned it or when `round_ms` has passed; the
//! next witness to ask then starts a round on the latest checkpoint. The
//! last few rounds with cosignatures are kept, and a node asking for a
//! quorum of k gets the newest with at least k.
//!
//! Pure: values in, values out, with the time passed in. Cosignatures are
//! held in memory; after a restart the witnesses cosign again in the next
//! round.

use std::collections::{BTreeMap, VecDeque};
use vigil_proto::tlog::cosignature::WitnessKey;

/// Rounds with cosignatures kept besides the current one.
const KEPT: usize = 8;
/// How far in the future a cosignature's time may be (clock skew), seconds.
const SKEW_SECONDS: u64 = 300;

/// Why a cosignature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CosignError {
    /// The caller is not a configured witness.
    #[error("witness {0} is not configured at this coordinator ([[audit.witnesses]])")]
    Unknown(String),
    /// The checkpoint is not one under witness.
    #[error("the checkpoint cosigned is not one this coordinator gave to witnesses (its round may have ended)")]
    NotInRound,
    /// The line does not verify under the witness's key.
    #[error("witness {0}: the cosignature does not verify under its configured key")]
    Invalid(String),
    /// The cosignature is dated in the future.
    #[error("witness {0}: the cosignature is dated more than {SKEW_SECONDS} s ahead of this coordinator's clock")]
    Future(String),
}

#[derive(Debug, Clone)]
struct Round {
    /// The log-signed checkpoint note.
    note: String,
    /// Its body (the cosigned text).
    body: String,
    started_ms: i64,
    /// Cosignature lines by witness code.
    lines: BTreeMap<String, String>,
}

impl Round {
    fn cosigned(&self) -> String {
        let mut s = self.note.clone();
        for l in self.lines.values() {
            s.push_str(l);
        }
        s
    }
}

/// The witnesses and the rounds.
#[derive(Debug)]
pub struct Witnessing {
    witnesses: Vec<(String, WitnessKey)>,
    round_ms: i64,
    current: Option<Round>,
    done: VecDeque<Round>,
}

fn body_of(note: &str) -> String {
    note.rfind("\n\n").map(|i| note[..i + 1].to_string()).unwrap_or_default()
}

impl Witnessing {
    /// The configured witnesses (code, key) and the longest round.
    pub fn new(witnesses: Vec<(String, WitnessKey)>, round_ms: i64) -> Witnessing {
        Witnessing { witnesses, round_ms: round_ms.max(1), current: None, done: VecDeque::new() }
    }

    /// How many witnesses are configured.
    pub fn configured(&self) -> usize {
        self.witnesses.len()
    }

    /// The checkpoint a witness should cosign now: the current round's, or
    /// `latest` in a new round if the current one is complete or old.
    pub fn candidate(&mut self, latest: &str, now_ms: i64) -> String {
        let over = match &self.current {
            None => true,
            Some(r) => r.lines.len() >= self.witnesses.len() || now_ms - r.started_ms >= self.round_ms,
        };
        if over {
            let same = self.current.as_ref().is_some_and(|r| r.note == latest);
            if !same {
                if let Some(r) = self.current.take().filter(|r| !r.lines.is_empty()) {
                    self.done.push_front(r);
                    self.done.truncate(KEPT);
                }
                self.current = Some(Round {
                    note: latest.to_string(),
                    body: body_of(latest),
                    started_ms: now_ms,
                    lines: BTreeMap::new(),
                });
            } else if let Some(r) = self.current.as_mut() {
                r.started_ms = now_ms;
            }
        }
        self.current.as_ref().map(|r| r.note.clone()).unwrap_or_default()
    }

    /// Records witness `code`'s cosignature `line` of checkpoint `body`.
    /// Returns how many configured witnesses have cosigned it.
    pub fn cosign(&mut self, code: &str, body: &str, line: &str, now_ms: i64) -> Result<usize, CosignError> {
        let key = self
            .witnesses
            .iter()
            .find(|(c, _)| c == code)
            .map(|(_, k)| k.clone())
            .ok_or_else(|| CosignError::Unknown(code.to_string()))?;
        let round = self
            .current
            .iter_mut()
            .chain(self.done.iter_mut())
            .find(|r| r.body == body)
            .ok_or(CosignError::NotInRound)?;
        let time = key.verify_line(body, line).ok_or_else(|| CosignError::Invalid(code.to_string()))?;
        if time > (now_ms.max(0) as u64) / 1000 + SKEW_SECONDS {
            return Err(CosignError::Future(code.to_string()));
        }
        let line = if line.ends_with('\n') { line.to_string() } else { format!("{line}\n") };
        round.lines.insert(code.to_string(), line);
        Ok(round.lines.len())
    }

    /// The newest checkpoint cosigned by at least `k` configured witnesses,
    /// with the cosignature lines after the log's signature.
    pub fn witnessed(&self, k: usize) -> Option<String> {
        self.current.iter().chain(self.done.iter()).find(|r| r.lines.len() >= k.max(1)).map(Round::cosigned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::tlog::Signer;
    use vigil_proto::tlog::cosignature::{WitnessSigner, open_cosigned};

    fn setup() -> (Signer, Vec<WitnessSigner>, Witnessing) {
        let (log, _) = Signer::from_seed("vigil.test/audit", &[1; 32]).unwrap();
        let signers: Vec<WitnessSigner> =
            (0..3).map(|i| WitnessSigner::from_seed(&format!("witness.test/w{i}"), &[20 + i; 32]).unwrap().0).collect();
        let keys = signers.iter().enumerate().map(|(i, s)| (format!("w{i}"), s.verifier())).collect();
        (log, signers, Witnessing::new(keys, 60_000))
    }

    fn note(log: &Signer, size: u64) -> String {
        log.sign(&format!("vigil.test/audit\n{size}\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")).unwrap()
    }

    /// Witnesses asking at different times get the same checkpoint until
    /// the round is complete, so k of them cosign one checkpoint.
    #[test]
    fn witnesses_cosign_one_checkpoint_per_round() {
        let (log, w, mut ws) = setup();
        let (a, b) = (note(&log, 5), note(&log, 6));
        let c0 = ws.candidate(&a, 0);
        assert_eq!(c0, a);
        let body = body_of(&c0);
        assert_eq!(ws.cosign("w0", &body, &w[0].cosign(&body, 1), 1_000), Ok(1));
        // The log moved on; the round did not.
        assert_eq!(ws.candidate(&b, 2_000), a);
        assert_eq!(ws.cosign("w1", &body, &w[1].cosign(&body, 2), 2_000), Ok(2));
        assert_eq!(ws.cosign("w2", &body, &w[2].cosign(&body, 3), 3_000), Ok(3));
        let cosigned = ws.witnessed(3).unwrap();
        let (_, names) =
            open_cosigned(&cosigned, &log.verifier(), &w.iter().map(|s| s.verifier()).collect::<Vec<_>>(), 3).unwrap();
        assert_eq!(names.len(), 3);
        // Complete: the next round takes the latest.
        assert_eq!(ws.candidate(&b, 4_000), b);
        assert_eq!(ws.witnessed(1).unwrap(), cosigned, "the newest round with cosignatures");
    }

    /// A round that some witness never completes ends after `round_ms`.
    #[test]
    fn a_round_ends_after_its_time() {
        let (log, w, mut ws) = setup();
        let (a, b) = (note(&log, 5), note(&log, 6));
        let body = body_of(&ws.candidate(&a, 0));
        ws.cosign("w0", &body, &w[0].cosign(&body, 1), 1_000).unwrap();
        assert_eq!(ws.candidate(&b, 59_999), a);
        assert_eq!(ws.candidate(&b, 60_000), b);
        assert!(ws.witnessed(2).is_none());
        assert!(ws.witnessed(1).unwrap().starts_with(&a));
    }

    #[test]
    fn refuses_strangers_forgeries_and_other_checkpoints() {
        let (log, w, mut ws) = setup();
        let a = note(&log, 5);
        let body = body_of(&ws.candidate(&a, 0));
        let (stranger, _) = WitnessSigner::from_seed("witness.test/w9", &[9; 32]).unwrap();
        assert_eq!(ws.cosign("w9", &body, &stranger.cosign(&body, 1), 0), Err(CosignError::Unknown("w9".into())));
        // w1's certificate handing in w0's signature, or a signature by another key.
        assert_eq!(ws.cosign("w1", &body, &w[0].cosign(&body, 1), 0), Err(CosignError::Invalid("w1".into())));
        let other = body.replace('5', "7");
        assert_eq!(ws.cosign("w0", &other, &w[0].cosign(&other, 1), 0), Err(CosignError::NotInRound));
        let tampered = w[0].cosign(&other, 1);
        assert_eq!(ws.cosign("w0", &body, &tampered, 0), Err(CosignError::Invalid("w0".into())));
        assert_eq!(ws.cosign("w0", &body, &w[0].cosign(&body, 10_000), 0), Err(CosignError::Future("w0".into())));
        assert!(ws.witnessed(1).is_none());
    }
}
