//! Load on a running `feedpost serve`: `load_serve BASE_URL [REQUESTS] [CLIENTS]`.
//!
//! `CLIENTS` threads (default 50), each with its own keep-alive connection, share `REQUESTS`
//! (default 2,000) between them: for one new address at a time, `POST /subscribe` (email, name,
//! a topic when `LOAD_TOPIC` is set), then the one-click `POST /unsubscribe?token=…` (RFC 8058)
//! with a token signed with `FEEDPOST_SECRET`, which must be the server's. Prints the requests
//! per second over the whole run, the latency percentiles of each request (sent to last byte
//! read), and the errors: any answer but 200, or no answer. Exit code 1 when there is an error.
//!
//! `scripts/load-serve.sh` starts a server and runs this against it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use feedpost::subscribers::token::{self, Secret};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .context("usage: load_serve BASE_URL [REQUESTS] [CLIENTS]")?;
    let base = base.trim_end_matches('/').to_string();
    let requests: usize = args.next().map_or(Ok(2_000), |a| a.parse())?;
    let clients: usize = args.next().map_or(Ok(50), |a| a.parse())?;
    if clients == 0 || requests < 2 * clients {
        bail!("need at least one client and two requests per client");
    }
    let secret = Secret::from_env()?;
    let topic = std::env::var("LOAD_TOPIC").ok();
    let run: u32 = rand::random();
    let per_client = requests / clients / 2;
    let started = Instant::now();
    let results: Vec<(Vec<Duration>, Vec<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let (base, secret, topic) = (&base, &secret, topic.as_deref());
                scope.spawn(move || client(base, secret, topic, run, c, per_client))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a client thread panicked"))
            .collect()
    });
    let wall = started.elapsed();
    let mut latencies: Vec<Duration> = results.iter().flat_map(|r| r.0.clone()).collect();
    let errors: Vec<&String> = results.iter().flat_map(|r| &r.1).collect();
    latencies.sort();
    let done = latencies.len();
    let pct = |p: f64| {
        let i = ((done as f64 * p).ceil() as usize).clamp(1, done) - 1;
        latencies[i].as_secs_f64() * 1e3
    };
    println!(
        "requests {done} ({} subscribe + {} unsubscribe) from {clients} clients in {:.2} s",
        done / 2,
        done / 2,
        wall.as_secs_f64()
    );
    println!("requests/s {:.0}", done as f64 / wall.as_secs_f64());
    println!(
        "latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
    println!("errors {}", errors.len());
    for e in errors.iter().take(10) {
        println!("  {e}");
    }
    if !errors.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}

/// One client: `n` addresses, each subscribed then unsubscribed; the latency of every request,
/// and a line per error.
fn client(
    base: &str,
    secret: &Secret,
    topic: Option<&str>,
    run: u32,
    client: usize,
    n: usize,
) -> (Vec<Duration>, Vec<String>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut latencies = Vec::with_capacity(2 * n);
    let mut errors = Vec::new();
    let mut time = |what: &str, request: &mut dyn FnMut() -> Result<u16, ureq::Error>| {
        let t = Instant::now();
        let outcome = request().map(|status| (status, t.elapsed()));
        match outcome {
            Ok((200, took)) => latencies.push(took),
            Ok((status, took)) => {
                latencies.push(took);
                errors.push(format!("{what}: HTTP {status}"));
            }
            Err(e) => errors.push(format!("{what}: {e}")),
        }
    };
    for i in 0..n {
        let address = format!("load-{run:08x}-{client:03}-{i:05}@example.test");
        let name = format!("读者 {client}-{i}");
        let mut form = vec![("email", address.as_str()), ("name", name.as_str())];
        if let Some(topic) = topic {
            form.push(("topics", topic));
        }
        time("subscribe", &mut || {
            let mut response = agent
                .post(&format!("{base}/subscribe"))
                .send_form(form.iter().copied())?;
            response.body_mut().read_to_vec()?;
            Ok(response.status().as_u16())
        });
        let url = format!(
            "{base}/unsubscribe?token={}",
            token::unsubscribe_token(secret, &address)
        );
        time("unsubscribe", &mut || {
            let mut response = agent
                .post(&url)
                .send_form([("List-Unsubscribe", "One-Click")])?;
            response.body_mut().read_to_vec()?;
            Ok(response.status().as_u16())
        });
    }
    (latencies, errors)
}
