//! An account owner's e-mail address, parsed at the edge: what `PUT /api/accounts/{id}` accepts
//! is what the notification service can put in a `To:` header and an SMTP `RCPT TO`.
//!
//! The rule is deliberately narrower than RFC 5322: an ASCII dot-atom local part (no quoted
//! strings, no comments) and a host name of at least two labels (no address literals such as
//! `[192.0.2.1]`). Everything it accepts any SMTP library accepts too (lettre's `Address`
//! among them); what it refuses is legal but rare, and would mostly be a typing mistake here.
//! Internationalised addresses (SMTPUTF8) are refused, as many relays still refuse them.

use std::fmt;

/// The longest address: a forward path is at most 256 octets with its angle brackets
/// (RFC 5321, 4.5.3.1.3).
pub const MAX_LEN: usize = 254;
/// The longest local part (RFC 5321, 4.5.3.1.1).
const MAX_LOCAL: usize = 64;
/// The longest label of a host name (RFC 1035).
const MAX_LABEL: usize = 63;

/// What a 422 says of an address refused.
pub const EMAIL_RULE: &str = "must be an e-mail address such as name@example.com: ASCII, at most \
     254 characters, a local part of at most 64 letters, digits, dots or !#$%&'*+/=?^_`{|}~- \
     and a domain name of at least two labels";

/// An address that passed [`Email::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// `value` as an address, unchanged (no trimming, no case folding: the owner's spelling
    /// is kept); `Err` with the rule when it is not one.
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        if is_plausible(value) {
            Ok(Self(value.to_owned()))
        } else {
            Err(EMAIL_RULE)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_plausible(value: &str) -> bool {
    if value.len() > MAX_LEN || !value.is_ascii() {
        return false;
    }
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    is_dot_atom(local) && is_host_name(domain)
}

/// Letters, digits and RFC 5322's other `atext` characters, in dot-separated non-empty runs.
fn is_dot_atom(local: &str) -> bool {
    const SPECIALS: &[u8] = b"!#$%&'*+/=?^_`{|}~-";
    (1..=MAX_LOCAL).contains(&local.len())
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || SPECIALS.contains(&b))
        })
}

/// At least two labels of letters, digits and inner hyphens; the last one not all digits, so
/// that `10.0.0.1` is not taken for a name.
fn is_host_name(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=MAX_LABEL).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_addresses_are_accepted_as_written() {
        for address in [
            "ada@example.com",
            "Ada.Lovelace+orders@mail.example.co.uk",
            "o'brien@example.ie",
            "x@a-b.io",
            "shop-ops@xn--bcher-kva.example",
        ] {
            assert_eq!(
                Email::parse(address).map(|e| e.into_string()),
                Ok(address.to_owned())
            );
        }
    }

    #[test]
    fn implausible_addresses_are_refused() {
        for address in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@localhost",
            "ada@@example.com",
            "a@b@example.com",
            ".ada@example.com",
            "ada.@example.com",
            "a..da@example.com",
            "ada lovelace@example.com",
            " ada@example.com",
            "ada@example.com ",
            "ada@exa_mple.com",
            "ada@-example.com",
            "ada@example-.com",
            "ada@example..com",
            "ada@10.0.0.1",
            "ada@[192.0.2.1]",
            "\"ada\"@example.com",
            "adä@example.com",
            "ada@exämple.com",
            "ada\n@example.com",
            "ada@example.com\r\nBcc: eve@example.com",
        ] {
            assert_eq!(Email::parse(address), Err(EMAIL_RULE), "{address:?}");
        }
    }

    #[test]
    fn lengths_are_bounded() {
        let local = "a".repeat(64);
        assert!(Email::parse(&format!("{local}@example.com")).is_ok());
        assert!(Email::parse(&format!("a{local}@example.com")).is_err());
        let label = "b".repeat(63);
        assert!(Email::parse(&format!("a@{label}.com")).is_ok());
        assert!(Email::parse(&format!("a@b{label}.com")).is_err());
        // 254 characters in all, then 255.
        let domain = format!(
            "{}.{}.{}.com",
            "c".repeat(63),
            "d".repeat(63),
            "e".repeat(61)
        );
        let longest = format!("{}@{domain}", "a".repeat(254 - domain.len() - 1));
        assert_eq!(longest.len(), MAX_LEN);
        assert!(Email::parse(&longest).is_ok());
        assert!(Email::parse(&format!("a{longest}")).is_err());
    }
}
