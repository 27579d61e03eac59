//! Rule lifecycle in the controller: resolving a rule's kinds, activating it, applying a
//! reload's diff, and releasing the parents of a removed rule.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use kube::core::GroupVersionKind;

use super::{ActiveRule, Controller, Resolved, key_for};
use crate::cache::{GroupKind, KindCache};
use crate::client::identity::Writer;
use ruleop_lang::load::LoadedRule;
use ruleop_lang::rule::{CompiledRule, Scope, split_api_version};
use ruleop_schema::meta;

impl Controller {
    /// Adds rules (at start or on reload). Each becomes active once its kinds are served.
    pub async fn add_rules(self: &Arc<Self>, rules: Vec<LoadedRule>) {
        {
            let mut waiting = self
                .waiting
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for r in rules {
                waiting.insert(r.rule.name.clone(), (r, "not resolved yet".into()));
            }
        }
        self.activate_waiting().await;
        self.update_gauges();
    }

    /// Names of active rules and of rules waiting for their kinds.
    pub fn rule_states(&self) -> (Vec<String>, Vec<String>) {
        let active = self.rules_read().keys().cloned().collect();
        let waiting = self
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        (active, waiting)
    }

    pub(super) async fn activate_waiting(self: &Arc<Self>) {
        let pending: Vec<LoadedRule> = self
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(|(r, _)| r.clone())
            .collect();
        for loaded in pending {
            let ready = match self.resolve(&loaded.rule).await {
                Ok(kinds) => self.writer_of(&loaded.rule).map(|writer| (kinds, writer)),
                Err(why) => Err(why),
            };
            match ready {
                Ok((kinds, writer)) => self.activate(loaded, kinds, writer).await,
                Err(why) => {
                    let mut waiting = self
                        .waiting
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Some(entry) = waiting.get_mut(&loaded.rule.name)
                        && entry.1 != why
                    {
                        tracing::info!(rule = %loaded.rule.name, reason = %why, "rule waiting for its kinds to be served");
                        entry.1 = why;
                    }
                }
            }
        }
        let synced = self.rules_read().values().all(|r| {
            std::iter::once(&r.parent)
                .chain(&r.children)
                .chain(&r.related)
                .chain(r.lookups.iter().map(|(gk, _)| gk))
                .chain(r.decorated.iter().map(|(gk, _)| gk))
                .all(|gk| self.cache(gk).is_some_and(|c| c.is_synced()))
        });
        self.ready.store(synced, Ordering::Release);
        // Accounts no loaded rule writes as any more (a reload removed or changed them).
        self.identities.prune();
    }

    /// The client `rule` writes with: the one of its ServiceAccount, else the operator's.
    fn writer_of(&self, rule: &CompiledRule) -> Result<Arc<Writer>, String> {
        self.identities
            .writer(rule.spec.service_account.as_ref())
            .map_err(|e| {
                let at = rule.spans.find("spec.serviceAccount");
                format!("{}:{at}: {e}", rule.path.display())
            })
    }

    /// Resolves every kind a rule names through discovery.
    pub(super) async fn resolve(
        &self,
        rule: &CompiledRule,
    ) -> Result<Vec<(Role, Resolved)>, String> {
        let spec = &rule.spec;
        let mut wanted: Vec<(Role, &str, &str)> =
            vec![(Role::Parent, &spec.parent.api_version, &spec.parent.kind)];
        wanted.extend(
            spec.children
                .iter()
                .map(|c| (Role::Child, c.api_version.as_str(), c.kind.as_str())),
        );
        if let Some(f) = &spec.finalizer {
            wanted.extend(
                f.cleanup
                    .iter()
                    .map(|c| (Role::Child, c.api_version.as_str(), c.kind.as_str())),
            );
        }
        wanted.extend(
            spec.related
                .iter()
                .map(|r| (Role::Related, r.api_version.as_str(), r.kind.as_str())),
        );
        wanted.extend(
            spec.lookups
                .iter()
                .map(|l| (Role::Lookup, l.api_version.as_str(), l.kind.as_str())),
        );
        wanted.extend(
            spec.decorations
                .iter()
                .map(|d| (Role::Decorated, d.api_version.as_str(), d.kind.as_str())),
        );
        let mut out = Vec::new();
        for (role, api_version, kind) in wanted {
            let (group, version) = split_api_version(api_version);
            let gvk = GroupVersionKind::gvk(group, version, kind);
            match kube::discovery::pinned_kind(&self.client, &gvk).await {
                Ok((resource, caps)) => {
                    let namespaced = caps.scope == kube::discovery::Scope::Namespaced;
                    check_scope(rule, role, api_version, kind, namespaced)?;
                    out.push((
                        role,
                        Resolved {
                            gk: GroupKind {
                                group: group.into(),
                                kind: kind.into(),
                            },
                            resource,
                            namespaced,
                        },
                    ));
                }
                Err(e) => return Err(format!("{api_version}/{kind} is not served: {e}")),
            }
        }
        Ok(out)
    }

    pub(super) async fn activate(
        self: &Arc<Self>,
        loaded: LoadedRule,
        kinds: Vec<(Role, Resolved)>,
        writer: Arc<Writer>,
    ) {
        let name = loaded.rule.name.clone();
        let mut parent = None;
        let mut children = Vec::new();
        let mut related = Vec::new();
        let mut related_namespaced = Vec::new();
        let mut lookups = Vec::new();
        let mut decorated = Vec::new();
        for (role, r) in &kinds {
            match role {
                Role::Parent => parent = Some(r.gk.clone()),
                Role::Child => children.push(r.gk.clone()),
                Role::Related => {
                    related.push(r.gk.clone());
                    related_namespaced.push(r.namespaced);
                }
                Role::Lookup => lookups.push((r.gk.clone(), r.namespaced)),
                Role::Decorated => decorated.push((r.gk.clone(), r.namespaced)),
            }
        }
        let Some(parent) = parent else { return };
        let child_kinds: Vec<_> = kinds
            .iter()
            .filter(|(role, _)| *role == Role::Child)
            .map(|(_, r)| r.resource.clone())
            .collect();
        let parent_status = kinds
            .iter()
            .find(|(role, _)| *role == Role::Parent)
            .map(|(_, r)| super::schemas::ParentStatus::of(&loaded.rule, r.resource.clone()));
        let schemas = self
            .schemas
            .for_children(&name, child_kinds, parent_status)
            .await;
        let active = Arc::new(ActiveRule {
            loaded: loaded.clone(),
            parent,
            children,
            related,
            related_namespaced,
            lookups,
            decorated,
            reads: loaded.rule.reads(),
            schemas,
            memo: super::memo::PlanMemo::default(),
            writer,
        });
        self.rules
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.clone(), active);
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&name);
        for (_, r) in kinds {
            self.ensure_watch(r);
        }
        tracing::info!(rule = %name, file = %loaded.path.display(), hash = %loaded.hash, "rule active");
        // Parents already cached (kind shared with an earlier rule) need a first reconcile.
        self.enqueue_all(&name);
        if loaded.rule.spec.parent.selector.is_some() {
            let this = self.clone();
            tokio::spawn(async move { this.sweep_unselected(&name).await });
        }
    }

    /// Reconciles every parent of a rule.
    pub fn enqueue_all(&self, rule: &str) {
        let Some(active) = self.rules_read().get(rule).cloned() else {
            return;
        };
        if let Some(cache) = self.cache(&active.parent) {
            for p in cache.list(None) {
                if super::select::enqueued_at_start(&active, &p) {
                    self.queue.add(key_for(rule, &p));
                }
            }
        }
    }

    /// Whether some active rule creates objects of `gk`.
    pub(super) fn is_child_kind(&self, gk: &GroupKind) -> bool {
        self.rules_read().values().any(|r| r.children.contains(gk))
    }

    /// Applies a reload: starts added rules, restarts changed ones (every parent reconciled
    /// with the new version), and stops removed ones, releasing their parents.
    pub async fn apply_diff(self: &Arc<Self>, diff: &ruleop_lang::ruleset::Diff) {
        for gone in diff.removed.iter().chain(&diff.changed) {
            let name = &gone.rule.name;
            let removed = diff.removed.iter().any(|r| &r.rule.name == name);
            self.routes().remove_rule(name);
            self.waiting
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(name);
            let active = self
                .rules
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(name);
            if let (true, Some(active)) = (removed, active) {
                self.release(&active).await;
            }
        }
        let mut start: Vec<LoadedRule> = diff.changed.clone();
        start.extend(diff.added.iter().cloned());
        self.add_rules(start).await;
    }

    /// A removed rule lets go of its parents: ruleop's finalizer is removed so none is left
    /// stuck in deletion; children stay unless the rule asked for them to be deleted.
    pub(super) async fn release(&self, rule: &ActiveRule) {
        let name = &rule.rule().name;
        let delete_children =
            rule.rule().spec.on_rule_removal == ruleop_lang::rule::RemovalPolicy::DeleteChildren;
        if let Some(parents) = self.cache(&rule.parent) {
            for cached in parents.list(None) {
                let parent = cached.json();
                if !meta::has_finalizer(&parent, meta::FINALIZER) {
                    continue;
                }
                let api =
                    crate::apply::api_for(&rule.writer.client, &parents, meta::namespace(&parent));
                match self.actor.set_finalizer(&api, &parent, false).await {
                    Ok(()) => {
                        tracing::info!(rule = %name, parent = %meta::ObjectKey::of(&parent), "finalizer removed: rule gone")
                    }
                    Err(e) => tracing::warn!(rule = %name, error = %e, "cannot remove finalizer"),
                }
            }
        }
        if delete_children {
            let caches: Vec<Arc<KindCache>> = self
                .caches_read()
                .values()
                .map(|r| r.cache.clone())
                .collect();
            for cache in caches {
                for obj in cache
                    .list(None)
                    .iter()
                    .filter(|o| o.label(meta::RULE_LABEL) == Some(name.as_str()))
                {
                    if let Err(e) = self
                        .actor
                        .delete_object(&rule.writer.client, &cache, &obj.json())
                        .await
                    {
                        tracing::warn!(rule = %name, error = %e, "cannot delete child of removed rule");
                    }
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Parent,
    Child,
    Related,
    Lookup,
    Decorated,
}

/// Whether the rule's view of a kind's scope agrees with the cluster's discovery: a
/// mismatch would make every rendered object a different key than the stored one.
pub(super) fn check_scope(
    rule: &CompiledRule,
    role: Role,
    api_version: &str,
    kind: &str,
    namespaced: bool,
) -> Result<(), String> {
    let expected = match role {
        Role::Parent => rule.spec.parent.scope,
        Role::Child => rule.kind_scope(api_version, kind),
        Role::Related | Role::Lookup | Role::Decorated => return Ok(()),
    };
    let served = if namespaced {
        Scope::Namespaced
    } else {
        Scope::Cluster
    };
    if expected == served {
        return Ok(());
    }
    let fix = match role {
        Role::Parent => format!("set spec.parent.scope: {served:?}"),
        _ => format!("set scope: {served:?} in its spec.allow entry"),
    };
    Err(format!(
        "{api_version}/{kind} is {served:?}-scoped in the cluster, but the rule treats it as {expected:?}-scoped: {fix}"
    ))
}
