//! Connection URLs that carry credentials (`postgres://user:password@...`, `amqp://...`).
//!
//! [`SecretUrl`] shows itself with the password masked (`Debug`, `Display`), exposes the whole
//! URL only to the code that connects, and scrubs it out of error messages: drivers quote the
//! URL they were given when it does not parse.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What stands in place of a password.
const MASK: &str = "***";

#[derive(Clone)]
pub struct SecretUrl(SecretString);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(SecretString::from(url.into()))
    }

    /// The whole URL, password included: only for handing to a driver.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL with its password masked: what logs and messages may show. A comma-separated
    /// list of URLs (several broker nodes) has each one's password masked.
    pub fn redacted(&self) -> String {
        self.expose()
            .split(',')
            .map(|url| match password_span(url) {
                Some((start, end)) => format!("{}{MASK}{}", &url[..start], &url[end..]),
                None => url.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `text` with this URL, and its password (each one's, in a list) wherever else it
    /// appears, masked.
    pub fn scrub(&self, text: &str) -> String {
        let urls = self.expose();
        let mut text = text.replace(urls, &self.redacted());
        for url in urls.split(',') {
            if let Some((start, end)) = password_span(url) {
                text = text.replace(&url[start..end], MASK);
            }
        }
        text
    }
}

/// Where the password of `scheme://user:password@host...` is; `None` without one.
fn password_span(url: &str) -> Option<(usize, usize)> {
    let authority_start = url.find("://")? + 3;
    let authority_len = url[authority_start..]
        .find(['/', '?', '#'])
        .unwrap_or(url.len() - authority_start);
    let authority = &url[authority_start..authority_start + authority_len];
    let userinfo = &authority[..authority.rfind('@')?];
    let colon = userinfo.find(':')?;
    let (start, end) = (
        authority_start + colon + 1,
        authority_start + userinfo.len(),
    );
    (start < end).then_some((start, end))
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        Self::new(url)
    }
}

impl From<&String> for SecretUrl {
    fn from(url: &String) -> Self {
        Self::new(url.as_str())
    }
}

impl From<&SecretUrl> for SecretUrl {
    fn from(url: &SecretUrl) -> Self {
        url.clone()
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> Self {
        Self::new(url)
    }
}

/// Serialised whole: the settings' defaults reach the configuration layers through serde
/// (`configuration::load`). Nothing else serialises settings.
impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_masked_and_the_rest_kept() {
        let url = SecretUrl::new("postgres://app:s3cret@db:5432/orders?sslmode=off");
        assert_eq!(
            url.redacted(),
            "postgres://app:***@db:5432/orders?sslmode=off"
        );
        assert_eq!(
            format!("{url:?}"),
            "\"postgres://app:***@db:5432/orders?sslmode=off\""
        );
        assert_eq!(url.to_string(), url.redacted());
        assert_eq!(
            url.expose(),
            "postgres://app:s3cret@db:5432/orders?sslmode=off"
        );
    }

    #[test]
    fn urls_without_a_password_are_shown_as_they_are() {
        for plain in [
            "amqp://guest@127.0.0.1:5672/%2f",
            "amqp://127.0.0.1",
            "not a url",
        ] {
            assert_eq!(SecretUrl::new(plain).redacted(), plain);
        }
    }

    #[test]
    fn each_url_of_a_comma_separated_list_is_masked() {
        let urls = SecretUrl::new("amqp://u:first-pw@a/%2f, amqp://u:second-pw@b/%2f");
        assert_eq!(urls.redacted(), "amqp://u:***@a/%2f, amqp://u:***@b/%2f");
        let scrubbed = urls.scrub("refused: second-pw and first-pw");
        assert_eq!(scrubbed, "refused: *** and ***");
    }

    #[test]
    fn a_message_quoting_the_url_or_the_password_is_scrubbed() {
        let url = SecretUrl::new("amqp://user:p@ss:w0rd@broker/%2f");
        let message = "cannot parse 'amqp://user:p@ss:w0rd@broker/%2f'; password p@ss:w0rd refused";
        let scrubbed = url.scrub(message);
        assert!(!scrubbed.contains("p@ss:w0rd"), "{scrubbed}");
        assert!(
            scrubbed.contains("amqp://user:***@broker/%2f"),
            "{scrubbed}"
        );
    }
}
