//! Permanent refusals whose owner the reply does not tell (see [`super::Failure::Unclear`]),
//! held back — their deliveries stay `sending`, nothing is suppressed — until the run can tell:
//! a message accepted after them makes them the recipients' own; [`SAME_REFUSALS`] of the same
//! kind in a row, or none accepted by the end of the run, make them the message's.

use super::SAME_REFUSALS;
use crate::store::Outcome;

/// The refusals held, and what the run has seen since.
#[derive(Debug, Default)]
pub(super) struct Unclear {
    /// (key, reply, whether the address is suppressed once the refusal is the recipient's).
    held: Vec<(String, String, bool)>,
    /// The kind of the last refusals and the reply, and how many in a row.
    last: Option<(String, String)>,
    same: usize,
    /// Whether a message was accepted in this run.
    accepted: bool,
}

impl Unclear {
    /// Holds a refusal; returns why the run must stop when it is the [`SAME_REFUSALS`]th of its
    /// kind in a row.
    pub(super) fn hold(
        &mut self,
        key: String,
        reply: String,
        kind: String,
        suppress: bool,
    ) -> Option<String> {
        match &self.last {
            Some((k, _)) if *k == kind => self.same += 1,
            _ => {
                self.last = Some((kind, reply.clone()));
                self.same = 1;
            }
        }
        self.held.push((key, reply, suppress));
        (self.same >= SAME_REFUSALS).then(|| self.stop_reason())
    }

    fn stop_reason(&self) -> String {
        let reply = self.last.as_ref().map_or("", |(_, r)| r.as_str());
        format!(
            "the server refused the message for {} recipients in a row with the same reply: {reply}. The message or the sender is refused, not the readers: nobody was suppressed, and they stay queued. Read the reply for what to change (the content, the sender, the relay's settings), then retry",
            self.same
        )
    }

    /// A message got through: the refusals held are the recipients' own.
    pub(super) fn accepted(&mut self) -> Vec<Outcome> {
        self.accepted = true;
        self.last = None;
        self.same = 0;
        self.held
            .drain(..)
            .map(|(key, reply, suppress)| Outcome::Failed {
                key,
                reply,
                suppress,
            })
            .collect()
    }

    /// The run is stopping: the refusals still held go back to the queue.
    pub(super) fn requeue(&mut self) -> Vec<Outcome> {
        self.held
            .drain(..)
            .map(|(key, ..)| Outcome::Requeue { key })
            .collect()
    }

    /// The end of the run: what to record for the refusals still held, and why the run stops if
    /// no message was accepted at all (then they are requeued).
    pub(super) fn finish(&mut self) -> (Vec<Outcome>, Option<String>) {
        if self.held.is_empty() {
            (Vec::new(), None)
        } else if self.accepted {
            (self.accepted(), None)
        } else {
            let reason = self.stop_reason();
            (self.requeue(), Some(reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(u: &mut Unclear, key: &str, kind: &str) -> Option<String> {
        u.hold(key.into(), format!("554 {kind}"), kind.into(), true)
    }

    #[test]
    fn refusals_are_the_recipients_once_a_message_gets_through() {
        let mut u = Unclear::default();
        assert!(hold(&mut u, "a", "x").is_none());
        assert!(hold(&mut u, "b", "y").is_none());
        let failed = u.accepted();
        assert_eq!(failed.len(), 2);
        assert!(failed
            .iter()
            .all(|o| matches!(o, Outcome::Failed { suppress: true, .. })));
        assert_eq!(u.finish(), (Vec::new(), None));
    }

    #[test]
    fn the_same_refusal_in_a_row_stops_the_run_and_requeues() {
        let mut u = Unclear::default();
        assert!(hold(&mut u, "a", "x").is_none());
        assert!(hold(&mut u, "b", "x").is_none());
        let why = hold(&mut u, "c", "x").unwrap();
        assert!(why.contains("3 recipients in a row"), "{why}");
        let (outcomes, stop) = u.finish();
        assert_eq!(outcomes.len(), 3);
        assert!(outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Requeue { .. })));
        assert!(stop.is_some(), "nothing was accepted in the run");
    }
}
