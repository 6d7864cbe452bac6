//! Running the binary and checking what it did, in the style of just's test builder:
//! `site.cmd(&["publish"]).env_remove("FEEDPOST_SECRET").run().code(2).stderr_contains("…")`.
//! Every check prints the whole output when it fails, and returns the output so checks chain.

use std::process::Command;

/// A run of the binary, adjusted before it starts.
pub struct Run {
    command: Command,
}

impl Run {
    /// A run of `command`.
    pub fn new(command: Command) -> Run {
        Run { command }
    }

    /// Sets an environment variable for this run.
    pub fn env(mut self, key: &str, value: &str) -> Run {
        self.command.env(key, value);
        self
    }

    /// Removes an environment variable for this run.
    pub fn env_remove(mut self, key: &str) -> Run {
        self.command.env_remove(key);
        self
    }

    /// Runs it and waits.
    pub fn run(mut self) -> Output {
        let out = self.command.output().expect("run feedpost");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// What a run of the binary printed and returned.
#[derive(Debug)]
pub struct Output {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    #[track_caller]
    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\nexit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    /// Asserts exit code 0 and returns self.
    #[track_caller]
    pub fn success(self) -> Output {
        if self.code != 0 {
            self.fail("expected success");
        }
        self
    }

    /// Asserts a non-zero exit code and returns self.
    #[track_caller]
    pub fn failure(self) -> Output {
        if self.code == 0 {
            self.fail("expected failure");
        }
        self
    }

    /// Asserts the exit code `code` (1: ran, but something failed; 2: could not run).
    #[track_caller]
    pub fn code(self, code: i32) -> Output {
        if self.code != code {
            self.fail(&format!("expected exit code {code}"));
        }
        self
    }

    /// Asserts that standard output contains `text`.
    #[track_caller]
    pub fn stdout_contains(&self, text: &str) -> &Output {
        if !self.stdout.contains(text) {
            self.fail(&format!("stdout lacks {text:?}"));
        }
        self
    }

    /// Asserts that standard error contains `text`.
    #[track_caller]
    pub fn stderr_contains(&self, text: &str) -> &Output {
        if !self.stderr.contains(text) {
            self.fail(&format!("stderr lacks {text:?}"));
        }
        self
    }

    /// Asserts that standard output does not contain `text`.
    #[track_caller]
    pub fn stdout_lacks(&self, text: &str) -> &Output {
        if self.stdout.contains(text) {
            self.fail(&format!("stdout has {text:?}"));
        }
        self
    }

    /// Asserts that standard error does not contain `text`.
    #[track_caller]
    pub fn stderr_lacks(&self, text: &str) -> &Output {
        if self.stderr.contains(text) {
            self.fail(&format!("stderr has {text:?}"));
        }
        self
    }

    /// Asserts that standard output is exactly `text`.
    #[track_caller]
    pub fn stdout_is(&self, text: &str) -> &Output {
        if self.stdout != text {
            self.fail(&format!("stdout is not {text:?}"));
        }
        self
    }

    /// Asserts that standard error is exactly `text`.
    #[track_caller]
    pub fn stderr_is(&self, text: &str) -> &Output {
        if self.stderr != text {
            self.fail(&format!("stderr is not {text:?}"));
        }
        self
    }
}
