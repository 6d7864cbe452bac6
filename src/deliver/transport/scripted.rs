//! A scripted [`Transport`] for the engine's unit tests: connections that accept every message
//! unless the script says otherwise for a recipient, and a record of what was accepted.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{Connection, Failure, Outgoing, Sent, Transport};

/// What one attempt for a recipient meets.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// The transaction is refused before the data (`MAIL`, `RCPT`, `DATA`).
    Start(Failure),
    /// The message is refused at its end.
    Finish(Failure),
}

/// A message the scripted server accepted.
#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    /// The envelope recipient.
    pub to: String,
    /// The bytes, as sent.
    pub bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    /// What the next connection attempts meet (`None`: success); once empty, they succeed.
    connects: VecDeque<Option<Failure>>,
    /// Per recipient, what its next attempts meet; once empty, acceptance.
    steps: HashMap<String, VecDeque<Step>>,
    accepted: Vec<Accepted>,
    size_limit: Option<u64>,
}

/// The scripted transport; clones share the script and the record.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scripted {
    state: Arc<Mutex<State>>,
}

impl Scripted {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// The next connection attempts meet `outcomes` in order: refused with the failure, or
    /// (`None`) opened.
    pub(crate) fn connects(self, outcomes: Vec<Option<Failure>>) -> Scripted {
        self.state().connects.extend(outcomes);
        self
    }

    /// The next attempts for `to` meet `steps`, in order.
    pub(crate) fn script(self, to: &str, steps: Vec<Step>) -> Scripted {
        self.state()
            .steps
            .entry(to.to_string())
            .or_default()
            .extend(steps);
        self
    }

    /// Connections declare this `SIZE`.
    pub(crate) fn size_limit(self, limit: u64) -> Scripted {
        self.state().size_limit = Some(limit);
        self
    }

    /// The messages accepted so far.
    pub(crate) fn accepted(&self) -> Vec<Accepted> {
        self.state().accepted.clone()
    }
}

#[async_trait]
impl Transport for Scripted {
    fn describe(&self) -> String {
        "scripted".into()
    }

    async fn connect(&self) -> Result<Box<dyn Connection>, Failure> {
        let mut state = self.state();
        if let Some(Some(failure)) = state.connects.pop_front() {
            return Err(failure);
        }
        Ok(Box::new(ScriptedConnection {
            script: self.clone(),
            size_limit: state.size_limit,
        }))
    }
}

struct ScriptedConnection {
    script: Scripted,
    size_limit: Option<u64>,
}

fn recipient(message: &Outgoing<'_>) -> String {
    message
        .envelope
        .to()
        .first()
        .map(|a| a.to_string())
        .unwrap_or_default()
}

#[async_trait]
impl Connection for ScriptedConnection {
    fn size_limit(&self) -> Option<u64> {
        self.size_limit
    }

    fn is_usable(&self) -> bool {
        true
    }

    async fn start(&mut self, message: &Outgoing<'_>) -> Result<(), Failure> {
        let mut state = self.script.state();
        let steps = state.steps.entry(recipient(message)).or_default();
        if matches!(steps.front(), Some(Step::Start(_))) {
            if let Some(Step::Start(failure)) = steps.pop_front() {
                return Err(failure);
            }
        }
        Ok(())
    }

    async fn finish(&mut self, message: &Outgoing<'_>) -> Result<Sent, Failure> {
        let mut state = self.script.state();
        let to = recipient(message);
        let steps = state.steps.entry(to.clone()).or_default();
        if matches!(steps.front(), Some(Step::Finish(_))) {
            if let Some(Step::Finish(failure)) = steps.pop_front() {
                return Err(failure);
            }
        }
        state.accepted.push(Accepted {
            to,
            bytes: message.bytes.to_vec(),
        });
        Ok(Sent {
            reply: "250 2.0.0 Ok".into(),
        })
    }

    async fn abort(&mut self) {}

    async fn close(self: Box<Self>) {}
}
