//! Metrics, through the `metrics` facade: free until an exporter is
//! installed (`[metrics] listen` in the config serves them for Prometheus).
//! Names and labels never carry a token, a reference or personal data.

use std::time::Duration;

/// Tokens held in the two indexes.
pub fn set_tokens(national: usize, roster: usize) {
    metrics::gauge!("vigil_tokens", "side" => "national").set(national as f64);
    metrics::gauge!("vigil_tokens", "side" => "roster").set(roster as f64);
}

/// This coordinator took over as the active one.
pub fn takeover() {
    metrics::counter!("vigil_takeovers_total").increment(1);
}

/// Whether this coordinator is the active one (1) or the standby (0).
pub fn set_active(active: bool) {
    metrics::gauge!("vigil_active").set(if active { 1.0 } else { 0.0 });
}

/// A batch was committed.
pub fn batch_committed() {
    metrics::counter!("vigil_batches_committed_total").increment(1);
}

/// A publication made `disclosures` new disclosures or retractions
/// readable. Counted per publication, never per batch: the counter moves
/// no more finely than the log itself.
pub fn disclosures_published(disclosures: u64) {
    metrics::counter!("vigil_disclosures_created_total").increment(disclosures);
}

/// Time to handle one batch of `kind` (`roster` or `national`): check and
/// pepper its tokens, apply it and commit it durably (not decoding, nor
/// waiting for the sender's batch before it: `turns`). A source's batches in
/// flight together are checked and peppered at the same time, so these
/// times overlap.
pub fn ingest(kind: &'static str, took: Duration) {
    metrics::counter!("vigil_batches_total", "kind" => kind).increment(1);
    metrics::histogram!("vigil_batch_seconds", "kind" => kind).record(took.as_secs_f64());
}

/// A force has enrolled 90% or more of its cap.
pub fn roster_near_cap(force: &str) {
    metrics::counter!("vigil_roster_near_cap_total", "force" => force.to_string()).increment(1);
}

/// A force passed 80% of its daily quota of applicants checked.
pub fn check_quota_nearing(force: &str) {
    metrics::counter!("vigil_check_quota_nearing_total", "force" => force.to_string()).increment(1);
}

/// A roster batch took a force past 80% of its daily quota of additions.
pub fn additions_quota_nearing(force: &str) {
    metrics::counter!("vigil_additions_quota_nearing_total", "force" => force.to_string()).increment(1);
}

/// A force's subscription replaced one that was still live.
pub fn subscription_replaced() {
    metrics::counter!("vigil_subscriptions_replaced_total").increment(1);
}

/// A disclosure was sent to a subscriber.
pub fn delivered() {
    metrics::counter!("vigil_disclosures_delivered_total").increment(1);
}

/// A call refused by authorisation: the caller's role (`none` without a
/// usable certificate) and a short reason.
pub fn refused_call(role: &str, reason: &'static str) {
    metrics::counter!("vigil_refused_calls_total", "role" => role.to_string(), "reason" => reason).increment(1);
}
