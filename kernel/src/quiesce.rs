//! Quiesce: stopping every other CPU at a safe point (between task steps) and letting
//! them go again. (Placeholder: no park requests yet.)

/// Called by every CPU between two task steps.
pub fn checkpoint() {}

/// Whether a park has been requested (an idle CPU must not halt then).
pub fn park_requested() -> bool {
    false
}
