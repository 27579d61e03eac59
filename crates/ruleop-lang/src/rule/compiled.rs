//! The typed mirror of a rule's templates: one handle per compiled template or expression,
//! in the shape of the spec, so the planner reads `compiled.children[i].template` instead of
//! rebuilding the YAML path it was registered under. An optional part of the spec is an
//! `Option` here: a template that was not compiled cannot be asked for.

use std::collections::BTreeMap;

use crate::cel::CelRules;
use crate::template::{ExprId, TemplateId};

/// Every compiled template and expression of a rule, as handles.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    /// `spec.definitions.macros`.
    pub macros: Option<TemplateId>,
    /// `spec.definitions.values[i].expr`.
    pub values: Vec<ExprId>,
    /// `spec.validate[i]`.
    pub validate: Vec<ValidateTemplates>,
    /// `spec.children[i]`.
    pub children: Vec<ChildTemplates>,
    /// `spec.related[i].selector`: each label's value template, in key order.
    pub related: Vec<Vec<(String, TemplateId)>>,
    /// `spec.lookups[i]`.
    pub lookups: Vec<LookupTemplates>,
    /// `spec.status.fields.<name>.expr`, for the fields computed by an expression.
    pub status_fields: BTreeMap<String, ExprId>,
    /// `spec.status.onFailure.<name>.expr`, for the fields computed by an expression.
    pub on_failure: BTreeMap<String, ExprId>,
    /// `spec.status.ready`.
    pub ready: Option<ConditionTemplates>,
    /// `spec.status.conditions[i]`.
    pub conditions: Vec<ConditionTemplates>,
    /// `spec.finalizer.cleanup[i]`.
    pub cleanup: Vec<CleanupTemplates>,
    /// The CEL checks of `spec.validate` and of `spec.crd` fields.
    pub cel: CelRules,
    /// `spec.decorations[i]`.
    pub decorations: Vec<super::DecorationTemplates>,
}

/// `spec.validate[i]`.
#[derive(Debug, Clone, Copy)]
pub enum ValidateTemplates {
    /// A Jinja check.
    Jinja {
        /// `rule`.
        rule: ExprId,
        /// `message`.
        message: TemplateId,
    },
    /// A CEL check: its index in [`Compiled::cel`]`.validate`.
    Cel(usize),
}

/// `spec.children[i]`.
#[derive(Debug, Clone, Copy)]
pub struct ChildTemplates {
    /// `template`.
    pub template: TemplateId,
    /// `when`.
    pub when: Option<ExprId>,
    /// `ready`.
    pub ready: Option<ExprId>,
    /// `forEach`.
    pub for_each: Option<ForEachTemplates>,
    /// `replicas`.
    pub replicas: Option<ReplicasTemplates>,
}

/// `spec.children[i].forEach`.
#[derive(Debug, Clone, Copy)]
pub struct ForEachTemplates {
    /// `items`.
    pub items: ExprId,
    /// `key`.
    pub key: Option<ExprId>,
}

/// `spec.children[i].replicas`.
#[derive(Debug, Clone, Copy)]
pub struct ReplicasTemplates {
    /// `count`.
    pub count: ExprId,
    /// `prefix`.
    pub prefix: Option<ExprId>,
}

/// `spec.lookups[i]`.
#[derive(Debug, Clone, Copy)]
pub struct LookupTemplates {
    /// `objectName` or `objectNames`.
    pub names: LookupNames,
    /// `namespace`.
    pub namespace: Option<TemplateId>,
}

/// What a lookup names: one object, or a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupNames {
    /// `objectName`: a template rendering one name.
    One(TemplateId),
    /// `objectNames`: an expression giving a list of names.
    Many(ExprId),
}

/// `spec.status.ready` or `spec.status.conditions[i]`.
#[derive(Debug, Clone, Copy)]
pub struct ConditionTemplates {
    /// `when`.
    pub when: ExprId,
    /// `message`.
    pub message: Option<TemplateId>,
}

/// `spec.finalizer.cleanup[i]`.
#[derive(Debug, Clone, Copy)]
pub struct CleanupTemplates {
    /// `template`.
    pub template: TemplateId,
    /// `until`.
    pub until: ExprId,
}

/// The handles gathered while compiling: `None` where compiling failed (an error is then
/// reported, and no rule is built).
#[derive(Default)]
pub(super) struct Draft {
    pub(super) macros: Option<Option<TemplateId>>,
    pub(super) values: Vec<Option<ExprId>>,
    pub(super) validate: Vec<Option<ValidateTemplates>>,
    pub(super) children: Vec<Option<ChildTemplates>>,
    pub(super) related: Vec<Option<Vec<(String, TemplateId)>>>,
    pub(super) lookups: Vec<Option<LookupTemplates>>,
    pub(super) status_fields: BTreeMap<String, ExprId>,
    pub(super) on_failure: BTreeMap<String, ExprId>,
    pub(super) ready: Option<Option<ConditionTemplates>>,
    pub(super) conditions: Vec<Option<ConditionTemplates>>,
    pub(super) cleanup: Vec<Option<CleanupTemplates>>,
    pub(super) cel: CelRules,
    pub(super) decorations: Vec<Option<super::DecorationTemplates>>,
}

impl Draft {
    /// Nothing compiled yet; the optional single parts absent until compiled.
    pub(super) fn new() -> Self {
        Self {
            macros: Some(None),
            ready: Some(None),
            ..Self::default()
        }
    }

    /// The mirror, when everything compiled.
    pub(super) fn finish(self) -> Option<Compiled> {
        Some(Compiled {
            macros: self.macros?,
            values: self.values.into_iter().collect::<Option<_>>()?,
            validate: self.validate.into_iter().collect::<Option<_>>()?,
            children: self.children.into_iter().collect::<Option<_>>()?,
            related: self.related.into_iter().collect::<Option<_>>()?,
            lookups: self.lookups.into_iter().collect::<Option<_>>()?,
            status_fields: self.status_fields,
            on_failure: self.on_failure,
            ready: self.ready?,
            conditions: self.conditions.into_iter().collect::<Option<_>>()?,
            cleanup: self.cleanup.into_iter().collect::<Option<_>>()?,
            cel: self.cel,
            decorations: self.decorations.into_iter().collect::<Option<_>>()?,
        })
    }
}

/// Compiles an optional part: `Some(None)` when absent, `None` when it failed to compile.
pub(super) fn optional<S: ?Sized, T>(
    source: Option<&S>,
    compile: impl FnOnce(&S) -> Option<T>,
) -> Option<Option<T>> {
    match source {
        None => Some(None),
        Some(s) => compile(s).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use crate::load::parse_rule;
    use crate::rule::CompiledRule;

    /// The names of every handle in the mirror.
    fn mirrored(rule: &CompiledRule) -> Vec<&str> {
        let (t, c) = (&rule.templates, &rule.compiled);
        let mut out: Vec<&str> = Vec::new();
        out.extend(c.macros.map(|m| t.name(m)));
        out.extend(c.values.iter().map(|&v| t.name(v)));
        for v in &c.validate {
            if let super::ValidateTemplates::Jinja { rule, message } = *v {
                out.extend([t.name(rule), t.name(message)]);
            }
        }
        for ch in &c.children {
            out.push(t.name(ch.template));
            out.extend(ch.when.map(|w| t.name(w)));
            out.extend(ch.ready.map(|r| t.name(r)));
            if let Some(each) = ch.for_each {
                out.push(t.name(each.items));
                out.extend(each.key.map(|k| t.name(k)));
            }
            if let Some(replicas) = ch.replicas {
                out.push(t.name(replicas.count));
                out.extend(replicas.prefix.map(|p| t.name(p)));
            }
        }
        out.extend(c.related.iter().flatten().map(|&(_, id)| t.name(id)));
        for l in &c.lookups {
            out.push(match l.names {
                super::LookupNames::One(id) => t.name(id),
                super::LookupNames::Many(id) => t.name(id),
            });
            out.extend(l.namespace.map(|n| t.name(n)));
        }
        out.extend(c.status_fields.values().map(|&f| t.name(f)));
        out.extend(c.on_failure.values().map(|&f| t.name(f)));
        for cond in c.ready.iter().chain(&c.conditions) {
            out.push(t.name(cond.when));
            out.extend(cond.message.map(|m| t.name(m)));
        }
        for s in &c.cleanup {
            out.extend([t.name(s.template), t.name(s.until)]);
        }
        for d in &c.decorations {
            let entries = d.selector.iter().chain(&d.labels).chain(&d.annotations);
            out.extend(entries.map(|&(_, id)| t.name(id)));
            out.extend(d.object_name.map(|n| t.name(n)));
        }
        out
    }

    /// Every compiled template is in the mirror once, under the path of its source.
    #[test]
    fn the_mirror_holds_every_template_once() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut paths: Vec<_> = std::fs::read_dir(root.join("rules"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
            .collect();
        // Collections, lookups, macros and cleanup steps.
        for more in [
            "tests/rules/language/crew.yaml",
            "tests/rules/soak/bundle.yaml",
            "examples/tenant/rule.yaml",
            // A lookup over a list (`objectNames`).
            "examples/reloader/rule.yaml",
            "examples/pod-name-label/rule.yaml",
        ] {
            paths.push(root.join(more));
        }
        let mut seen = 0;
        for path in paths {
            let source = std::fs::read_to_string(&path).unwrap();
            let rule = parse_rule(&path, &source).unwrap();
            let names = mirrored(&rule);
            let unique: BTreeSet<&str> = names.iter().copied().collect();
            assert_eq!(unique.len(), names.len(), "{}", path.display());
            let compiled: BTreeSet<&str> = rule.templates.names().collect();
            assert_eq!(unique, compiled, "{}", path.display());
            for (i, ch) in rule.compiled.children.iter().enumerate() {
                let name = rule.templates.name(ch.template);
                assert_eq!(name, format!("spec.children[{i}].template"));
            }
            seen += 1;
        }
        assert!(seen >= 8);
    }
}
