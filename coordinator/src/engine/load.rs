//! Rebuilding the engine from the store: at start-up, and after a failed
//! commit. The tree is checked against the latest signed checkpoint, and a
//! policy or epoch change is logged.

use vigil_proto::audit::Entry;
use vigil_proto::tlog::Signer;

use super::log::{AuditLog, LogView};
use super::outbox::{Batch, Case, Outbox};
use super::registry::Registry;
use super::types::{EngineError, Settings};
use super::{Engine, keys};
use crate::matcher::Matcher;
use crate::store::{ActiveRow, Commit, RecordRow, StoreError, StoreRead, SubjectRow};

impl Engine {
    /// Rebuilds the engine from the store, checks the log against its latest
    /// checkpoint, and appends policy and epoch entries if they changed.
    /// Returns the engine, the published log view, and a commit to apply
    /// before serving (empty when nothing changed).
    pub fn load(
        store: &dyn StoreRead,
        settings: Settings,
        signer: Signer,
        now_ms: i64,
    ) -> Result<(Engine, LogView, Commit), EngineError> {
        let (national_tokens, roster_tokens) = settings.index_capacity;
        let log = AuditLog::new(signer, settings.origin.clone());
        let mut matcher = Matcher::with_capacity(national_tokens, roster_tokens);
        matcher.set_records_floor(settings.national_records);
        let mut e = Engine {
            matcher,
            registry: Registry::default(),
            outbox: Outbox::default(),
            log,
            hits: Vec::new(),
            decided_at: 0,
            settings,
        };
        if let Some(origin) = store.meta("origin")?
            && origin != e.settings.origin.as_bytes()
        {
            return Err(EngineError::Integrity(format!(
                "this store's log has origin {:?}, the configuration says {:?}",
                String::from_utf8_lossy(&origin),
                e.settings.origin
            )));
        }
        if let Some(vkey) = store.meta("vkey")?
            && vkey != e.log.vkey().as_bytes()
        {
            return Err(EngineError::Integrity("the audit signing key is not the one this log was signed with".into()));
        }
        store.for_each_subject(&mut |row: SubjectRow| {
            let id = e.registry.add_subject(&row.force, row.pseudonym);
            e.matcher.add_subject(id, &keys(&row.tokens));
        })?;
        store.for_each_record(&mut |row: RecordRow| {
            let id = e.registry.add_record(&row.source, row.record_ref);
            e.matcher.add_record(id, &keys(&row.tokens));
        })?;
        let mut err: Option<StoreError> = None;
        store.for_each_active(&mut |row: ActiveRow| match (
            e.registry.subject(&row.force, &row.pseudonym),
            e.registry.record(&row.source, &row.record_ref),
        ) {
            (Some(sid), Some(rid)) => e.outbox.restore(
                sid,
                rid,
                Case {
                    id: row.disclosure_id,
                    version: row.version,
                    agreeing: row.agreeing,
                    probability: row.probability,
                },
            ),
            _ => err = Some(StoreError("a disclosure in force names a missing subject or record".into())),
        })?;
        if let Some(x) = err {
            return Err(x.into());
        }
        for (force, seq) in store.last_sequences()? {
            e.outbox.restore_sequence(&force, seq);
        }
        store.for_each_log_entry(&mut |_, entry| e.log.push_stored(entry))?;
        e.decided_at = e.matcher.population();
        let mut view = e.log.verify(store.latest_checkpoint()?)?;
        // Epoch and policy entries when they changed (or on first start). A
        // new policy decides every pair afresh: what it confirms that the
        // last did not is disclosed, what it no longer confirms is retracted
        // and a case whose probability moved is amended, all announced by
        // the policy entry and logged right after it.
        let mut b = Batch::new(now_ms);
        let mut head = Vec::new();
        if store.meta("epoch")?.as_deref() != Some(&e.settings.epoch.to_be_bytes()[..]) {
            head.push(Entry::Epoch { time: b.time.clone(), epoch: e.settings.epoch });
            b.commit.meta.push(("epoch".into(), e.settings.epoch.to_be_bytes().to_vec()));
        }
        let stored_policy = store.meta("policy_sha256")?;
        if stored_policy.as_deref() != Some(e.settings.policy_sha256.as_bytes()) {
            if stored_policy.is_some() {
                let sids = e.registry.subject_ids();
                e.rescore(store, &mut b, sids, "policy_changed", &Default::default())?;
            }
            head.push(Entry::Policy {
                time: b.time.clone(),
                version: e.settings.policy.version.clone(),
                sha256: e.settings.policy_sha256.clone(),
                disclosures: b.disclosed,
                amendments: b.amended,
                retractions: b.retracted,
            });
            b.commit.meta.push(("policy_sha256".into(), e.settings.policy_sha256.clone().into_bytes()));
        }
        let mut commit = Commit::default();
        if !head.is_empty() || view.checkpoint.is_empty() {
            b.commit.meta.push(("origin".into(), e.settings.origin.clone().into_bytes()));
            b.commit.meta.push(("vkey".into(), e.log.vkey().into_bytes()));
            let (c, leaves) = e.log.close(b, head)?;
            for l in leaves {
                view.tree.push(l);
            }
            view.checkpoint = c.checkpoint.as_ref().map(|(_, n)| n.clone()).unwrap_or_default();
            commit = c;
        }
        Ok((e, view, commit))
    }
}
