//! Confirmation emails leave here: a queue drained a few at a time off the request path, and
//! [`TransportMailer`], which composes each one ([`crate::mail::confirm`]), signs it (DKIM,
//! [`crate::mail::sign`]) and sends it over the configured transport — an SMTP session kept open
//! while mail keeps coming and closed when the queue runs dry, or a file in the outbox.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::backend::{ConfirmationMail, ConfirmationMailer};
use crate::config::Config;
use crate::deliver::transport::{Connection, Failure, Outgoing, Transport};
use crate::mail::confirm::{self, Confirmation};
use crate::mail::sign::Signer;

/// Sends what arrives on `queue` with `mailer`, at most `concurrency` at once, until every
/// sender is dropped and the queue is empty. A failed send is logged (the reader can ask again).
pub(crate) async fn drain<M: ConfirmationMailer>(
    mailer: Arc<M>,
    mut queue: mpsc::Receiver<ConfirmationMail>,
    concurrency: usize,
) {
    let mut sending = JoinSet::new();
    loop {
        let mail = match queue.try_recv() {
            Ok(mail) => mail,
            Err(mpsc::error::TryRecvError::Empty) => {
                // Dry: let the sends finish, then the mailer close what it keeps open.
                while sending.join_next().await.is_some() {}
                mailer.idle().await;
                match queue.recv().await {
                    Some(mail) => mail,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        while sending.len() >= concurrency {
            sending.join_next().await;
        }
        let mailer = Arc::clone(&mailer);
        sending.spawn(async move {
            let to = mail.address.to_lowercase();
            match mailer.send(mail).await {
                Ok(()) => info!(address = %to, "confirmation email sent"),
                Err(e) => warn!(address = %to, "the confirmation email was not sent: {e:#}"),
            }
        });
    }
    while sending.join_next().await.is_some() {}
    mailer.idle().await;
}

/// Composes, signs and sends confirmation emails over a [`Transport`], keeping the connections
/// it opened for the next message until the queue runs dry.
pub struct TransportMailer {
    config: Arc<Config>,
    transport: Arc<dyn Transport>,
    signer: Arc<dyn Signer>,
    open: Mutex<Vec<Box<dyn Connection>>>,
}

impl TransportMailer {
    /// A mailer for `config`'s site, sending through `transport` (SMTP, or an outbox folder),
    /// signing with `signer` ([`crate::mail::sign::signer_for`]).
    pub fn new(
        config: Arc<Config>,
        transport: Arc<dyn Transport>,
        signer: Arc<dyn Signer>,
    ) -> Self {
        TransportMailer {
            config,
            transport,
            signer,
            open: Mutex::new(Vec::new()),
        }
    }

    /// Where the mail goes, for the log: `smtp://host:port` or the outbox folder.
    pub fn describe(&self) -> String {
        self.transport.describe()
    }
}

impl ConfirmationMailer for TransportMailer {
    async fn send(&self, mail: ConfirmationMail) -> Result<()> {
        let now = crate::now()?;
        let (envelope, message) = confirm::compose(
            &self.config,
            &Confirmation {
                address: &mail.address,
                topics: &mail.topics,
                confirm_url: mail.confirm_url.as_str(),
                valid_hours: mail.valid_hours,
            },
            now,
        )?;
        let signer = Arc::clone(&self.signer);
        let message = tokio::task::spawn_blocking(move || signer.sign(message, now))
            .await
            .context("the signing thread stopped")??;
        // Names the outbox file: when it was sent, and a random part.
        let name = format!(
            "<{}-{:016x}>",
            now.format("%Y%m%dT%H%M%S"),
            rand::random::<u64>()
        );
        let outgoing = Outgoing {
            envelope: &envelope,
            bytes: &message,
            message_id: &name,
        };
        let kept = self.open.lock().ok().and_then(|mut open| open.pop());
        let reused = kept.is_some();
        let mut connection = match kept {
            Some(connection) => connection,
            None => self.transport.connect().await?,
        };
        let mut sent = connection.start(&outgoing).await;
        if sent.is_err() && reused {
            // The server may have closed the kept session; nothing was sent: open a new one.
            connection.close().await;
            connection = self.transport.connect().await?;
            sent = connection.start(&outgoing).await;
        }
        let sent = match sent {
            Ok(()) => connection.finish(&outgoing).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if connection.is_usable() {
            if let Ok(mut open) = self.open.lock() {
                open.push(connection);
            }
        } else {
            connection.close().await;
        }
        sent.map_err(|e: Failure| anyhow::Error::new(e))
            .with_context(|| format!("via {}", self.transport.describe()))
    }

    async fn idle(&self) {
        let open = self
            .open
            .lock()
            .map(|mut open| std::mem::take(&mut *open))
            .unwrap_or_default();
        for connection in open {
            connection.close().await;
        }
    }
}
