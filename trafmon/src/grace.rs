//! Waiting for an RCU grace period, so that no program run that read the
//! old selector value is still writing the side we are about to drain.

use std::time::Duration;

/// How the grace period was waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grace {
    /// `membarrier(MEMBARRIER_CMD_GLOBAL)`, which calls `synchronize_rcu()`
    /// (on every kernel with membarrier, when more than one CPU is online).
    /// An update of a map-in-map, the other way to make the kernel wait,
    /// is not quicker: 6.18 calls the same `synchronize_rcu()` there (8 ms
    /// both ways on a 250 Hz kernel, see the README's flush notes).
    Membarrier,
    /// membarrier is unavailable (nohz_full kernels refuse it): a fixed
    /// sleep, far longer than any program run, but not a guarantee.
    Sleep,
}

/// The fallback's sleep.
pub const FALLBACK: Duration = Duration::from_millis(50);

const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;

/// Waits for a grace period and says how.
pub fn wait() -> Grace {
    // SAFETY: membarrier takes two integers and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
    if r == 0 {
        Grace::Membarrier
    } else {
        std::thread::sleep(FALLBACK);
        Grace::Sleep
    }
}

impl std::fmt::Display for Grace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Membarrier => f.write_str("membarrier(MEMBARRIER_CMD_GLOBAL) (synchronize_rcu)"),
            Self::Sleep => write!(
                f,
                "a {} ms sleep (membarrier unavailable: no RCU guarantee)",
                FALLBACK.as_millis()
            ),
        }
    }
}
