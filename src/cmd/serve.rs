//! `feedpost serve`: the subscription server, or (`--local`) the editor's preview, until SIGINT
//! or SIGTERM.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::Ran;
use crate::cli::ServeArgs;
use crate::config::Config;
use crate::deliver::transport;
use crate::mail::sign::signer_for;
use crate::serve::{self, Server, StoreSubscriptions, TransportMailer};
use crate::site::Site;
use crate::store::{self, Open};
use crate::subscribers::token::Secret;

/// The outbox folder of confirmation emails, under `mail.outbox` (issues use `<slug>/`).
const CONFIRMATIONS: &str = "_confirmations";

/// With `--local`, previews the site (see [`serve::local`]); else serves `config`'s site as its
/// `[serve]` table says: checks the secret, reads the topics from
/// the site, opens the store (the ledger, created if missing), binds `serve.listen`, prints
/// `listening on http://ADDRESS/` on stdout, and serves until SIGINT or SIGTERM; then waits up
/// to 30 s for queued confirmation emails.
///
/// # Errors
/// No `[serve]` table, no usable `FEEDPOST_SECRET`, an unreadable issues folder, ledger or DKIM
/// key, a missing SMTP password, an address that cannot be bound.
pub fn run(config: Config, config_path: &Path, args: &ServeArgs) -> Result<Ran> {
    if args.local {
        return local(config, config_path, args);
    }
    let config = &config;
    let serve = config.serve.as_ref().context(
        "`feedpost serve` needs a [serve] table in the config file, e.g.\n\n[serve]\nlisten = \"127.0.0.1:8080\"\npublic_url = \"https://news.example.org/\"\n\nTo preview the site on this machine instead, run `feedpost serve --local`",
    )?;
    let secret = Secret::from_env()?;
    let now = crate::now()?;
    let topics = {
        let site = Site::load(config)?;
        if !site.errors().is_empty() {
            warn!(
                "{} issue file(s) have errors and offer no topics; `feedpost check` lists them",
                site.errors().len()
            );
        }
        serve::topics(&site, now.fixed_offset())
    };
    let transport = transport::from_config(config, config.mail.outbox.join(CONFIRMATIONS))?;
    let signer = signer_for(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(async {
        let store = store::open(config, Open::ToServe)
            .await?
            .context("internal error: the store was not created")?;
        let subscriptions = StoreSubscriptions::new(store);
        let listener = TcpListener::bind(serve.listen).await.with_context(|| {
            format!(
                "cannot listen on {} (`serve.listen`): is another server using it?",
                serve.listen
            )
        })?;
        let address = listener.local_addr()?;
        let mailer = TransportMailer::new(Arc::new(config.clone()), transport, signer);
        info!(
            topics = topics.len(),
            "confirmation emails go to {}; readers reach the server at {}",
            mailer.describe(),
            serve.public_url
        );
        let (mail, mailing) = serve::spawn_mailer(mailer);
        let server = Server::new(config, serve, secret, topics, subscriptions, mail);
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening on http://{address}/")?;
            out.flush()?;
        }
        server.run(listener, stop_signal()).await?;
        info!("stopping: sending the confirmation emails still queued");
        if tokio::time::timeout(serve::DRAIN_TIMEOUT, mailing)
            .await
            .is_err()
        {
            warn!("stopped with confirmation emails unsent; their readers can ask again");
        } else {
            info!("stopped");
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(Ran::success())
}

/// `feedpost serve --local`: the preview, on a runtime of its own, until SIGINT or SIGTERM.
fn local(config: Config, config_path: &Path, args: &ServeArgs) -> Result<Ran> {
    let options = serve::local::Options {
        port: args.port,
        hide_drafts: args.hide_drafts,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(serve::local::run(
        config,
        config_path,
        options,
        Box::new(super::mailed_issues),
        stop_signal(),
    ))?;
    Ok(Ran::success())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
