//! Confirmation emails leave here: a queue drained a few at a time off the request path, and
//! [`TransportMailer`], which composes each one ([`crate::mail::confirm`]), signs it (DKIM,
//! [`crate::mail::sign`]) and sends it over the configured transport — one SMTP session per
//! message, or a file in the outbox.

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::backend::{ConfirmationMail, ConfirmationMailer};
use crate::config::Config;
use crate::deliver::transport::Transport;
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
    while let Some(mail) = queue.recv().await {
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
}

/// Composes, signs and sends confirmation emails over a [`Transport`].
pub struct TransportMailer {
    config: Arc<Config>,
    transport: Transport,
    signer: Arc<dyn Signer>,
}

impl TransportMailer {
    /// A mailer for `config`'s site, sending through `transport` (SMTP, or an outbox folder),
    /// signing with `signer` ([`crate::mail::sign::signer_for`]).
    pub fn new(config: Arc<Config>, transport: Transport, signer: Arc<dyn Signer>) -> Self {
        TransportMailer {
            config,
            transport,
            signer,
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
        let file_name = format!(
            "{}-{:016x}.eml",
            now.format("%Y%m%dT%H%M%S"),
            rand::random::<u64>()
        );
        let mut connection = self.transport.connect().await?;
        let sent = async {
            connection.start(&envelope, &message).await?;
            connection.finish(&envelope, &message, &file_name).await
        }
        .await;
        connection.close().await;
        sent.with_context(|| format!("via {}", self.transport.describe()))?;
        Ok(())
    }
}
