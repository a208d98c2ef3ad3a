//! Crash points for the crash tests (a leaf: the cycle and connectors use it).

/// Aborts the process at a named point when `CHANNEL_SYNC_CRASH_AT` names it:
/// the crash tests' way to kill a cycle at an exact place. Never set it in
/// production.
pub(crate) fn crash_point(name: &str) {
    if std::env::var("CHANNEL_SYNC_CRASH_AT").is_ok_and(|v| v == name) {
        eprintln!("channel-sync: crashing at {name} (CHANNEL_SYNC_CRASH_AT)");
        std::process::abort();
    }
}
