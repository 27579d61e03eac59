//! The fuel of one plan: what all of its renders (children, collection items, values, status,
//! re-plans) may run together, so that no parent holds a thread for long whatever its size.
//!
//! Fuel bounds one render; a plan runs many (a `forEach` of a thousand items, a re-plan after
//! a name conflict). Each render's consumed fuel is charged to the plan running on this thread
//! (plans are synchronous, like the memory budget in `budget`); a render that would start
//! after the plan's fuel ran out is refused, and the template it was is remembered for the
//! plan's failure. A plan thus runs at most its fuel plus one render's. Counted in
//! instructions, not seconds, so a plan is the same on every machine and in `ruleop render`.

use std::cell::{Cell, RefCell};

/// A plan's fuel, as a multiple of one render's (`spec.limits.fuel`): the default fuel gives
/// a plan a few tenths of a second of template work.
pub const PLAN_FUEL_PER_RENDER_FUEL: u64 = 50;

thread_local! {
    /// Fuel the current plan may still spend; `None` outside a plan.
    static LEFT: Cell<Option<u64>> = const { Cell::new(None) };
    /// The current plan's whole fuel, for messages.
    static LIMIT: Cell<u64> = const { Cell::new(0) };
    /// The first template refused for lack of fuel in the current plan.
    static REFUSED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The fuel of the plan running on this thread. Entering a plan inside another one (the
/// controller's observe-and-plan around the planner's own scope) shares the outer plan's.
pub struct PlanScope {
    outer: bool,
}

impl PlanScope {
    /// Starts a plan that may spend `limit` instructions, unless one is running already.
    pub fn enter(limit: u64) -> PlanScope {
        if LEFT.get().is_some() {
            return PlanScope { outer: false };
        }
        LEFT.set(Some(limit));
        LIMIT.set(limit);
        REFUSED.replace(None);
        PlanScope { outer: true }
    }

    /// The template refused because the plan's fuel ran out, and the plan's fuel.
    pub fn refused(&self) -> Option<(String, u64)> {
        REFUSED
            .with_borrow(|r| r.clone())
            .map(|name| (name, LIMIT.get()))
    }
}

impl Drop for PlanScope {
    fn drop(&mut self) {
        if self.outer {
            LEFT.set(None);
            REFUSED.replace(None);
        }
    }
}

/// Whether the render of `name` may start: refused (and remembered) once the plan's fuel is
/// spent. Always allowed outside a plan.
pub fn admit(name: &str) -> Result<(), u64> {
    match LEFT.get() {
        Some(0) => {
            REFUSED.with_borrow_mut(|r| {
                r.get_or_insert_with(|| name.to_string());
            });
            Err(LIMIT.get())
        }
        _ => Ok(()),
    }
}

/// Charges what a render consumed to the current plan.
pub fn charge(consumed: u64) {
    if let Some(left) = LEFT.get() {
        LEFT.set(Some(left.saturating_sub(consumed)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_are_refused_once_the_plan_spent_its_fuel() {
        assert!(admit("a").is_ok(), "no plan, no limit");
        let scope = PlanScope::enter(100);
        admit("a").unwrap();
        charge(60);
        {
            // A plan inside the plan shares its fuel.
            let inner = PlanScope::enter(1_000);
            admit("b").unwrap();
            charge(60);
            assert_eq!(admit("c"), Err(100));
            assert_eq!(inner.refused(), Some(("c".to_string(), 100)));
        }
        assert_eq!(admit("d"), Err(100), "the inner scope did not reset it");
        assert_eq!(
            scope.refused(),
            Some(("c".to_string(), 100)),
            "the first refusal is kept"
        );
        drop(scope);
        assert!(admit("e").is_ok());
        let fresh = PlanScope::enter(10);
        assert_eq!(fresh.refused(), None);
    }
}
