//! A real PostgreSQL server for the tests: `initdb` into a temporary folder, `pg_ctl start` on a
//! free loopback port (its Unix socket in the same folder), one database per test, stopped and
//! removed when the value drops.
//!
//! The binaries come from the Debian package `postgresql` (`/usr/lib/postgresql/<version>/bin`)
//! or the `PATH`. `initdb` refuses to run as root, so as root (here and on CI) the server's
//! commands run as the `postgres` system user (else `nobody`) through `runuser`, and the folder
//! is handed to that user. Without a binary, [`Postgres::start`] prints why and returns `None`
//! — unless `CI` is set: then a missing PostgreSQL fails the test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A running PostgreSQL server on loopback, trusting local connections as the user `feedpost`.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    run_as: Option<String>,
}

/// The user every test connects as (the cluster's superuser).
pub const USER: &str = "feedpost";

/// The folder of the newest PostgreSQL binaries: Debian's `/usr/lib/postgresql/*/bin`, else the
/// folder of `initdb` on the `PATH`.
pub fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").is_file() && p.join("pg_ctl").is_file())
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A user that is not root to run the server as: `postgres` (made by the Debian package), else
/// `nobody`.
fn unprivileged_user() -> String {
    let exists = |user: &str| {
        Command::new("id")
            .arg(user)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if exists("postgres") {
        "postgres".into()
    } else {
        "nobody".into()
    }
}

impl Postgres {
    /// Starts a server, or returns `None` after printing why when PostgreSQL is not installed
    /// and `CI` is unset.
    ///
    /// # Panics
    /// PostgreSQL is missing under CI, or the server cannot be set up or started.
    pub fn start() -> Option<Postgres> {
        let Some(bin) = bin_dir() else {
            if std::env::var_os("CI").is_some() {
                panic!("PostgreSQL is not installed, and CI is set: install the Debian package `postgresql` (.ci/run does)");
            }
            eprintln!("skipped: no PostgreSQL binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or on the PATH; install the Debian package `postgresql` to run this test");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("feedpost-pg-")
            .tempdir()
            .expect("temp dir for PostgreSQL");
        let run_as = is_root().then(unprivileged_user);
        if let Some(user) = &run_as {
            let status = Command::new("chown")
                .arg("-R")
                .arg(format!("{user}:"))
                .arg(dir.path())
                .status()
                .expect("run chown");
            assert!(status.success(), "chown the PostgreSQL folder to {user}");
        }
        let mut pg = Postgres {
            dir,
            bin,
            port: 0,
            run_as,
        };
        let data = pg.data();
        pg.server_cmd("initdb")
            .args([
                "-D",
                &data,
                "-U",
                USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .succeed("initdb");
        // A free port now; the server takes it a moment later.
        pg.port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=64MB",
            pg.port,
            pg.dir.path().display()
        );
        let log = pg.dir.path().join("server.log");
        pg.server_cmd("pg_ctl")
            .args(["-D", &data, "-l"])
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .succeed("pg_ctl start");
        Some(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// A command of the server's, run as its user.
    fn server_cmd(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.current_dir(self.dir.path());
        cmd
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates a new, empty database and returns its URL (`postgres://feedpost@127.0.0.1:PORT/NAME`).
    pub fn database(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("t{}", NEXT.fetch_add(1, Ordering::SeqCst));
        let status = Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                &name,
            ])
            .status()
            .expect("run createdb");
        assert!(status.success(), "createdb {name}");
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `sql` in the database at `url` with `psql`, returning its unaligned output.
    pub fn psql(&self, url: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .server_cmd("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

trait Succeed {
    fn succeed(&mut self, what: &str);
}

impl Succeed for Command {
    #[track_caller]
    fn succeed(&mut self, what: &str) {
        let out = self.output().unwrap_or_else(|e| panic!("run {what}: {e}"));
        assert!(
            out.status.success(),
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
