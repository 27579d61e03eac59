//! The flush: every [`FLUSH`], retry what could not be recorded, write each revision's parent
//! counts when they changed, and prune the history.

use std::collections::BTreeSet;
use std::sync::Arc;

use kube::api::DeleteParams;
use tokio_util::sync::CancellationToken;

use super::{FLUSH, Intent, RevisionError, Revisions, State, api_error, object};
use ruleop_lang::revision::prune;

impl Revisions {
    /// Every [`FLUSH`] until `cancel`: retries pending records, writes changed counts, prunes.
    pub async fn flush_every(self: Arc<Self>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(FLUSH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => self.flush().await,
            }
        }
    }

    async fn flush(&self) {
        let mut state = self.state.lock().await;
        for (name, intent) in std::mem::take(&mut state.pending) {
            match self.record(&mut state, &name, &intent).await {
                Ok(()) => {
                    if let Intent::Accepted(r, _) = &intent {
                        // Now known: the rule's parents get their label.
                        self.controller.enqueue_all(&r.rule.name);
                    }
                }
                Err(_) => state.pending.push((name, intent)),
            }
        }
        if state.on != Some(true) {
            return;
        }
        let rules: Vec<String> = state
            .rules
            .iter()
            .filter(|(_, h)| h.loaded)
            .map(|(n, _)| n.clone())
            .collect();
        for rule in rules {
            if let Err(e) = self.flush_rule(&mut state, &rule).await {
                tracing::debug!(rule = %rule, error = %e, "cannot update rule revisions; next flush retries");
            }
        }
    }

    async fn flush_rule(&self, state: &mut State, rule: &str) -> Result<(), RevisionError> {
        let Some(counts) = self.controller.revision_counts(rule) else {
            return Ok(());
        };
        let in_use = self.controller.revisions_in_use(rule).unwrap_or_default();
        let Some(history) = state.rules.get_mut(rule) else {
            return Ok(());
        };
        let numbers: Vec<u64> = history.stored.keys().copied().collect();
        for n in &numbers {
            let Some(stored) = history.stored.get(n) else {
                continue;
            };
            let want = counts.get(n).copied().unwrap_or_default();
            if stored.counts() == want {
                continue;
            }
            let state = object::State {
                refused: stored.refusal(),
                active: if history.active == Some(*n) {
                    Ok(())
                } else {
                    Err(object::SUPERSEDED)
                },
                counts: want,
            };
            self.write_status(rule, history, *n, &state).await?;
        }
        let mut keep: BTreeSet<u64> = in_use;
        keep.extend(history.active);
        // A compiled rule is kept while a parent may be planned with it (the active revision,
        // or one a parent is still on); a later need rebuilds it from its stored text.
        history.compiled.retain(|n, _| keep.contains(n));
        for n in prune(&numbers, self.limit, &keep) {
            let Some(stored) = history.stored.get(&n) else {
                continue;
            };
            match self
                .api
                .delete(&stored.name, &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(api_error("delete", &stored.name)(e)),
            }
            tracing::info!(rule, revision = n, "old rule revision pruned");
            history.stored.remove(&n);
            history.compiled.remove(&n);
        }
        Ok(())
    }
}
