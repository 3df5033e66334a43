//! The notification service's settings: everything every service has, plus `notify` (the SMTP
//! server, the addresses, the retries of a mail), `APP__NOTIFY__...`. A leaf: imports no feature.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use saga_common::configuration::ServiceSettings;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    #[serde(flatten)]
    pub service: ServiceSettings,
    pub notify: NotifySettings,
}

impl AsRef<ServiceSettings> for Settings {
    fn as_ref(&self) -> &ServiceSettings {
        &self.service
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP: only for a server on this machine or a private network (the mail catcher).
    None,
    /// Plain connection upgraded with STARTTLS, which is required (usually port 587).
    Starttls,
    /// TLS from the first byte, "implicit TLS" (usually port 465).
    Tls,
}

/// Mail delivery (`APP__NOTIFY__...`): docs/notifications.md.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotifySettings {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_tls: SmtpTls,
    /// A PEM file of CA certificates trusted for the SMTP server besides the system's (a
    /// private CA); with `starttls` or `tls` only.
    #[serde(default)]
    pub smtp_ca_file: Option<String>,
    /// With `smtp_password`, the SMTP login; both or neither.
    pub smtp_username: Option<String>,
    #[serde(serialize_with = "redacted")]
    pub smtp_password: Option<SecretString>,
    /// The `From` of every mail, `Name <address>` or a bare address.
    pub from: String,
    /// Where low-stock alerts go (the shop's operators).
    pub ops_email: String,
    /// Sends of one notification before it is `FAILED` (the first included).
    pub max_attempts: i32,
    /// The wait after the first failed send; doubled after each further one, up to
    /// `backoff_max_ms`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// How often the sender looks for due rows even when nothing woke it: retries whose time
    /// has come, and rows a crashed instance committed but never sent.
    pub sweep_interval_ms: u64,
    /// Most rows claimed at once by one sender.
    pub batch_size: i64,
    /// The longest one SMTP conversation may take.
    pub smtp_timeout_ms: u64,
}

/// The password is never written out, not even by a settings dump.
fn redacted<S: serde::Serializer>(
    value: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    // `Serialize` exists for the layered loader, which round-trips the defaults (where the
    // password is always absent); a real password is never serialised.
    match value {
        Some(secret) if secret.expose_secret().is_empty() => serializer.serialize_some(""),
        Some(_) => serializer.serialize_some("***"),
        None => serializer.serialize_none(),
    }
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            // The mail catcher deploy/run.sh starts.
            smtp_host: "127.0.0.1".into(),
            smtp_port: 2525,
            smtp_tls: SmtpTls::None,
            smtp_ca_file: None,
            smtp_username: None,
            smtp_password: None,
            from: "Saga Shop <shop@localhost>".into(),
            ops_email: "ops@localhost".into(),
            max_attempts: 5,
            backoff_base_ms: 1_000,
            backoff_max_ms: 300_000,
            sweep_interval_ms: 1_000,
            batch_size: 32,
            smtp_timeout_ms: 10_000,
        }
    }
}

impl NotifySettings {
    /// Refuses settings that cannot work, before anything starts.
    pub fn validate(&self) -> Result<(), String> {
        if self.smtp_host.trim().is_empty() {
            return Err("notify.smtp_host is empty".into());
        }
        if self.smtp_port == 0 {
            return Err("notify.smtp_port must be 1 to 65535".into());
        }
        if self.smtp_ca_file.is_some() && self.smtp_tls == SmtpTls::None {
            return Err("notify.smtp_ca_file needs notify.smtp_tls = starttls or tls".into());
        }
        if self.smtp_username.is_some() != self.smtp_password.is_some() {
            return Err("notify.smtp_username and notify.smtp_password go together".into());
        }
        // A password in clear text over the network is refused; on loopback (a local relay) it
        // never leaves the machine.
        if self.smtp_username.is_some() && self.smtp_tls == SmtpTls::None && !self.is_loopback() {
            return Err(format!(
                "notify.smtp_tls = none would send the SMTP password to {} unencrypted; use \
                 starttls or tls",
                self.smtp_host
            ));
        }
        for (name, address) in [
            ("notify.from", &self.from),
            ("notify.ops_email", &self.ops_email),
        ] {
            address
                .parse::<lettre::message::Mailbox>()
                .map_err(|e| format!("{name} `{address}` is not an e-mail address: {e}"))?;
        }
        if self.max_attempts < 1 {
            return Err("notify.max_attempts must be 1 or more".into());
        }
        if self.backoff_base_ms == 0 || self.backoff_max_ms < self.backoff_base_ms {
            return Err(
                "notify.backoff_base_ms must be positive and at most notify.backoff_max_ms".into(),
            );
        }
        if self.sweep_interval_ms == 0 || self.batch_size < 1 || self.smtp_timeout_ms == 0 {
            return Err(
                "notify.sweep_interval_ms, notify.batch_size and notify.smtp_timeout_ms must be \
                 positive"
                    .into(),
            );
        }
        Ok(())
    }

    fn is_loopback(&self) -> bool {
        matches!(self.smtp_host.as_str(), "localhost" | "127.0.0.1" | "::1")
    }

    /// How long a notification waits after its `attempts`-th failed send.
    pub fn backoff(&self, attempts: i32) -> std::time::Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(0)
            .min(30);
        let ms = self
            .backoff_base_ms
            .saturating_mul(1_u64 << doublings)
            .min(self.backoff_max_ms);
        std::time::Duration::from_millis(ms)
    }
}

/// Port 3003, database `saga_notification`.
pub fn default_settings() -> Settings {
    Settings {
        service: ServiceSettings::new(3003, "saga_notification"),
        notify: NotifySettings::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(NotifySettings::default().validate(), Ok(()));
    }

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let settings = NotifySettings {
            backoff_base_ms: 100,
            backoff_max_ms: 1_000,
            ..NotifySettings::default()
        };
        let waits: Vec<u128> = (1..=6).map(|n| settings.backoff(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1_000, 1_000]);
    }

    #[test]
    fn a_password_in_clear_text_to_another_machine_is_refused() {
        let settings = NotifySettings {
            smtp_host: "mail.example.com".into(),
            smtp_username: Some("shop".into()),
            smtp_password: Some(SecretString::from("s3cret")),
            ..NotifySettings::default()
        };
        let refusal = settings.validate().unwrap_err();
        assert!(refusal.contains("unencrypted"), "{refusal}");
        assert!(!refusal.contains("s3cret"));
        let tls = NotifySettings {
            smtp_tls: SmtpTls::Starttls,
            ..settings
        };
        assert_eq!(tls.validate(), Ok(()));
    }

    #[test]
    fn bad_addresses_and_half_credentials_are_refused() {
        let bad_from = NotifySettings {
            from: "not an address".into(),
            ..NotifySettings::default()
        };
        assert!(bad_from.validate().unwrap_err().contains("notify.from"));
        let half = NotifySettings {
            smtp_username: Some("shop".into()),
            ..NotifySettings::default()
        };
        assert!(half.validate().unwrap_err().contains("go together"));
    }

    #[test]
    fn the_password_is_never_serialised() {
        let settings = NotifySettings {
            smtp_password: Some(SecretString::from("s3cret")),
            ..NotifySettings::default()
        };
        let json = serde_json::to_string(&settings).unwrap();
        assert!(!json.contains("s3cret"), "{json}");
        assert!(!format!("{settings:?}").contains("s3cret"));
    }
}
