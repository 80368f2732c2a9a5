//! UID to user name, from the password database, cached for a minute.
//!
//! Every flush, every `/metrics` scrape and every `top` refresh names the
//! UIDs that had traffic. glibc's `files` backend reads `/etc/passwd` line
//! by line for each lookup: 3 000 lookups among 3 000 users took 221 ms
//! here, which a host with that many active users would pay every 10 s.
//! So a name is looked up at most once a minute per UID (a renamed user is
//! shown under the new name within a minute). Written by hand: a map with
//! a time per entry is all it takes, and no caching crate knows NSS.

use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex, PoisonError},
    time::{Duration, Instant},
};

use trafmon_common::UID_NO_SOCKET;

/// How long a looked-up name is used without asking again.
const FRESH: Duration = Duration::from_secs(60);

/// Names by UID, with when each was looked up.
#[derive(Default)]
struct Names {
    names: HashMap<u32, (String, Instant)>,
    swept: Option<Instant>,
}

impl Names {
    /// The name of `uid` at `now`, from `lookup` when not fresh.
    fn get(&mut self, uid: u32, now: Instant, lookup: impl FnOnce(u32) -> String) -> String {
        // Forget stale names once a minute, so that UIDs that went quiet
        // do not stay in memory.
        if self
            .swept
            .is_none_or(|at| now.saturating_duration_since(at) >= FRESH)
        {
            self.names
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < FRESH);
            self.swept = Some(now);
        }
        if let Some((name, at)) = self.names.get(&uid)
            && now.saturating_duration_since(*at) < FRESH
        {
            return name.clone();
        }
        let name = lookup(uid);
        self.names.insert(uid, (name.clone(), now));
        name
    }
}

static NAMES: LazyLock<Mutex<Names>> = LazyLock::new(Mutex::default);

/// The label of a UID: the user name, `(no socket)` for packets without a
/// socket, or the number where the password database has no entry.
pub fn label(uid: u32) -> String {
    if uid == UID_NO_SOCKET {
        return "(no socket)".into();
    }
    NAMES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(uid, Instant::now(), look_up)
}

fn look_up(uid: u32) -> String {
    match nix::unistd::User::from_uid(uid.into()) {
        Ok(Some(user)) => user.name,
        _ => uid.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn root_has_a_name_and_unknown_uids_are_numbers() {
        assert_eq!(label(0), "root");
        assert_eq!(label(3_999_999_999), "3999999999");
        assert_eq!(label(UID_NO_SOCKET), "(no socket)");
    }

    #[test]
    fn a_name_is_looked_up_once_a_minute() {
        let mut names = Names::default();
        let asked = Cell::new(0);
        let lookup = |uid: u32| {
            asked.set(asked.get() + 1);
            format!("user{uid}-{}", asked.get())
        };
        let t0 = Instant::now();
        assert_eq!(names.get(1000, t0, lookup), "user1000-1");
        let soon = t0 + Duration::from_secs(59);
        assert_eq!(names.get(1000, soon, lookup), "user1000-1");
        assert_eq!(asked.get(), 1, "fresh: not asked again");
        assert_eq!(names.get(1001, soon, lookup), "user1001-2");
        // A minute later the name is asked for again (a rename shows).
        let later = t0 + FRESH;
        assert_eq!(names.get(1000, later, lookup), "user1000-3");
        assert!(names.names.contains_key(&1001), "still fresh");
        // The quiet UID's stale name is forgotten at the next sweep.
        assert_eq!(names.get(1000, later + FRESH, lookup), "user1000-4");
        assert!(!names.names.contains_key(&1001), "swept");
    }
}
