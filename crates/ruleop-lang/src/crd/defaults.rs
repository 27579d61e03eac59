//! The defaults a sample parent gets on the cluster, for the authoring commands: from the CRD
//! given with `--crd`, else from the CRD the rule's own `spec.crd` generates.

use serde_json::Value as Json;

use crate::rule::CompiledRule;
use ruleop_schema::crds::{CrdSet, SPEC_CRD};
use ruleop_schema::defaults::{DefaultsError, apply_crd_defaults};

/// Applies the defaults the parent `object` of `rule` gets on the cluster: those of its CRD in
/// `crds` (`--crd`) when one defines it, else those of the CRD the rule's `spec.crd`
/// generates (what `ruleop crd` installs). An error only when CRDs were given, none defines
/// the object and the rule has no `spec.crd`.
pub fn apply_parent_defaults(
    rule: &CompiledRule,
    crds: &[Json],
    object: &mut Json,
) -> Result<(), DefaultsError> {
    let given = apply_crd_defaults(&CrdSet::of(crds, "--crd"), object);
    if !matches!(given, Err(DefaultsError::NoCrd { .. })) {
        return given;
    }
    match rule.spec.crd.as_ref().map(|_| super::generate(rule)) {
        Some(Ok(own)) => apply_crd_defaults(&CrdSet::of([&own], SPEC_CRD), object),
        // A `spec.crd` that cannot generate a CRD is reported by `check`; no defaults.
        Some(Err(_)) => Ok(()),
        None if crds.is_empty() => Ok(()),
        None => given,
    }
}
