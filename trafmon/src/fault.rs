//! Fault injection for the crash tests: `TRAFMON_FAULT=after-STEP[:N]`
//! makes the agent kill itself with SIGKILL right after STEP of its N-th
//! flush (default the first), or after its N-th removal of a side's pins
//! in a resize (`after-unpin`). `trafmon uninstall` reads it too: its one
//! flush, `after-detach` (the links removed) and `after-unpin` (the
//! selector's pin removed). Unset in production. [`OWNER_VAR`] makes the
//! cgroup programs read sockets' owners as on older kernels.

/// A point in the flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The selector was flipped.
    Flip,
    /// The grace period passed.
    Grace,
    /// The idle side was read.
    Drain,
    /// The deltas and the flush record were committed.
    Commit,
    /// The idle side was cleared.
    Clear,
    /// The clear was recorded.
    Recorded,
    /// A resize removed the idle side's pins, or an uninstall the
    /// selector's (not a flush step).
    Unpin,
    /// An uninstall removed the links (not a flush step).
    Detach,
}

impl Step {
    const ALL: [(Self, &'static str); 8] = [
        (Self::Flip, "flip"),
        (Self::Grace, "grace"),
        (Self::Drain, "drain"),
        (Self::Commit, "commit"),
        (Self::Clear, "clear"),
        (Self::Recorded, "recorded"),
        (Self::Unpin, "unpin"),
        (Self::Detach, "detach"),
    ];
}

/// The environment variable.
pub const VAR: &str = "TRAFMON_FAULT";

/// The environment variable that makes the cgroup programs read a
/// socket's owner the way they do on older kernels, for the tests of those
/// paths: `scratch` (no `bpf_rdonly_cast`, as before Linux 6.2) or `reader`
/// (neither that nor the scratch value, as when another program on the CPU
/// wrote it meanwhile). Unset in production.
pub const OWNER_VAR: &str = "TRAFMON_FAULT_SOCKET_OWNER";

/// How the cgroup programs may read a socket's owner ([`OWNER_VAR`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerPath {
    /// The best the kernel has.
    Best,
    /// Not through `bpf_rdonly_cast`.
    Scratch,
    /// Only through the kernel's reader.
    Reader,
}

impl OwnerPath {
    /// From the environment; a malformed value is an error, not ignored.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(OWNER_VAR).as_deref() {
            Err(_) => Ok(Self::Best),
            Ok("scratch") => Ok(Self::Scratch),
            Ok("reader") => Ok(Self::Reader),
            Ok(v) => Err(format!("{OWNER_VAR}={v}: expected scratch|reader")),
        }
    }
}

/// A configured fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    step: Step,
    nth: u32,
}

impl Fault {
    /// Parses `after-STEP[:N]`.
    pub fn parse(text: &str) -> Option<Self> {
        let (step, nth) = match text.split_once(':') {
            Some((s, n)) => (s, n.parse().ok()?),
            None => (text, 1),
        };
        let name = step.strip_prefix("after-")?;
        let step = Step::ALL.iter().find(|(_, n)| *n == name)?.0;
        Some(Self { step, nth })
    }

    /// From the environment; a malformed value is an error, not ignored.
    pub fn from_env() -> Result<Option<Self>, String> {
        match std::env::var(VAR) {
            Ok(v) => Self::parse(&v).map(Some).ok_or_else(|| {
                format!(
                    "{VAR}={v}: expected after-flip|grace|drain|commit|clear|recorded|unpin|detach[:N]"
                )
            }),
            Err(_) => Ok(None),
        }
    }

    /// Kills the process if `step` of flush number `nth` (1-based; for
    /// [`Step::Unpin`], of removal number `nth`) is the configured one.
    pub fn check(&self, step: Step, nth: u32) {
        if self.step == step && self.nth == nth {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_steps_and_counts() {
        assert_eq!(
            Fault::parse("after-drain"),
            Some(Fault {
                step: Step::Drain,
                nth: 1
            })
        );
        assert_eq!(
            Fault::parse("after-commit:3"),
            Some(Fault {
                step: Step::Commit,
                nth: 3
            })
        );
        assert_eq!(
            Fault::parse("after-detach"),
            Some(Fault {
                step: Step::Detach,
                nth: 1
            })
        );
        assert_eq!(Fault::parse("drain"), None);
        assert_eq!(Fault::parse("after-lunch"), None);
        assert_eq!(Fault::parse("after-clear:x"), None);
    }
}
