//! The state machine of one quota. Pure: the caller gives the usage of the
//! running period and the time, and persists the state it gets back before
//! acting on the events, so that a restart neither repeats nor forgets a
//! warning or an action.

use crate::quota::spec::{Action, Quota};

/// What is remembered of a quota between flushes and across restarts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Start of the period that `warned` and `acted` belong to (Unix s).
    pub period_start: i64,
    /// The warning was given for the current crossing of the threshold.
    pub warned: bool,
    /// The action was taken for the current crossing of the limit.
    pub acted: bool,
    /// The action is in force (for `alert`: the quota is over).
    pub enforced: bool,
    /// The action stays in force until at least then (Unix s; 0: no hold).
    pub hold_until: i64,
}

/// What happened in a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Usage reached the warning threshold.
    Warning,
    /// Usage reached the limit: the action was taken.
    Action,
    /// The action is no longer in force.
    Lifted,
}

impl Event {
    /// Its name in logs and in `TRAFMON_EVENT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Action => "action",
            Self::Lifted => "lifted",
        }
    }
}

/// True when `used` reaches the warning threshold of `q`.
fn at_warning(q: &Quota, used: u64) -> bool {
    q.warn_percent
        .is_some_and(|p| u128::from(used) * 100 >= u128::from(q.limit) * u128::from(p))
}

/// The state after a step at `now` with `used` bytes in the period that
/// starts at `period_start`, and the events of the step.
pub fn step(
    q: &Quota,
    prev: Option<State>,
    used: u64,
    now: i64,
    period_start: i64,
) -> (State, Vec<Event>) {
    let mut s = prev.unwrap_or(State {
        period_start,
        ..State::default()
    });
    let mut events = Vec::new();
    if s.period_start != period_start {
        s.period_start = period_start;
        s.warned = false;
        s.acted = false;
    }
    // A crossing is a move from below to at or above; falling below again
    // (a raised limit) makes the next crossing a new one.
    if at_warning(q, used) {
        if !s.warned {
            s.warned = true;
            events.push(Event::Warning);
        }
    } else {
        s.warned = false;
    }
    if used >= q.limit {
        if !s.acted {
            s.acted = true;
            s.hold_until = s.hold_until.max(now.saturating_add(q.hold_seconds));
            events.push(Event::Action);
        }
    } else {
        s.acted = false;
    }
    let enforced = s.acted || now < s.hold_until;
    if s.enforced && !enforced {
        events.push(Event::Lifted);
    }
    s.enforced = enforced;
    (s, events)
}

/// The state as `trafmon quota` shows it.
pub fn describe(q: &Quota, s: &State, used: u64) -> String {
    if s.enforced {
        let what = match q.action {
            Action::Alert => "over",
            Action::Throttle(_) => "throttled",
            Action::Block => "blocked",
        };
        if !s.acted {
            return format!("{what} (held)");
        }
        return what.into();
    }
    if s.warned || at_warning(q, used) {
        "warned".into()
    } else {
        "ok".into()
    }
}

/// Usage projected to the end of the period from the rate so far.
pub fn projection(used: u64, now: i64, start: i64, end: i64) -> u64 {
    let elapsed = now.saturating_sub(start);
    if elapsed <= 0 || now >= end {
        return used;
    }
    let total = end.saturating_sub(start);
    let p = u128::from(used) * total as u128 / elapsed as u128;
    u64::try_from(p).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::spec::{Direction, Period, Target};

    const DAY: i64 = 86_400;

    fn quota(action: Action, hold_days: i64) -> Quota {
        Quota {
            name: "q".into(),
            target: Target::Uid(1000),
            limit: 1000,
            direction: Direction::Total,
            period: Period::Month(1),
            warn_percent: Some(80),
            action,
            hold_seconds: hold_days * DAY,
            command: None,
        }
    }

    /// A fake clock and the persisted state: each step feeds the state of
    /// the last one back in, as the agent does through the store.
    struct Sim {
        q: Quota,
        state: Option<State>,
    }

    impl Sim {
        fn at(&mut self, now: i64, period_start: i64, used: u64) -> Vec<Event> {
            let (s, events) = step(&self.q, self.state, used, now, period_start);
            self.state = Some(s);
            events
        }
        fn enforced(&self) -> bool {
            self.state.unwrap().enforced
        }
    }

    #[test]
    fn warning_once_then_action_once() {
        let mut sim = Sim {
            q: quota(Action::Block, 0),
            state: None,
        };
        assert_eq!(sim.at(10, 0, 100), vec![]);
        assert_eq!(sim.at(20, 0, 800), vec![Event::Warning]);
        assert_eq!(sim.at(30, 0, 900), vec![]);
        assert_eq!(sim.at(40, 0, 1000), vec![Event::Action]);
        assert!(sim.enforced());
        assert_eq!(sim.at(50, 0, 5000), vec![]);
        assert!(sim.enforced());
    }

    #[test]
    fn warning_and_action_in_one_step() {
        let mut sim = Sim {
            q: quota(Action::Throttle(1), 0),
            state: None,
        };
        assert_eq!(sim.at(10, 0, 2000), vec![Event::Warning, Event::Action]);
    }

    #[test]
    fn a_new_period_lifts_without_hold() {
        let mut sim = Sim {
            q: quota(Action::Block, 0),
            state: None,
        };
        sim.at(10, 0, 1000);
        assert_eq!(sim.at(31 * DAY, 31 * DAY, 0), vec![Event::Lifted]);
        assert!(!sim.enforced());
        // The next crossing in the new period is a new one.
        assert_eq!(
            sim.at(32 * DAY, 31 * DAY, 1000),
            vec![Event::Warning, Event::Action]
        );
    }

    #[test]
    fn hold_keeps_the_action_across_a_period_reset() {
        let mut sim = Sim {
            q: quota(Action::Throttle(100), 3),
            state: None,
        };
        let crossed = 30 * DAY;
        assert_eq!(
            sim.at(crossed, 0, 1000),
            vec![Event::Warning, Event::Action]
        );
        let next = 31 * DAY;
        assert_eq!(sim.at(next, next, 0), vec![]);
        assert!(sim.enforced());
        assert_eq!(describe(&sim.q, &sim.state.unwrap(), 0), "throttled (held)");
        assert_eq!(sim.at(crossed + 3 * DAY - 1, next, 10), vec![]);
        assert!(sim.enforced());
        assert_eq!(sim.at(crossed + 3 * DAY, next, 10), vec![Event::Lifted]);
        assert!(!sim.enforced());
        assert_eq!(describe(&sim.q, &sim.state.unwrap(), 10), "ok");
    }

    #[test]
    fn raising_the_limit_lifts_and_allows_a_new_crossing() {
        let mut sim = Sim {
            q: quota(Action::Block, 0),
            state: None,
        };
        sim.at(10, 0, 1000);
        sim.q.limit = 10_000;
        assert_eq!(sim.at(20, 0, 1000), vec![Event::Lifted]);
        assert_eq!(sim.at(30, 0, 10_000), vec![Event::Warning, Event::Action]);
    }

    #[test]
    fn a_restart_in_every_state_neither_repeats_nor_forgets() {
        // Each state is reached, "persisted", and fed to a fresh step with
        // the same inputs, as an agent restarted at that point would.
        let q = quota(Action::Block, 3);
        let cases = [
            (100, 29 * DAY, 0),      // ok
            (800, 29 * DAY, 0),      // warned
            (1000, 30 * DAY, 0),     // blocked
            (0, 31 * DAY, 31 * DAY), // held
        ];
        let mut state = None;
        for (used, now, start) in cases {
            let (s, _) = step(&q, state, used, now, start);
            let (again, events) = step(&q, Some(s), used, now + 1, start);
            assert_eq!(events, vec![], "restart after {s:?}");
            assert_eq!(again.enforced, s.enforced);
            assert_eq!(again.warned, s.warned);
            state = Some(s);
        }
        // Forgetting would show as a missing lift once the hold ends.
        assert!(state.unwrap().enforced && !state.unwrap().acted);
        let (_, events) = step(&q, state, 0, 33 * DAY, 31 * DAY);
        assert_eq!(events, vec![Event::Lifted]);
    }

    #[test]
    fn projection_extrapolates_the_rate_so_far() {
        assert_eq!(projection(100, 10 * DAY, 0, 30 * DAY), 300);
        assert_eq!(projection(100, 0, 0, 30 * DAY), 100);
        assert_eq!(projection(100, 40 * DAY, 0, 30 * DAY), 100);
    }
}
