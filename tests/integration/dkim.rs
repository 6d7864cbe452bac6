//! DKIM: real feedpost messages, signed by `feedpost::mail::sign`, verify with an independent
//! verifier — Python's dkimpy, given the public key as the DNS TXT record — for RSA and Ed25519,
//! also after a trip through the loopback SMTP server; a tampered message does not. A bad
//! `[dkim]` table is an error on the line of its key, and the key never shows in the output.
//!
//! dkimpy (with PyNaCl for Ed25519) is an external program: without it these tests say so and
//! pass, except under CI (`CI` set), where they fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::Ed25519KeyPair;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use feedpost::config::Config;
use feedpost::mail::sign::{DkimSigner, Signer as _};
use feedpost::mail::{IssueMail, Recipient};
use lettre::address::Envelope;
use lettre::Transport as _;

use crate::check::{fixture_site, relative};
use crate::support::smtp_server::{header, Faults, SmtpServer};
use crate::support::{assert_delivered_once, many_subscribers, readers, Site};

/// Verifies each message file with dkimpy against one TXT record; prints `pass` or `fail` and
/// the path per file. Exit 3 when dkimpy or PyNaCl is missing.
const VERIFY: &str = r#"
import sys
try:
    import dkim, nacl
except ImportError as e:
    print("missing:", e)
    sys.exit(3)
name, record = sys.argv[1].encode(), sys.argv[2].encode()
def dns(query, timeout=5):
    return record if query.rstrip(b".") == name else None
for path in sys.argv[3:]:
    with open(path, "rb") as f:
        ok = dkim.verify(f.read(), dnsfunc=dns)
    print("pass" if ok else "fail", path)
"#;

/// Whether dkimpy can run here; without it, prints why and returns false — or panics under CI.
pub(crate) fn have_dkimpy() -> bool {
    let why = match Command::new("python3")
        .args(["-c", "import dkim, nacl"])
        .output()
    {
        Ok(out) if out.status.success() => return true,
        Ok(out) => format!(
            "python3 cannot import dkim and nacl: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("python3 did not start: {e}"),
    };
    let fix = "install them with `python3 -m pip install dkimpy pynacl`";
    if std::env::var_os("CI").is_some() {
        panic!("{why}; CI must run the DKIM verification: {fix}");
    }
    eprintln!("skipping the DKIM verification: {why}; {fix}");
    false
}

/// dkimpy's verdict on each of `files` given `signer`'s public key: `true` for a pass.
pub(crate) fn dkimpy_verdicts(signer: &DkimSigner, files: &[PathBuf]) -> Vec<bool> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(VERIFY)
        .arg(signer.dns_name())
        .arg(signer.dns_record())
        .args(files)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dkimpy failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: Vec<bool> = stdout.lines().map(|l| l.starts_with("pass ")).collect();
    assert_eq!(verdicts.len(), files.len(), "{stdout}");
    verdicts
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// A fresh RSA-2048 key and a fresh Ed25519 key, as PKCS#8 PEM (made once per test run).
pub(crate) fn keys() -> &'static [(&'static str, String); 2] {
    static KEYS: OnceLock<[(&str, String); 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let rsa = AsDer::<Pkcs8V1Der>::as_der(&rsa).unwrap();
        let ed = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).unwrap();
        [
            ("rsa", pem("PRIVATE KEY", rsa.as_ref())),
            ("ed25519", pem("PRIVATE KEY", ed.as_ref())),
        ]
    })
}

/// Writes `dkim.toml`: the site's config with a `[dkim]` table of `lines`; returns its path.
fn dkim_config(site: &Site, lines: &str) -> PathBuf {
    let path = site.path().join("dkim.toml");
    std::fs::write(&path, format!("{}\n[dkim]\n{lines}\n", site.config_text())).unwrap();
    path
}

fn time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-03-01T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Every seed issue's message to two readers, as `publish` composes them, signed by `signer`.
fn signed_seed_messages(config: &Config, signer: &DkimSigner) -> Vec<(Envelope, Vec<u8>)> {
    let mut messages = Vec::new();
    let issues = feedpost::issue::files::paths(&config.site.issues).unwrap();
    assert_eq!(issues.len(), 5);
    for path in issues {
        let issue = feedpost::issue::load_file(&path, config).unwrap();
        let mail = IssueMail::compose(
            &issue,
            config,
            &feedpost::mail::placeholder_secret(),
            time(),
        )
        .unwrap();
        for (address, name) in [
            ("reader@example.org", Some("读者")),
            ("Ada.Lovelace+news@Example.org", None),
        ] {
            let message_id =
                IssueMail::message_id_for(issue.permalink.as_str(), address, &mail_from(config));
            let (envelope, message) = mail
                .personalise(&Recipient {
                    address,
                    name,
                    message_id: &message_id,
                })
                .unwrap();
            messages.push((envelope, signer.sign(message, time()).unwrap()));
        }
    }
    messages
}

fn mail_from(config: &Config) -> lettre::message::Mailbox {
    config.from_mailbox()
}

fn write_all(dir: &Path, prefix: &str, messages: &[Vec<u8>]) -> Vec<PathBuf> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let path = dir.join(format!("{prefix}-{i}.eml"));
            std::fs::write(&path, m).unwrap();
            path
        })
        .collect()
}

/// `message` with `line` inserted as a header field right after the DKIM-Signature.
fn with_header(message: &[u8], line: &str) -> Vec<u8> {
    let text = String::from_utf8(message.to_vec()).unwrap();
    let at = text.find("\r\nFrom:").unwrap() + 2;
    format!("{}{line}\r\n{}", &text[..at], &text[at..]).into_bytes()
}

#[test]
fn seed_messages_signed_with_rsa_and_ed25519_verify_with_dkimpy() {
    if !have_dkimpy() {
        return;
    }
    let site = fixture_site("seeds");
    for (kind, key) in keys() {
        site.write(&format!("{kind}.pem"), key);
        let config_path = dkim_config(
            &site,
            &format!(
                "domain = \"example.org\"\nselector = \"s2026\"\nprivate_key = \"{kind}.pem\""
            ),
        );
        let config = Config::from_file(&config_path).unwrap();
        let signer = DkimSigner::from_config(config.dkim.as_ref().unwrap()).unwrap();
        let messages: Vec<Vec<u8>> = signed_seed_messages(&config, &signer)
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        let first = &messages[0];
        let text = String::from_utf8_lossy(first);
        let unfolded = text.replace("\r\n ", " ");
        assert!(
            unfolded.starts_with(&format!(
                "DKIM-Signature: v=1; a={}; c=relaxed/relaxed; d=example.org; s=s2026; t=1709280000; h=from:from:",
                signer.algorithm().tag()
            )),
            "{text}"
        );
        for key_line in key.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!text.contains(key_line), "key material in the message");
        }

        let files = write_all(site.path(), kind, &messages);
        let verdicts = dkimpy_verdicts(&signer, &files);
        assert!(verdicts.iter().all(|&v| v), "{kind}: {verdicts:?}");

        // Changed after signing: the body, a second From, a Reply-To the message had none of
        // (both oversigned). An unsigned header field added leaves the signature good, so the
        // verifier is not failing everything.
        let body_changed = String::from_utf8(first.clone())
            .unwrap()
            .replacen("SOFA", "S0FA", 1)
            .into_bytes();
        let tampered = [
            body_changed,
            with_header(first, "From: Mallory <mallory@example.org>"),
            with_header(first, "Reply-To: <mallory@example.org>"),
            with_header(first, "X-Added: by a relay"),
        ];
        let files = write_all(site.path(), &format!("{kind}-tampered"), &tampered);
        assert_eq!(
            dkimpy_verdicts(&signer, &files),
            [false, false, false, true],
            "{kind}: body, From, Reply-To, X-Added"
        );
    }
}

#[test]
fn a_signed_message_still_verifies_after_the_loopback_smtp_server_received_it() {
    if !have_dkimpy() {
        return;
    }
    let site = fixture_site("seeds");
    let server = SmtpServer::start(Faults::default());
    let transport = lettre::SmtpTransport::builder_dangerous("127.0.0.1")
        .port(server.port())
        .build();
    for (kind, key) in keys() {
        site.write(&format!("{kind}.pem"), key);
        let config_path = dkim_config(
            &site,
            &format!("domain = \"example.org\"\nselector = \"sel\"\nprivate_key = \"{kind}.pem\""),
        );
        let config = Config::from_file(&config_path).unwrap();
        let signer = DkimSigner::from_config(config.dkim.as_ref().unwrap()).unwrap();
        let before = server.received().len();
        let messages = signed_seed_messages(&config, &signer);
        for (envelope, message) in &messages {
            transport.send_raw(envelope, message).unwrap();
        }
        let received: Vec<Vec<u8>> = server.received()[before..]
            .iter()
            .map(|r| r.data.clone())
            .collect();
        assert_eq!(received.len(), messages.len());
        let files = write_all(site.path(), &format!("{kind}-received"), &received);
        let verdicts = dkimpy_verdicts(&signer, &files);
        assert!(verdicts.iter().all(|&v| v), "{kind}: {verdicts:?}");
    }
}

/// Runs `feedpost check` with `config`.
fn check(config: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_feedpost"))
        .arg("--config")
        .arg(config)
        .arg("check")
        .env("FEEDPOST_NOW", "2024-04-01T00:00:00Z")
        .env("FEEDPOST_LOG", "info")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_dkim_table_is_an_error_on_its_line_that_never_shows_the_key() {
    let site = fixture_site("seeds");
    let rsa = &keys()[0].1;
    site.write("weak.pem", include_str!("../fixtures/dkim/rsa-1024.pem"));
    site.write("glued.pem", &rsa.replacen("-----\n", "-----", 1));
    site.write("public.pem", &rsa.replace("PRIVATE KEY", "PUBLIC KEY"));
    // The config's [dkim] table starts on line `table`; `private_key` is its third line.
    let table = site.config_text().lines().count() + 2;
    for (domain, key, message) in [
        (
            "example.org",
            "missing.pem",
            "`dkim.private_key`: cannot read `SITE/missing.pem`",
        ),
        (
            "example.org",
            "weak.pem",
            "`dkim.private_key`: `SITE/weak.pem`: holds an RSA key shorter than 2048 bits",
        ),
        (
            "example.org",
            "glued.pem",
            "`dkim.private_key`: `SITE/glued.pem`: is not a readable PEM file",
        ),
        (
            "example.org",
            "public.pem",
            "`dkim.private_key`: `SITE/public.pem`: holds a public key or certificate",
        ),
    ] {
        let config = dkim_config(
            &site,
            &format!("domain = \"{domain}\"\nselector = \"s1\"\nprivate_key = \"{key}\""),
        );
        let (code, stdout, stderr) = check(&config);
        let stdout = relative(&site, &stdout);
        assert_eq!(code, 1, "{stdout}{stderr}");
        let expected = format!("SITE/dkim.toml:{}: error: {message}", table + 3);
        assert!(stdout.starts_with(&expected), "{expected}\n{stdout}");
        for key_line in rsa.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!stdout.contains(key_line) && !stderr.contains(key_line));
        }
    }
    site.write("ok.pem", rsa);
    let config = dkim_config(
        &site,
        "domain = \"example.net\"\nselector = \"s1\"\nprivate_key = \"ok.pem\"",
    );
    let (code, stdout, _) = check(&config);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        relative(&site, &stdout).starts_with(&format!(
            "SITE/dkim.toml:{}: error: `dkim.domain` = `example.net` does not align with the From domain `example.org`",
            table + 1
        )),
        "{stdout}"
    );
}

#[test]
fn a_key_file_others_can_read_gets_a_warning() {
    use std::os::unix::fs::PermissionsExt as _;
    let site = fixture_site("seeds");
    site.write("dkim.pem", &keys()[1].1);
    let key = site.path().join("dkim.pem");
    let config = dkim_config(
        &site,
        "domain = \"example.org\"\nselector = \"s1\"\nprivate_key = \"dkim.pem\"",
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, stdout, stderr) = check(&config);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.contains("can be read by other users; `chmod 600` it"),
        "{stderr}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, stdout, stderr) = check(&config);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stderr.contains("chmod"), "{stderr}");
}

#[test]
fn publish_signs_every_message_and_each_verifies_as_the_loopback_server_received_it() {
    if !have_dkimpy() {
        return;
    }
    for (kind, key) in keys() {
        let server = SmtpServer::start(Faults::default());
        let site = Site::new()
            .smtp(server.port(), "concurrency = 4")
            .subscribers(&many_subscribers(12))
            .weekly("本周 **MOSN** 发布。\n")
            .dkim(key)
            .env("FEEDPOST_NOW", "2024-03-09T08:00:00Z");
        site.run(&["publish"])
            .success()
            .stdout_contains("sent 12, already sent 0");
        let received = server.received();
        assert_delivered_once(&received, &readers(12));
        for m in &received {
            let signature = header(&m.data, "DKIM-Signature").expect("signed");
            let signature: String = signature.split_whitespace().collect();
            assert!(
                signature.contains("d=example.org;s=s1;t=1709971200;"),
                "{kind}: t= is the publish start: {signature}"
            );
        }
        let signer = DkimSigner::from_pem(key.as_bytes(), "example.org", "s1").unwrap();
        let messages: Vec<Vec<u8>> = received.iter().map(|r| r.data.clone()).collect();
        let files = write_all(site.path(), kind, &messages);
        let verdicts = dkimpy_verdicts(&signer, &files);
        assert!(verdicts.iter().all(|&v| v), "{kind}: {verdicts:?}");
    }
}
