//! How fast feedpost DKIM-signs: `cargo run --release --example sign_bench [SECONDS]`.
//!
//! Prints, for RSA-2048 and Ed25519 keys made on the spot (aws-lc-rs, the backend
//! `feedpost::mail::sign` uses):
//!
//! - the bare signature rate of one core (the figure `openssl speed` prints);
//! - `DkimSigner::sign` of real feedpost messages on one core (canonicalize, hash, sign, prepend
//!   the header), with heap allocations per message;
//! - `SigningPool` throughput on every core, driven from one tokio `current_thread` runtime as
//!   the delivery engine drives it (submitting ahead, `QUEUE_PER_WORKER` per worker in flight);
//!
//! then `openssl speed -seconds 3 rsa2048` (the system OpenSSL) when the `openssl` program is
//! there. The messages are the five real issues in `tests/fixtures/seeds`, composed with the
//! example site's config (`feedpost.toml` in the current folder, or `FEEDPOST_CONFIG`) for 200
//! readers each.
//!
//! Per-core rates are given per second of wall time and per second of the thread's CPU time
//! (Linux schedstat); `openssl speed` counts CPU time too, so on a machine shared with other work
//! compare the CPU-time figures, which hold under load while the wall-clock ones drop.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use feedpost::config::Config;
use feedpost::mail::sign::{DkimSigner, Signer, SigningPool, QUEUE_PER_WORKER};
use feedpost::mail::{IssueMail, Recipient};

/// Counts heap allocations, to show what one signature costs in them.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() -> Result<()> {
    let seconds: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()
        .context("the argument is the seconds per figure, e.g. 3")?
        .unwrap_or(3.0);
    let run_for = Duration::from_secs_f64(seconds);
    let messages = messages()?;
    let mean = messages.iter().map(Vec::len).sum::<usize>() / messages.len();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "sign_bench: {} messages of {mean} bytes on average, {seconds} s per figure, {cores} cores",
        messages.len()
    );

    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)?;
    let rsa_pkcs8 = AsDer::<Pkcs8V1Der>::as_der(&rsa)?.as_ref().to_vec();
    let ed_pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new())?
        .as_ref()
        .to_vec();

    let raw = RsaKeyPair::from_pkcs8(&rsa_pkcs8)?;
    let mut signature = vec![0; raw.public_modulus_len()];
    let rng = SystemRandom::new();
    let data = [0x5a_u8; 1500];
    let rsa_raw = rate(run_for, || {
        raw.sign(&RSA_PKCS1_SHA256, &rng, &data, &mut signature)
            .expect("sign");
    });
    let ed_raw_key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&ed_pkcs8)?;
    let ed_raw = rate(run_for, || {
        std::hint::black_box(ed_raw_key.sign(&data[..32]));
    });

    let time = DateTime::parse_from_rfc3339("2024-03-01T08:00:00Z")?.with_timezone(&Utc);
    println!();
    println!("per core: signatures per second of wall time / per second of the thread's CPU time");
    println!(
        "{:<9} {:>20} {:>22} {:>11} {:>24}",
        "key", "bare sign/s/core", "DkimSigner msg/s/core", "allocs/msg", "pool msg/s (CPU used)"
    );
    for (name, pkcs8, bare) in [
        ("RSA-2048", &rsa_pkcs8, rsa_raw),
        ("Ed25519", &ed_pkcs8, ed_raw),
    ] {
        let pem = pem(pkcs8);
        let signer = Arc::new(DkimSigner::from_pem(
            pem.as_bytes(),
            "example.org",
            "s2026",
        )?);
        let mut i = 0;
        let mut allocations = 0;
        let mut signed = 0u64;
        let one_core = rate(run_for, || {
            let message = messages[i % messages.len()].clone();
            i += 1;
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            let out = signer.sign(message, time).expect("sign");
            allocations += ALLOCATIONS.load(Ordering::Relaxed) - before;
            signed += 1;
            std::hint::black_box(out);
        });
        let (pool, cpus) = pool_rate(signer.clone(), &messages, time, run_for, cores)?;
        println!(
            "{name:<9} {:>20} {:>22} {:>11.1} {:>24}",
            bare.to_string(),
            one_core.to_string(),
            allocations as f64 / signed as f64,
            format!("{pool:.0} ({cpus:.2} cores)"),
        );
    }
    println!();
    println!("allocs/msg counts DkimSigner::sign alone (the message it is given is not counted).");
    println!(
        "pool: {cores} worker threads, {} messages in flight at most, submitted from one \
         current_thread runtime; CPU used = the process's CPU seconds per wall second",
        cores * QUEUE_PER_WORKER
    );
    println!("The machine may be shared: CPU-time rates hold under load, wall-clock rates do not.");
    openssl_speed(seconds);
    Ok(())
}

/// A rate measured both ways: per second of wall time and per second of CPU time.
struct Rate {
    wall: f64,
    cpu: Option<f64>,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.cpu {
            Some(cpu) => write!(f, "{:.0} / {cpu:.0}", self.wall),
            None => write!(f, "{:.0} / ?", self.wall),
        }
    }
}

/// CPU time of the calling thread (Linux `/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu() -> Option<Duration> {
    schedstat("/proc/thread-self/schedstat")
}

/// CPU time of every thread of this process.
fn process_cpu() -> Option<Duration> {
    let mut total = Duration::ZERO;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        total += schedstat(task.ok()?.path().join("schedstat"))?;
    }
    Some(total)
}

fn schedstat(path: impl AsRef<std::path::Path>) -> Option<Duration> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(Duration::from_nanos(
        text.split_whitespace().next()?.parse().ok()?,
    ))
}

/// Calls per second of `f` over `run_for`, after a short warm-up.
fn rate(run_for: Duration, mut f: impl FnMut()) -> Rate {
    for _ in 0..20 {
        f();
    }
    let cpu = thread_cpu();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < run_for {
        f();
        n += 1;
    }
    let wall = start.elapsed();
    let cpu = cpu.zip(thread_cpu()).map(|(a, b)| b - a);
    Rate {
        wall: n as f64 / wall.as_secs_f64(),
        cpu: cpu.map(|c| n as f64 / c.as_secs_f64()),
    }
}

/// Messages per second through a [`SigningPool`] of `workers` threads, submitted ahead from a
/// current_thread runtime and awaited in order, as the delivery engine does; and how many cores'
/// worth of CPU the process used meanwhile.
fn pool_rate(
    signer: Arc<DkimSigner>,
    messages: &[Vec<u8>],
    time: DateTime<Utc>,
    run_for: Duration,
    workers: usize,
) -> Result<(f64, f64)> {
    let pool = SigningPool::new(signer, workers, workers * QUEUE_PER_WORKER)?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let ahead = workers * QUEUE_PER_WORKER;
    let cpu = process_cpu();
    let (rate, wall) = runtime.block_on(async {
        let start = Instant::now();
        let mut pending = VecDeque::with_capacity(ahead);
        let mut done = 0u64;
        let mut i = 0;
        while start.elapsed() < run_for {
            while pending.len() < ahead {
                let message = messages[i % messages.len()].clone();
                i += 1;
                pending.push_back(pool.submit(message, time).await);
            }
            let signed: Vec<u8> = pending.pop_front().expect("in flight").await.expect("sign");
            std::hint::black_box(signed);
            done += 1;
        }
        for p in pending {
            p.await.expect("sign");
            done += 1;
        }
        let wall = start.elapsed();
        (done as f64 / wall.as_secs_f64(), wall)
    });
    let used = cpu.zip(process_cpu()).map_or(f64::NAN, |(a, b)| {
        (b - a).as_secs_f64() / wall.as_secs_f64()
    });
    Ok((rate, used))
}

/// The five real issues of `tests/fixtures/seeds`, composed with the example site's config and
/// personalised for 200 readers each.
fn messages() -> Result<Vec<Vec<u8>>> {
    let path = std::env::var("FEEDPOST_CONFIG").unwrap_or_else(|_| "feedpost.toml".into());
    let config = Config::from_file(std::path::Path::new(&path)).context(
        "run from the repository (the example site's feedpost.toml) or set FEEDPOST_CONFIG",
    )?;
    let seeds =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seeds/issues");
    let from = config.from_mailbox();
    let mut messages = Vec::new();
    for path in feedpost::issue::files::paths(&seeds)? {
        let issue = feedpost::issue::load_file(&path, &config)?;
        let mail = IssueMail::compose(
            &issue,
            &config,
            &feedpost::mail::placeholder_secret(),
            Utc::now(),
        )?;
        for i in 0..200 {
            let address = format!("reader{i:04}@example.test");
            let name = format!("读者 {i}");
            let message_id = IssueMail::message_id_for(issue.permalink.as_str(), &address, &from);
            let (_, message) = mail.personalise(&Recipient {
                address: &address,
                name: Some(&name),
                message_id: &message_id,
            })?;
            messages.push(message);
        }
    }
    Ok(messages)
}

fn pem(pkcs8: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(pkcs8);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64"))
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

/// Runs `openssl speed -seconds N rsa2048` and prints its last lines (the system OpenSSL's
/// figure per core, for comparison).
fn openssl_speed(seconds: f64) {
    let secs = (seconds.round() as u64).max(1).to_string();
    println!();
    println!("openssl speed -seconds {secs} rsa2048:");
    match Command::new("openssl")
        .args(["speed", "-seconds", &secs, "rsa2048"])
        .output()
    {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            for line in text
                .lines()
                .rev()
                .take(2)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                println!("  {line}");
            }
        }
        Ok(out) => println!(
            "  failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("")
        ),
        Err(e) => println!("  not run: {e} (Debian package `openssl`)"),
    }
}
