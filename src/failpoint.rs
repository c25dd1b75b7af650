//! Kill points for the crash tests (RELIABILITY.md): named places where the
//! `failpoints` build can be made to die with SIGKILL — no destructor, no
//! flush, as a power cut or the OOM killer would — to prove that every state
//! on disk after such a death is consistent and the next run completes.
//!
//! Built on the `fail` crate (tikv's): `FAILPOINTS="fetch::piece_written=1*off->return"`
//! kills at the second time that point is reached. Without the feature, a kill
//! point compiles to nothing.

/// Dies here if the named fail point is configured to (action `return`).
#[inline(always)]
pub fn kill_point(name: &str) {
    #[cfg(feature = "failpoints")]
    fail::fail_point!(name, |_| sigkill());
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

#[cfg(feature = "failpoints")]
fn sigkill() {
    // SAFETY: sends SIGKILL to this process; nothing after it runs.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
}

/// Reads `FAILPOINTS` (call once, at start; a no-op without the feature).
pub fn setup() {
    #[cfg(feature = "failpoints")]
    std::mem::forget(fail::FailScenario::setup());
}
