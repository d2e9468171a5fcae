//! The one capability-pattern match: a pattern's segments (`None` is `*`)
//! against a call's `resource.action`, both lowercase. Rules, windows and
//! the rule facts approvals read all match through it.

/// Whether segments `resource`.`action` (`None`: `*`) cover the call's
/// `call_resource`.`call_action`.
///
/// ```
/// use capfence_compiler::capability::covers;
/// assert!(covers(Some("payments"), None, "payments", "refund"));
/// assert!(!covers(Some("payments"), Some("transfer"), "payments", "refund"));
/// assert!(covers(None, None, "ledger", "wipe"));
/// ```
pub fn covers(
    resource: Option<&str>,
    action: Option<&str>,
    call_resource: &str,
    call_action: &str,
) -> bool {
    resource.is_none_or(|r| r == call_resource) && action.is_none_or(|a| a == call_action)
}
