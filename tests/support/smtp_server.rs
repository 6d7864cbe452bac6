//! In-process SMTP server on loopback for integration tests, with fault
//! injection. std only: one accept thread, one thread per connection.
//!
//! ```ignore
//! let server = SmtpServer::start(Faults::default().reject_rcpt(&["bad@example.com"]));
//! // point the client at 127.0.0.1:server.port() ...
//! assert!(server.wait_for(3, Duration::from_secs(5)));
//! let msgs = server.received();
//! ```
//!
//! Notes on semantics:
//! * A message is recorded the moment the final `.` line is read, before any
//!   reply is written (and before `delay_reply` sleeps).
//! * DATA lines are delimited by CRLF only (as lettre's dot-stuffing codec
//!   assumes); a bare LF inside the body is kept as data.
//! * Dropping the server stops accepting and shuts down every live
//!   connection, so clients blocked on it see EOF / reset promptly.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Size advertised in the EHLO `SIZE` line unless `Faults::size_limit` sets one (then it is
/// enforced).
const MAX_SIZE: usize = 50 * 1024 * 1024;
/// The longest line of message content, CRLF included (RFC 5321 §4.5.3.1.6): a message with a
/// longer line is refused at its end with `500 5.5.2`, as strict servers do.
const MAX_LINE: usize = 1000;
/// Read buffer per connection.
const READ_BUF: usize = 256 * 1024;

/// One message the server accepted (recorded at end of DATA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// Message after dot-unstuffing, without the final `.` line.
    pub data: Vec<u8>,
    /// The server kept the message but dropped the connection instead of
    /// replying (`Faults::drop_after_data`).
    pub reply_lost: bool,
}

/// Fault-injection configuration. `Faults::default()` is a well-behaved
/// server. Builder methods accumulate (calling `reject_rcpt` twice rejects
/// both sets of addresses). Addresses are compared case-insensitively.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// lowercased address -> (times, code)
    transient_rcpt: HashMap<String, (usize, u16)>,
    reject_rcpt: HashSet<String>,
    reject_data_for: HashSet<String>,
    disconnect_after: Option<usize>,
    /// (connection numbers, n): `disconnect_after` for these connections only.
    disconnect_connections: Option<(Vec<usize>, usize)>,
    throttle_every: Option<usize>,
    drop_after_data: HashSet<usize>,
    greeting_code: Option<u16>,
    /// 1-based connection numbers (first, last) greeted with a code and closed.
    refuse_connections: Option<(usize, usize, u16)>,
    reject_sender: bool,
    broken_starttls: bool,
    delay_reply: Option<Duration>,
    pipelining: bool,
    /// Advertised in `SIZE` and enforced at MAIL (`SIZE=`) and at the end of DATA.
    size_limit: Option<usize>,
    /// The reply to the end of DATA for every message (none is recorded).
    reject_all_data: Option<String>,
    /// The reply to every RCPT TO.
    reject_all_rcpt: Option<String>,
    /// Do not offer SMTPUTF8: refuse the `SMTPUTF8` parameter and non-ASCII addresses.
    no_smtputf8: bool,
}

impl Faults {
    pub fn new() -> Self {
        Self::default()
    }

    /// RCPT TO for these addresses answers `code` (e.g. 451) for the first
    /// `times` attempts per address (counted across connections), then 250.
    pub fn transient_rcpt(mut self, addrs: &[&str], times: usize, code: u16) -> Self {
        for a in addrs {
            self.transient_rcpt
                .insert(a.to_ascii_lowercase(), (times, code));
        }
        self
    }

    /// RCPT TO for these addresses always answers `550 5.1.1 User unknown`.
    pub fn reject_rcpt(mut self, addrs: &[&str]) -> Self {
        self.reject_rcpt
            .extend(addrs.iter().map(|a| a.to_ascii_lowercase()));
        self
    }

    /// Accept RCPT, but answer the end of DATA with `554 5.6.0 Message
    /// rejected` when any recipient of the transaction is in `addrs`. The
    /// message is not recorded.
    pub fn reject_data_for(mut self, addrs: &[&str]) -> Self {
        self.reject_data_for
            .extend(addrs.iter().map(|a| a.to_ascii_lowercase()));
        self
    }

    /// After `n` messages accepted on one connection, the next MAIL FROM on
    /// that connection gets `421 4.7.0 Too many messages, closing
    /// connection` and the connection is closed.
    pub fn disconnect_after(mut self, n: usize) -> Self {
        self.disconnect_after = Some(n);
        self
    }

    /// As `disconnect_after`, for the connections numbered `connections` (1-based, in accept
    /// order) only.
    pub fn disconnect_connections_after(mut self, connections: &[usize], n: usize) -> Self {
        self.disconnect_connections = Some((connections.to_vec(), n));
        self
    }

    /// Every `k`-th MAIL FROM (global counter, 1-based; k = 0 means off)
    /// answers `454 4.7.0 Too many messages, slow down`; the connection stays
    /// open.
    pub fn throttle_every(mut self, k: usize) -> Self {
        self.throttle_every = if k == 0 { None } else { Some(k) };
        self
    }

    /// For the n-th accepted message globally (1-based; counts messages that
    /// pass the DATA checks, i.e. would be recorded), record it with
    /// `reply_lost = true` and close the socket without replying.
    pub fn drop_after_data(mut self, nth: &[usize]) -> Self {
        self.drop_after_data.extend(nth.iter().copied());
        self
    }

    /// Greet every new connection with `code` (e.g. 554 or 421) and close.
    pub fn greeting_code(mut self, code: u16) -> Self {
        self.greeting_code = Some(code);
        self
    }

    /// Advertise `PIPELINING` (RFC 2920) in the EHLO reply. Commands are read the same way
    /// either way; `SmtpServer::pipelined_commands` counts those that arrived before the reply
    /// to the previous one was written.
    pub fn pipelining(mut self) -> Self {
        self.pipelining = true;
        self
    }

    /// Connections number `first ..= first + count - 1` (1-based, counted over the server's
    /// life) are greeted with `code` (e.g. 421) and closed; the others are served normally.
    pub fn refuse_connections(mut self, first: usize, count: usize, code: u16) -> Self {
        self.refuse_connections = Some((first, first + count - 1, code));
        self
    }

    /// Every MAIL FROM answers `553 5.7.1 Sender address rejected: not owned by user`.
    pub fn reject_sender(mut self) -> Self {
        self.reject_sender = true;
        self
    }

    /// Advertise STARTTLS in EHLO, answer `220` to it, then close the socket instead of
    /// starting TLS (a failed TLS handshake, as the client sees it).
    pub fn broken_starttls(mut self) -> Self {
        self.broken_starttls = true;
        self
    }

    /// Advertise `SIZE n` and enforce it: `MAIL FROM` with `SIZE=` over `n`, and a message
    /// over `n` at the end of DATA, get `552 5.3.4 Message size exceeds fixed maximum message
    /// size` (as Postfix with `message_size_limit`).
    pub fn size_limit(mut self, n: usize) -> Self {
        self.size_limit = Some(n);
        self
    }

    /// The end of DATA of every message answers `reply` (e.g. `554 5.7.1 Message refused as
    /// spam`); nothing is recorded.
    pub fn reject_all_data(mut self, reply: &str) -> Self {
        self.reject_all_data = Some(reply.to_string());
        self
    }

    /// Every RCPT TO answers `reply` (e.g. `554 5.7.1 Relay access denied`).
    pub fn reject_all_rcpt(mut self, reply: &str) -> Self {
        self.reject_all_rcpt = Some(reply.to_string());
        self
    }

    /// Do not offer SMTPUTF8 (RFC 6531): the `SMTPUTF8` parameter gets `555 5.5.4 Unsupported
    /// option: SMTPUTF8` (as Postfix), a non-ASCII address `553 5.6.7 Non-ASCII address`.
    pub fn no_smtputf8(mut self) -> Self {
        self.no_smtputf8 = true;
        self
    }

    /// Sleep this long before the final 250 after DATA (the message is
    /// already recorded by then).
    pub fn delay_reply(mut self, d: Duration) -> Self {
        self.delay_reply = Some(d);
        self
    }
}

/// Fault configuration plus the global counters, behind one mutex.
#[derive(Debug, Default)]
struct FaultState {
    faults: Faults,
    /// lowercased address -> RCPT TO attempts
    rcpt_attempts: HashMap<String, usize>,
    /// MAIL FROM commands seen by the throttle check
    mail_count: usize,
    /// messages that passed the DATA checks
    data_count: usize,
}

struct Shared {
    faults: Mutex<FaultState>,
    received: Mutex<Vec<Received>>,
    received_cv: Condvar,
    /// every command line received (DATA content and AUTH continuation
    /// lines excluded), in arrival order across connections
    commands: Mutex<Vec<String>>,
    /// (connection number, event) in arrival order: `CONNECT`, each command line, and `421`
    /// when a connection is closed with it.
    events: Mutex<Vec<(usize, String)>>,
    connections: AtomicUsize,
    /// commands already buffered when the previous reply had been written
    pipelined: AtomicUsize,
    stop: AtomicBool,
    next_conn_id: AtomicU64,
    /// clones of live connection sockets, shut down on drop
    live: Mutex<HashMap<u64, TcpStream>>,
    /// notified (with `live` locked) when a connection is accepted or ends
    live_cv: Condvar,
    /// probe connections of [`SmtpServer::barrier`]: registered, and seen by the accept loop
    probes: Mutex<Probes>,
    probes_cv: Condvar,
}

#[derive(Default)]
struct Probes {
    registered: HashSet<SocketAddr>,
    seen: HashSet<SocketAddr>,
}

/// Lock ignoring poisoning (a panicking test thread must not cascade into
/// connection threads).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct SmtpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl SmtpServer {
    /// Bind 127.0.0.1:0 and start serving with the given faults.
    pub fn start(faults: Faults) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("smtp test server: bind");
        let addr = listener.local_addr().expect("smtp test server: local_addr");
        let shared = Arc::new(Shared {
            faults: Mutex::new(FaultState {
                faults,
                ..FaultState::default()
            }),
            received: Mutex::new(Vec::new()),
            received_cv: Condvar::new(),
            commands: Mutex::new(Vec::new()),
            events: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            pipelined: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            next_conn_id: AtomicU64::new(1),
            live: Mutex::new(HashMap::new()),
            live_cv: Condvar::new(),
            probes: Mutex::new(Probes::default()),
            probes_cv: Condvar::new(),
        });
        let sh = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name("smtp-accept".into())
            .spawn(move || accept_loop(listener, sh))
            .expect("smtp test server: spawn accept thread");
        SmtpServer {
            addr,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    /// A loopback port nothing listens on (bound then released).
    pub fn not_listening() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        l.local_addr().expect("local_addr").port()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replace the fault configuration; global counters (RCPT attempts,
    /// MAIL/DATA counts) are kept.
    pub fn set_faults(&self, faults: Faults) {
        lock(&self.shared.faults).faults = faults;
    }

    /// Snapshot of every recorded message, in recording order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }

    /// Every command line received so far (without CRLF; DATA content and
    /// AUTH continuation lines excluded), in arrival order across all
    /// connections. Handy to check e.g. whether a client sent RSET or QUIT.
    pub fn commands(&self) -> Vec<String> {
        lock(&self.shared.commands).clone()
    }

    pub fn received_count(&self) -> usize {
        lock(&self.shared.received).len()
    }

    /// Wait until at least `n` messages are recorded; false on timeout.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = lock(&self.shared.received);
        loop {
            if guard.len() >= n {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // Bounded wait so that a missed notification only costs 50 ms.
            let wait = (deadline - now).min(Duration::from_millis(50));
            guard = match self.shared.received_cv.wait_timeout(guard, wait) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Returns once every connection made before the call has been accepted (and counted):
    /// a probe connection, which the accept loop recognises and does not count, is accepted
    /// after them (the listen queue is first in, first out).
    pub fn barrier(&self) {
        let (_connection, probe) = {
            // Held until the probe is registered: the accept loop takes this lock before it
            // looks at a new connection, so it cannot miss the probe.
            let mut probes = lock(&self.shared.probes);
            let connection = TcpStream::connect(self.addr).expect("smtp test server: probe");
            let local = connection.local_addr().expect("probe address");
            probes.registered.insert(local);
            (connection, local)
        };
        let mut probes = lock(&self.shared.probes);
        while !probes.seen.remove(&probe) {
            probes = self
                .shared
                .probes_cv
                .wait(probes)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Returns once every connection made before the call has been accepted and has ended:
    /// what a client that is gone (killed, or exited) delivered is all recorded.
    pub fn wait_idle(&self) {
        self.barrier();
        let mut live = lock(&self.shared.live);
        while !live.is_empty() {
            live = self
                .shared
                .live_cv
                .wait(live)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits until at least `n` connections were accepted; false on timeout.
    pub fn wait_for_connections(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut live = lock(&self.shared.live);
        while self.connections_accepted() < n {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            live = match self.shared.live_cv.wait_timeout(live, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }

    /// TCP connections accepted so far (including ones refused by
    /// `greeting_code`).
    pub fn connections_accepted(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Commands that arrived before the reply to the previous command was written: sent
    /// pipelined (RFC 2920).
    pub fn pipelined_commands(&self) -> usize {
        self.shared.pipelined.load(Ordering::SeqCst)
    }

    /// Every event so far as (connection number, event): `CONNECT` when a connection is
    /// accepted, each command line, `421` when `disconnect_after` closes a connection.
    pub fn events(&self) -> Vec<(usize, String)> {
        lock(&self.shared.events).clone()
    }

    /// How many times RCPT TO was attempted for `addr` (case-insensitive),
    /// whatever the reply was.
    pub fn rcpt_attempts(&self, addr: &str) -> usize {
        lock(&self.shared.faults)
            .rcpt_attempts
            .get(&addr.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Unblock accept(); only join if the wake-up connection got through.
        let woke = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        if let Some(h) = self.accept_thread.take() {
            if woke {
                let _ = h.join();
            }
        }
        for (_, s) in lock(&self.shared.live).drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let res = listener.accept();
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let (stream, peer) = match res {
            Ok(accepted) => accepted,
            Err(_) => {
                // e.g. EMFILE; back off a little and retry.
                thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        {
            let mut probes = lock(&shared.probes);
            if probes.registered.remove(&peer) {
                probes.seen.insert(peer);
                shared.probes_cv.notify_all();
                continue;
            }
        }
        let _ = stream.set_nodelay(true);
        let id = shared.next_conn_id.fetch_add(1, Ordering::SeqCst);
        let number = {
            let mut live = lock(&shared.live);
            if let Ok(clone) = stream.try_clone() {
                live.insert(id, clone);
            }
            let number = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
            shared.live_cv.notify_all();
            number
        };
        let sh = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name(format!("smtp-conn-{id}"))
            .spawn(move || {
                let _ = handle_connection(stream, &sh, number);
                lock(&sh.live).remove(&id);
                sh.live_cv.notify_all();
            });
        if spawned.is_err() {
            if let Some(s) = lock(&shared.live).remove(&id) {
                let _ = s.shutdown(Shutdown::Both);
            }
            shared.live_cv.notify_all();
        }
    }
}

/// Why a connection ended early; all are handled by just returning.
#[derive(Debug)]
enum End {
    Closed,
    Io,
}

impl From<std::io::Error> for End {
    fn from(_: std::io::Error) -> Self {
        End::Io
    }
}

struct Conn<'a> {
    reader: BufReader<TcpStream>,
    shared: &'a Shared,
    /// 1-based, in accept order.
    number: usize,
    /// messages accepted on this connection
    accepted: usize,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

impl Conn<'_> {
    fn reply(&mut self, text: &str) -> Result<(), End> {
        // One write call per reply.
        let mut s: &TcpStream = self.reader.get_ref();
        s.write_all(text.as_bytes())?;
        Ok(())
    }

    /// Read one command line (without CRLF/LF). EOF or partial line -> End.
    fn read_line(&mut self, buf: &mut Vec<u8>) -> Result<String, End> {
        buf.clear();
        let n = self.reader.read_until(b'\n', buf)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            return Err(End::Closed);
        }
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        Ok(String::from_utf8_lossy(buf).into_owned())
    }

    fn reset(&mut self) {
        self.mail_from = None;
        self.rcpt_to.clear();
    }

    fn close(&self) {
        let _ = self.reader.get_ref().shutdown(Shutdown::Both);
    }
}

fn handle_connection(stream: TcpStream, shared: &Shared, number: usize) -> Result<(), End> {
    lock(&shared.events).push((number, "CONNECT".into()));
    let mut conn = Conn {
        reader: BufReader::with_capacity(READ_BUF, stream),
        shared,
        number,
        accepted: 0,
        mail_from: None,
        rcpt_to: Vec::new(),
    };

    let greeting = {
        let f = &lock(&shared.faults).faults;
        f.greeting_code.or(f
            .refuse_connections
            .and_then(|(first, last, code)| (first..=last).contains(&number).then_some(code)))
    };
    if let Some(code) = greeting {
        let _ = conn.reply(&format!("{code} localhost No service\r\n"));
        conn.close();
        return Ok(());
    }
    conn.reply("220 localhost ESMTP feedpost test server\r\n")?;

    let mut buf = Vec::with_capacity(1024);
    loop {
        if !conn.reader.buffer().is_empty() {
            shared.pipelined.fetch_add(1, Ordering::SeqCst);
        }
        let line = conn.read_line(&mut buf)?;
        lock(&shared.commands).push(line.clone());
        lock(&shared.events).push((number, line.clone()));
        let (verb, arg) = match line.find(' ') {
            Some(i) => (&line[..i], line[i + 1..].trim()),
            None => (line.as_str(), ""),
        };
        let verb = verb.to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => {
                conn.reset();
                let who = if arg.is_empty() { "client" } else { arg };
                let (pipelining, starttls, smtputf8, size) = {
                    let faults = &lock(&shared.faults).faults;
                    (
                        if faults.pipelining {
                            "250-PIPELINING\r\n"
                        } else {
                            ""
                        },
                        if faults.broken_starttls {
                            "250-STARTTLS\r\n"
                        } else {
                            ""
                        },
                        if faults.no_smtputf8 {
                            ""
                        } else {
                            "250-SMTPUTF8\r\n"
                        },
                        faults.size_limit.unwrap_or(MAX_SIZE),
                    )
                };
                conn.reply(&format!(
                    "250-localhost Hello {who}\r\n{pipelining}{starttls}\
                     250-8BITMIME\r\n\
                     {smtputf8}\
                     250-SIZE {size}\r\n\
                     250-AUTH PLAIN LOGIN\r\n\
                     250 ENHANCEDSTATUSCODES\r\n"
                ))?;
            }
            "HELO" => {
                conn.reset();
                conn.reply("250 localhost\r\n")?;
            }
            "MAIL" => cmd_mail(&mut conn, arg)?,
            "RCPT" => cmd_rcpt(&mut conn, arg)?,
            "DATA" => cmd_data(&mut conn)?,
            "RSET" => {
                conn.reset();
                conn.reply("250 2.0.0 Ok\r\n")?;
            }
            "NOOP" => conn.reply("250 2.0.0 Ok\r\n")?,
            "STARTTLS" if lock(&shared.faults).faults.broken_starttls => {
                let _ = conn.reply("220 2.0.0 Ready to start TLS\r\n");
                conn.close();
                return Ok(());
            }
            "QUIT" => {
                let _ = conn.reply("221 2.0.0 Bye\r\n");
                conn.close();
                return Ok(());
            }
            "AUTH" => cmd_auth(&mut conn, arg, &mut buf)?,
            "VRFY" => conn.reply("252 2.0.0 Cannot VRFY user\r\n")?,
            _ => conn.reply("500 5.5.2 Error: command not recognized\r\n")?,
        }
    }
}

/// `FROM:<addr> PARAMS` / `TO:<addr> PARAMS` -> addr. None on syntax error.
fn parse_path(arg: &str, keyword: &str) -> Option<String> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    if let Some(r) = rest.strip_prefix('<') {
        let end = r.find('>')?;
        Some(r[..end].to_string())
    } else {
        let tok = rest.split_whitespace().next()?;
        Some(tok.to_string())
    }
}

fn cmd_mail(conn: &mut Conn<'_>, arg: &str) -> Result<(), End> {
    let Some(from) = parse_path(arg, "FROM:") else {
        return conn.reply("501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
    };
    if conn.mail_from.is_some() {
        return conn.reply("503 5.5.1 Error: nested MAIL command\r\n");
    }
    if lock(&conn.shared.faults).faults.reject_sender {
        return conn.reply("553 5.7.1 Sender address rejected: not owned by user\r\n");
    }
    let params: Vec<String> = arg
        .split_whitespace()
        .skip(1)
        .map(|p| p.to_ascii_uppercase())
        .collect();
    let (no_smtputf8, size_limit) = {
        let f = &lock(&conn.shared.faults).faults;
        (f.no_smtputf8, f.size_limit)
    };
    if no_smtputf8 {
        if params.iter().any(|p| p == "SMTPUTF8") {
            return conn.reply("555 5.5.4 Unsupported option: SMTPUTF8\r\n");
        }
        if !from.is_ascii() {
            return conn.reply("553 5.6.7 Non-ASCII address\r\n");
        }
    }
    let declared = params.iter().find_map(|p| {
        p.strip_prefix("SIZE=")
            .and_then(|n| n.parse::<usize>().ok())
    });
    if let (Some(limit), Some(declared)) = (size_limit, declared) {
        if declared > limit {
            return conn.reply("552 5.3.4 Message size exceeds fixed maximum message size\r\n");
        }
    }
    let (disconnect, throttled) = {
        let mut st = lock(&conn.shared.faults);
        let limited = st
            .faults
            .disconnect_after
            .is_some_and(|n| conn.accepted >= n)
            || st
                .faults
                .disconnect_connections
                .as_ref()
                .is_some_and(|(which, n)| which.contains(&conn.number) && conn.accepted >= *n);
        if limited {
            (true, false)
        } else {
            st.mail_count += 1;
            let c = st.mail_count;
            (
                false,
                st.faults
                    .throttle_every
                    .is_some_and(|k| c.checked_rem(k) == Some(0)),
            )
        }
    };
    if disconnect {
        lock(&conn.shared.events).push((conn.number, "421".into()));
        let _ = conn.reply("421 4.7.0 Too many messages, closing connection\r\n");
        conn.close();
        return Err(End::Closed);
    }
    if throttled {
        return conn.reply("454 4.7.0 Too many messages, slow down\r\n");
    }
    conn.mail_from = Some(from);
    conn.rcpt_to.clear();
    conn.reply("250 2.1.0 Ok\r\n")
}

fn cmd_rcpt(conn: &mut Conn<'_>, arg: &str) -> Result<(), End> {
    let Some(to) = parse_path(arg, "TO:") else {
        return conn.reply("501 5.5.4 Syntax: RCPT TO:<address>\r\n");
    };
    if conn.mail_from.is_none() {
        return conn.reply("503 5.5.1 Error: need MAIL command\r\n");
    }
    let key = to.to_ascii_lowercase();
    let reply = {
        let mut st = lock(&conn.shared.faults);
        let slot = st.rcpt_attempts.entry(key.clone()).or_insert(0);
        let before = *slot;
        *slot += 1;
        if let Some(reply) = &st.faults.reject_all_rcpt {
            Some(format!("{reply}\r\n"))
        } else if st.faults.no_smtputf8 && !to.is_ascii() {
            Some("553 5.6.7 Non-ASCII address\r\n".to_string())
        } else if st.faults.reject_rcpt.contains(&key) {
            Some("550 5.1.1 User unknown\r\n".to_string())
        } else {
            match st.faults.transient_rcpt.get(&key) {
                Some(&(times, code)) if before < times => {
                    let class = if code >= 500 { 5 } else { 4 };
                    Some(format!("{code} {class}.7.1 Try again later\r\n"))
                }
                _ => None,
            }
        }
    };
    match reply {
        Some(r) => conn.reply(&r),
        None => {
            conn.rcpt_to.push(to);
            conn.reply("250 2.1.5 Ok\r\n")
        }
    }
}

fn cmd_data(conn: &mut Conn<'_>) -> Result<(), End> {
    if conn.mail_from.is_none() {
        return conn.reply("503 5.5.1 Error: need MAIL command\r\n");
    }
    if conn.rcpt_to.is_empty() {
        return conn.reply("503 5.5.1 Error: need RCPT command\r\n");
    }
    conn.reply("354 End data with <CR><LF>.<CR><LF>\r\n")?;

    // Read straight into `data`, undoing dot-stuffing in place.
    let mut data: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut at_line_start = true;
    let mut line_too_long = false;
    loop {
        let start = data.len();
        let n = conn.reader.read_until(b'\n', &mut data)?;
        if n == 0 || data.last() != Some(&b'\n') {
            // Client went away mid-DATA: nothing recorded.
            return Err(End::Closed);
        }
        line_too_long |= at_line_start && n > MAX_LINE;
        let seg_is_line_start = at_line_start;
        // Only CRLF ends a line (bare LF is data, matching lettre's codec).
        at_line_start = data.len() - start >= 2 && data[data.len() - 2] == b'\r';
        if seg_is_line_start && data[start] == b'.' {
            if &data[start..] == b".\r\n" {
                data.truncate(start);
                break;
            }
            data.remove(start);
        }
    }

    let mail_from = conn.mail_from.take().unwrap_or_default();
    let rcpt_to = std::mem::take(&mut conn.rcpt_to);

    enum Outcome {
        Reject(String),
        Drop,
        Accept(Option<Duration>, usize),
    }
    let outcome = {
        let mut st = lock(&conn.shared.faults);
        if let Some(reply) = &st.faults.reject_all_data {
            Outcome::Reject(reply.clone())
        } else if line_too_long {
            Outcome::Reject("500 5.5.2 Line too long (RFC 5321: 1000 octets at most)".into())
        } else if st.faults.size_limit.is_some_and(|limit| data.len() > limit) {
            Outcome::Reject("552 5.3.4 Message size exceeds fixed maximum message size".into())
        } else if rcpt_to
            .iter()
            .any(|r| st.faults.reject_data_for.contains(&r.to_ascii_lowercase()))
        {
            Outcome::Reject("554 5.6.0 Message rejected".into())
        } else {
            st.data_count += 1;
            if st.faults.drop_after_data.contains(&st.data_count) {
                Outcome::Drop
            } else {
                Outcome::Accept(st.faults.delay_reply, st.data_count)
            }
        }
    };
    if let Outcome::Reject(reply) = outcome {
        return conn.reply(&format!("{reply}\r\n"));
    }

    // Record before replying.
    let reply_lost = matches!(outcome, Outcome::Drop);
    {
        let mut rec = lock(&conn.shared.received);
        rec.push(Received {
            mail_from,
            rcpt_to,
            data,
            reply_lost,
        });
    }
    conn.shared.received_cv.notify_all();
    conn.accepted += 1;

    match outcome {
        Outcome::Accept(delay, id) => {
            if let Some(d) = delay {
                thread::sleep(d);
            }
            conn.reply(&format!("250 2.0.0 Ok: queued as T{id:08}\r\n"))
        }
        _ => {
            conn.close();
            Err(End::Closed)
        }
    }
}

/// Accepts any credentials. `AUTH PLAIN [ir]` and `AUTH LOGIN [ir]`.
fn cmd_auth(conn: &mut Conn<'_>, arg: &str, buf: &mut Vec<u8>) -> Result<(), End> {
    let mut parts = arg.split_whitespace();
    let mech = parts.next().unwrap_or("").to_ascii_uppercase();
    let initial = parts.next();
    let ok = "235 2.7.0 Authentication successful\r\n";
    let cancelled = "501 5.7.0 Authentication cancelled\r\n";
    match mech.as_str() {
        "PLAIN" => {
            if initial.is_none() {
                conn.reply("334 \r\n")?;
                if conn.read_line(buf)? == "*" {
                    return conn.reply(cancelled);
                }
            }
            conn.reply(ok)
        }
        "LOGIN" => {
            if initial.is_none() {
                conn.reply("334 VXNlcm5hbWU6\r\n")?; // "Username:"
                if conn.read_line(buf)? == "*" {
                    return conn.reply(cancelled);
                }
            }
            conn.reply("334 UGFzc3dvcmQ6\r\n")?; // "Password:"
            if conn.read_line(buf)? == "*" {
                return conn.reply(cancelled);
            }
            conn.reply(ok)
        }
        _ => conn.reply("504 5.5.4 Unrecognized authentication type\r\n"),
    }
}

/// Unfolded value of the first header `name` (case-insensitive) in a raw
/// RFC 5322 message; stops at the first blank line. Value is trimmed.
pub fn header(data: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    let mut found: Option<String> = None;
    for raw in text.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            break;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(v) = found.as_mut() {
                v.push_str(line);
            }
            continue;
        }
        if found.is_some() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.trim_end().eq_ignore_ascii_case(name) {
                found = Some(v.to_string());
            }
        }
    }
    found.map(|v| v.trim().to_string())
}

/// All envelope recipients of all messages, lowercased, in order.
pub fn recipients_of(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .flat_map(|r| r.rcpt_to.iter().map(|a| a.to_ascii_lowercase()))
        .collect()
}
