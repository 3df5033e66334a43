//! A real SMTP server for the tests: Debian's aiosmtpd with its Mailbox handler, which stores
//! every message it accepts as a file of a Maildir, where a test reads it back. Used by the
//! notification service's tests and by the orchestrator's console fleet.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use uuid::Uuid;

use super::{PATIENCE, eventually};

/// The interpreter with Debian's `python3-aiosmtpd` (not a pyenv one earlier on `PATH`).
const PYTHON: &str = "/usr/bin/python3";

/// An SMTP server on 127.0.0.1, stopped and its Maildir removed when dropped.
pub struct MailCatcher {
    pub port: u16,
    maildir: PathBuf,
    child: Child,
}

/// A free port: bound, read, released. Another process could take it in between, which on a
/// test machine does not happen in practice.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl MailCatcher {
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    /// Starts the server on `port` and waits until it accepts connections.
    pub async fn start_on(port: u16) -> Self {
        Self::start_with(port, &[]).await
    }

    /// A server that speaks TLS with the certificate and key in PEM files: after STARTTLS
    /// (which it then requires), or from the first byte (implicit TLS, "SMTPS").
    pub async fn start_tls(implicit: bool, cert: &Path, key: &Path) -> Self {
        let (cert_flag, key_flag) = if implicit {
            ("--smtpscert", "--smtpskey")
        } else {
            ("--tlscert", "--tlskey")
        };
        let args = [
            cert_flag.into(),
            cert.as_os_str().to_owned(),
            key_flag.into(),
            key.as_os_str().to_owned(),
        ];
        Self::start_with(free_port(), &args).await
    }

    async fn start_with(port: u16, args: &[OsString]) -> Self {
        let maildir = std::env::temp_dir().join(format!("notify-mail-{}", Uuid::new_v4().simple()));
        let child = Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n"])
            .args(args)
            .arg("-l")
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "cannot start aiosmtpd: apt-get install python3-aiosmtpd (deploy/test.sh does)",
            );
        let catcher = Self {
            port,
            maildir,
            child,
        };
        eventually(
            "the SMTP server to accept connections",
            PATIENCE,
            || async {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(drop)
            },
        )
        .await;
        catcher
    }

    /// Every message received so far.
    pub fn mails(&self) -> Vec<Mail> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
            .map(|raw| Mail::parse(&raw))
            .collect()
    }

    /// The messages, once there are at least `count`.
    pub async fn wait_for(&self, count: usize) -> Vec<Mail> {
        eventually(
            &format!("{count} mail(s) in the Maildir"),
            PATIENCE,
            || async {
                let mails = self.mails();
                (mails.len() >= count).then_some(mails)
            },
        )
        .await
    }
}

impl Drop for MailCatcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}

/// A message as stored: its headers, and its plain-text and HTML parts decoded.
#[derive(Debug, Clone)]
pub struct Mail {
    pub raw: String,
    pub text: String,
    pub html: String,
}

impl Mail {
    fn parse(raw: &str) -> Self {
        let decoded = quoted_printable(raw);
        let plain = decoded.find("Content-Type: text/plain");
        let html = decoded.find("Content-Type: text/html");
        let (text, html) = match (plain, html) {
            (Some(p), Some(h)) if p < h => (decoded[p..h].to_owned(), decoded[h..].to_owned()),
            _ => (String::new(), String::new()),
        };
        Self {
            raw: raw.to_owned(),
            text,
            html,
        }
    }

    /// The value of the first header `name` (case as written by lettre), long ones unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}: ");
        let mut headers: Vec<String> = Vec::new();
        for line in self.raw.lines().take_while(|line| !line.is_empty()) {
            match (line.strip_prefix([' ', '\t']), headers.last_mut()) {
                (Some(continued), Some(last)) => {
                    last.push(' ');
                    last.push_str(continued.trim_start());
                }
                _ => headers.push(line.to_owned()),
            }
        }
        headers
            .iter()
            .find_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
    }
}

/// Undoes quoted-printable (soft line breaks and `=XX`), which lettre picks for long lines.
fn quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Some(byte) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
