//! The broker settings (`APP__AMQP__...`), and the broker addresses they name.
//!
//! A service may be given several addresses, the nodes of one cluster: `amqp.urls` (a TOML array,
//! or a comma-separated string from the environment) or a comma-separated `amqp.url`.
//! [`AmqpSettings::addresses`] turns either into the checked list the session walks through
//! (see `messaging::broker`); start-up refuses a list it cannot use, naming the setting and
//! never the password.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::secret::SecretUrl;

fn default_batch_linger_ms() -> u64 {
    2
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AmqpSettings {
    /// `amqp://user:password@host:port/vhost` (`%2f` is the default vhost); shown masked.
    /// Several nodes may be given separated by commas; read only when `urls` is empty.
    pub url: SecretUrl,
    /// The nodes of a cluster, tried in turn (see [`AmqpSettings::addresses`]); when set, `url`
    /// is not read. From the environment, one comma-separated string.
    #[serde(default, deserialize_with = "one_or_many")]
    pub urls: Vec<SecretUrl>,
    /// Unacknowledged deliveries pushed to each consuming channel; twice `batch_size`, so the
    /// next batch is waiting while one is applied.
    pub prefetch: u16,
    /// Consuming channels, each applying one batch at a time on its own database connection.
    pub concurrency: usize,
    /// Most deliveries applied on one database transaction; it bounds how fast a channel works
    /// off a backlog, since a full batch costs less per delivery than a small one.
    pub batch_size: usize,
    /// How long a busy channel's batch waits to fill (0 never waits), for fewer commits under
    /// load; with `prefetch` at or under `batch_size` it waits for deliveries that cannot come.
    #[serde(default = "default_batch_linger_ms")]
    pub batch_linger_ms: u64,
    /// Upper bound of the reconnect backoff (applied once per round of all the addresses).
    pub max_reconnect_delay_ms: u64,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            urls: Vec::new(),
            prefetch: 256,
            concurrency: 1,
            batch_size: 128,
            batch_linger_ms: default_batch_linger_ms(),
            max_reconnect_delay_ms: 10_000,
        }
    }
}

impl AmqpSettings {
    /// The broker addresses in the order they are tried: `urls` when given, else `url`, each
    /// entry split at commas and trimmed. Refused: no address at all, an empty entry, anything
    /// but an `amqp://` or `amqps://` URL. The error names the setting and shows no password.
    pub fn addresses(&self) -> Result<Vec<SecretUrl>, String> {
        let (setting, entries) = if self.urls.is_empty() {
            ("amqp.url (APP__AMQP__URL)", std::slice::from_ref(&self.url))
        } else {
            ("amqp.urls (APP__AMQP__URLS)", self.urls.as_slice())
        };
        let mut addresses = Vec::new();
        for entry in entries {
            for part in entry.expose().split(',') {
                let address = SecretUrl::new(part.trim());
                let position = addresses.len() + 1;
                check(&address)
                    .map_err(|problem| format!("{setting}: address {position} {problem}"))?;
                addresses.push(address);
            }
        }
        if addresses.is_empty() {
            return Err(format!("{setting}: no broker address given"));
        }
        Ok(addresses)
    }

    /// The start-up check: [`AmqpSettings::addresses`] can be used.
    pub fn validate(&self) -> Result<(), String> {
        self.addresses().map(|_| ())
    }
}

/// Why `address` cannot be connected to, in words that show no password.
fn check(address: &SecretUrl) -> Result<(), String> {
    let url = address.expose();
    if url.is_empty() {
        return Err("is empty (a stray comma?)".into());
    }
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    if !matches!(scheme, Some("amqp" | "amqps")) {
        return Err(format!(
            "`{}` is not an amqp:// or amqps:// URL",
            address.redacted()
        ));
    }
    url.parse::<lapin::uri::AMQPUri>()
        .map(|_| ())
        .map_err(|error| {
            // The parser may quote what it was given.
            format!(
                "`{}` is not a valid AMQP URL: {}",
                address.redacted(),
                address.scrub(&error)
            )
        })
}

/// `urls` as a list (a TOML array) or one comma-separated string (the environment; split by
/// [`AmqpSettings::addresses`], where an empty entry is refused rather than skipped here).
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<SecretUrl>, D::Error> {
    struct OneOrMany;

    impl<'de> Visitor<'de> for OneOrMany {
        type Value = Vec<SecretUrl>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of AMQP URLs or one comma-separated string of them")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(vec![SecretUrl::new(value)])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut urls = Vec::new();
            while let Some(url) = seq.next_element::<SecretUrl>()? {
                urls.push(url);
            }
            Ok(urls)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
    }

    deserializer.deserialize_any(OneOrMany)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::configuration::ServiceSettings;

    fn from_environment(variables: &[(&str, &str)]) -> AmqpSettings {
        let map: HashMap<String, String> = variables
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        crate::configuration::load_from(&ServiceSettings::new(3001, "saga_test"), map)
            .unwrap()
            .amqp
    }

    fn exposed(settings: &AmqpSettings) -> Vec<String> {
        settings
            .addresses()
            .unwrap()
            .iter()
            .map(|url| url.expose().to_owned())
            .collect()
    }

    #[test]
    fn one_address_by_default_and_from_url() {
        assert_eq!(
            exposed(&AmqpSettings::default()),
            ["amqp://guest:guest@127.0.0.1:5672/%2f"]
        );
        let settings = from_environment(&[("APP__AMQP__URL", "amqps://u:p@mq:5671/saga")]);
        assert_eq!(exposed(&settings), ["amqps://u:p@mq:5671/saga"]);
    }

    #[test]
    fn a_comma_separated_url_gives_several_addresses_trimmed() {
        let settings = from_environment(&[(
            "APP__AMQP__URL",
            "amqp://u:p@a:5673/%2f, amqp://u:p@b:5674/%2f ,amqp://u:p@c:5675/%2f",
        )]);
        assert_eq!(
            exposed(&settings),
            [
                "amqp://u:p@a:5673/%2f",
                "amqp://u:p@b:5674/%2f",
                "amqp://u:p@c:5675/%2f"
            ]
        );
    }

    #[test]
    fn urls_come_from_the_environment_as_a_list_and_win_over_url() {
        let settings = from_environment(&[
            ("APP__AMQP__URL", "amqp://u:p@ignored:5672/%2f"),
            (
                "APP__AMQP__URLS",
                "amqp://u:p@a:5673/%2f,amqp://u:p@b:5674/%2f",
            ),
        ]);
        assert_eq!(
            exposed(&settings),
            ["amqp://u:p@a:5673/%2f", "amqp://u:p@b:5674/%2f"]
        );
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn urls_come_from_a_toml_array() {
        let settings: AmqpSettings = config::Config::builder()
            .add_source(config::Config::try_from(&AmqpSettings::default()).unwrap())
            .add_source(config::File::from_str(
                r#"urls = ["amqp://u:p@a:5673/%2f", "amqp://u:p@b:5674/%2f"]"#,
                config::FileFormat::Toml,
            ))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        assert_eq!(
            exposed(&settings),
            ["amqp://u:p@a:5673/%2f", "amqp://u:p@b:5674/%2f"]
        );
    }

    #[test]
    fn empty_entries_and_other_schemes_are_refused_without_the_password() {
        for (variable, value, expected) in [
            (
                "APP__AMQP__URL",
                "amqp://u:pa55word@a:5673/%2f,,amqp://u:pa55word@b/%2f",
                "amqp.url (APP__AMQP__URL): address 2 is empty",
            ),
            (
                "APP__AMQP__URLS",
                " ",
                "amqp.urls (APP__AMQP__URLS): address 1 is empty",
            ),
            (
                "APP__AMQP__URLS",
                "amqp://u:pa55word@a/%2f,http://u:pa55word@b/",
                "address 2 `http://u:***@b/` is not an amqp:// or amqps:// URL",
            ),
            (
                "APP__AMQP__URL",
                "amqp://u:pa55word@a:notaport/%2f",
                "amqp.url (APP__AMQP__URL): address 1 `amqp://u:***@a:notaport/%2f` is not a valid AMQP URL",
            ),
        ] {
            let refused = from_environment(&[(variable, value)])
                .validate()
                .unwrap_err();
            assert!(refused.contains(expected), "{value}: {refused}");
            assert!(!refused.contains("pa55word"), "{refused}");
        }
    }

    #[test]
    fn the_addresses_show_no_password_in_debug_output() {
        let settings = from_environment(&[(
            "APP__AMQP__URLS",
            "amqp://u:pa55word@a/%2f,amqp://u:pa55word@b/%2f",
        )]);
        let shown = format!("{settings:?}");
        assert!(!shown.contains("pa55word"), "{shown}");
        assert!(shown.contains("amqp://u:***@b/%2f"), "{shown}");
    }
}
