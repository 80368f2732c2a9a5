//! The agent under test, running in the env's namespace `a`.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use super::*;

/// An agent process running in the env's namespace `a`.
pub struct Agent {
    child: Child,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Agent {
    pub(super) fn start(env: &Env, vars: &[(&str, &str)]) -> Self {
        Self::start_with(env, vars, &[])
    }

    pub(super) fn start_with(env: &Env, vars: &[(&str, &str)], wrapper: &[&str]) -> Self {
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = env.a.command(program);
                c.args(args).arg(trafmon_bin());
                c
            }
            None => env.a.command(trafmon_bin()),
        };
        cmd.envs(vars.iter().copied());
        cmd.arg("--config")
            .arg(&env.config)
            .arg("agent")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start the agent");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("agent: {line}");
                keep.lock().expect("log").push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(" counting ") => break,
                Ok(_) => continue,
                Err(_) => {
                    let _ = child.kill();
                    panic!("the agent did not start counting: {:?}", child.wait());
                }
            }
        }
        Self { child, log }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True when a line the agent wrote to stderr so far contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.logged_times(text) > 0
    }

    /// How many lines the agent wrote to stderr so far contain `text`.
    pub fn logged_times(&self, text: &str) -> usize {
        self.log
            .lock()
            .expect("log")
            .iter()
            .filter(|l| l.contains(text))
            .count()
    }

    /// Sends `signal` to the agent, which goes on running.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) of our own child.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "signal {signal} to the agent");
    }

    /// Waits up to `timeout` until `times` lines the agent wrote contain
    /// `text`; false if they did not.
    pub fn wait_logged(&self, text: &str, times: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.logged_times(text) < times {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// True while the agent process has not exited.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// Kills the agent with `signal` and waits for it.
    pub fn kill(mut self, signal: i32) -> std::process::ExitStatus {
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        self.child.wait().expect("wait for the agent")
    }

    /// Stops the agent with SIGTERM (it flushes first) and checks that it
    /// exited cleanly.
    pub fn stop(self) {
        let status = self.kill(libc::SIGTERM);
        assert!(
            status.success(),
            "the agent stops cleanly on SIGTERM: {status}"
        );
    }

    /// Waits up to `timeout` for the agent to exit by itself.
    pub fn wait_exit(mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not exit in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
