//! The configured command of a quota: run with `/bin/sh -c` on a warning,
//! an action and its lifting, with the details in its environment. The
//! agent does not wait for it; a thread reaps it and logs how it ended.

use std::process::{Command, Stdio};

use jiff::Timestamp;

use crate::quota::{engine::Event, spec::Quota};

/// The details of one event of one quota.
#[derive(Clone, Debug)]
pub struct Notice<'a> {
    /// The quota.
    pub quota: &'a Quota,
    /// What happened.
    pub event: Event,
    /// Bytes used in the period.
    pub used: u64,
    /// The period, Unix seconds.
    pub period: (i64, i64),
    /// The action is held until then (Unix seconds; 0: no hold).
    pub hold_until: i64,
}

fn rfc3339(second: i64) -> String {
    Timestamp::from_second(second).map_or_else(|_| second.to_string(), |t| t.to_string())
}

impl Notice<'_> {
    /// The environment of the command.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let q = self.quota;
        let percent = if q.limit == 0 {
            0
        } else {
            u128::from(self.used) * 100 / u128::from(q.limit)
        };
        let mut env = vec![
            ("TRAFMON_QUOTA", q.name.clone()),
            ("TRAFMON_TARGET", q.target.to_string()),
            ("TRAFMON_EVENT", self.event.as_str().into()),
            ("TRAFMON_ACTION", q.action.as_str().into()),
            ("TRAFMON_USAGE", self.used.to_string()),
            ("TRAFMON_LIMIT", q.limit.to_string()),
            ("TRAFMON_PERCENT", percent.to_string()),
            ("TRAFMON_DIRECTION", q.direction.as_str().into()),
            ("TRAFMON_PERIOD_START", rfc3339(self.period.0)),
            ("TRAFMON_PERIOD_END", rfc3339(self.period.1)),
        ];
        if self.hold_until > 0 {
            env.push(("TRAFMON_HOLD_UNTIL", rfc3339(self.hold_until)));
        }
        env
    }

    /// One line for the log and the event table.
    pub fn summary(&self) -> String {
        let q = self.quota;
        // The name defaults to the target: say it once then.
        let target = q.target.to_string();
        let who = if q.name == target {
            target
        } else {
            format!("{} ({target})", q.name)
        };
        format!(
            "quota {who}: {} ({} of {} bytes {}, action {})",
            self.event.as_str(),
            self.used,
            q.limit,
            q.direction.as_str(),
            q.action.as_str()
        )
    }

    /// Logs the event and starts the command, if one is configured.
    pub fn announce(&self) {
        tracing::warn!("{}", self.summary());
        let Some(command) = &self.quota.command else {
            return;
        };
        let spawned = Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .envs(self.env())
            .stdin(Stdio::null())
            .spawn();
        let name = self.quota.name.clone();
        match spawned {
            Ok(mut child) => {
                std::thread::spawn(move || match child.wait() {
                    Ok(status) if status.success() => {}
                    Ok(status) => tracing::warn!(quota = name, %status, "quota command failed"),
                    Err(e) => tracing::warn!(quota = name, error = %e, "quota command lost"),
                });
            }
            Err(e) => tracing::warn!(quota = name, error = %e, "cannot run the quota command"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::spec::{Action, Direction, Period, Target};

    fn notice(quota: &Quota) -> String {
        Notice {
            quota,
            event: Event::Warning,
            used: 950,
            period: (0, 86_400),
            hold_until: 0,
        }
        .summary()
    }

    #[test]
    fn a_summary_names_the_target_once_when_it_is_the_name() {
        let mut quota = Quota {
            name: "user:1000".into(),
            target: Target::Uid(1000),
            limit: 1000,
            direction: Direction::Total,
            period: Period::Day,
            warn_percent: Some(90),
            action: Action::Alert,
            hold_seconds: 0,
            command: None,
        };
        assert_eq!(
            notice(&quota),
            "quota user:1000: warning (950 of 1000 bytes total, action alert)"
        );
        quota.name = "alice-upload".into();
        assert_eq!(
            notice(&quota),
            "quota alice-upload (user:1000): warning (950 of 1000 bytes total, action alert)"
        );
    }
}
