//! The credentials the load generator sends (issue 24's contract):
//! - the operator token, `Authorization: Bearer <token>`, on everything that is not a
//!   customer's own business: seeding and reading back accounts and products, payments;
//! - a customer JWT (HS256 with the fleet's `APP__AUTH__JWT_SECRET`, `sub` = the customer id,
//!   `exp`, `iat`) on `POST /api/orders` and the reads of that customer's orders.
//!
//! Every customer's header is minted once, before the load ([`Credentials::new`]): signing per
//! request would put an HMAC and an allocation on the load generator's one thread for every
//! order, and a 24-hour token outlives any run. The header values are marked sensitive, so
//! they never show in `Debug` output; the secrets are [`SecretString`]s and are never printed.

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::RequestBuilder;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

/// How long the tokens of a run stay valid: longer than any run, short enough that a token
/// copied out of a packet capture is soon worthless.
pub const RUN_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// The environment variables the fleet reads, so one `export` serves the fleet and the load
/// generator. `APP__ADMIN__TOKEN` is the operator token's old name (one release).
pub const OPERATOR_TOKEN_ENV: &str = "APP__AUTH__OPERATOR_TOKEN";
pub const OLD_OPERATOR_TOKEN_ENV: &str = "APP__ADMIN__TOKEN";
pub const JWT_SECRET_ENV: &str = "APP__AUTH__JWT_SECRET";

#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
}

/// A customer JWT: HS256, signed with the secret's bytes as they are (not base64-decoded),
/// as the services verify it.
pub fn mint(
    secret: &SecretString,
    customer_id: &str,
    ttl: Duration,
    now_s: i64,
) -> Result<String, String> {
    let key = EncodingKey::from_secret(secret.expose_secret().as_bytes())
        .map_err(|e| format!("the JWT secret cannot sign: {e}"))?;
    let ttl_s = i64::try_from(ttl.as_secs()).map_err(|_| "the token lifetime is too long")?;
    let claims = Claims {
        sub: customer_id.to_string(),
        exp: now_s.saturating_add(ttl_s),
        iat: now_s,
    };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
        .map_err(|e| format!("cannot sign a token for {customer_id:?}: {e}"))
}

/// `Bearer <token>`, marked sensitive (hidden from `Debug`, never indexed by HTTP/2 HPACK).
pub fn bearer(token: &str) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "a token holds characters a header cannot carry".to_string())?;
    value.set_sensitive(true);
    Ok(value)
}

/// The headers of a run: the operator's, and one per seeded customer.
#[derive(Debug, Default)]
pub struct Credentials {
    operator: Option<HeaderValue>,
    customers: HashMap<String, HeaderValue>,
}

impl Credentials {
    /// Mints a token for each of `customers` when a JWT secret is given. Without one, the
    /// customers' requests carry the operator token (an operator may do what a customer may),
    /// or nothing against a fleet that checks no tokens.
    pub fn new<'a>(
        operator_token: Option<&SecretString>,
        jwt_secret: Option<&SecretString>,
        customers: impl Iterator<Item = &'a str>,
    ) -> Result<Self, String> {
        let operator = operator_token
            .map(|t| bearer(t.expose_secret()))
            .transpose()?;
        let mut minted = HashMap::new();
        if let Some(secret) = jwt_secret {
            let now = chrono::Utc::now().timestamp();
            for id in customers {
                let token = mint(secret, id, RUN_TOKEN_TTL, now)?;
                minted.insert(id.to_string(), bearer(&token)?);
            }
        }
        Ok(Self {
            operator,
            customers: minted,
        })
    }

    /// What the run will send, for a line at its start (no secret in it).
    pub fn describe(&self) -> &'static str {
        match (self.operator.is_some(), self.customers.is_empty()) {
            (true, false) => "operator token for seeding and checks, a customer JWT per customer",
            (true, true) => "operator token on every request (no --jwt-secret: no customer JWTs)",
            (false, false) => "customer JWTs on orders; NO operator token for seeding and checks",
            (false, true) => "NO credentials (neither --operator-token nor --jwt-secret)",
        }
    }

    /// An operator's request.
    pub fn operator(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.operator {
            Some(value) => request.header(AUTHORIZATION, value.clone()),
            None => request,
        }
    }

    /// A request of `customer_id`'s own business; the operator token when no JWT was minted
    /// for that customer.
    pub fn customer(&self, request: RequestBuilder, customer_id: &str) -> RequestBuilder {
        match self.customers.get(customer_id).or(self.operator.as_ref()) {
            Some(value) => request.header(AUTHORIZATION, value.clone()),
            None => request,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    fn decode(token: &str, secret: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(secret.as_bytes())?,
            &validation,
        )
        .map(|data| data.claims)
    }

    #[test]
    fn a_minted_token_verifies_with_the_secret_and_names_the_customer() {
        let secret = SecretString::from("s3cret-of-the-fleet");
        let now = chrono::Utc::now().timestamp();
        let token = mint(&secret, "c-42", Duration::from_secs(3600), now).unwrap();
        let claims = decode(&token, "s3cret-of-the-fleet").unwrap();
        assert_eq!(
            claims,
            Claims {
                sub: "c-42".into(),
                exp: now + 3600,
                iat: now
            }
        );
        assert!(decode(&token, "another-secret").is_err());
    }

    #[test]
    fn an_expired_token_is_refused_by_the_verifier() {
        let secret = SecretString::from("k");
        let long_ago = chrono::Utc::now().timestamp() - 7200;
        let token = mint(&secret, "c-1", Duration::from_secs(60), long_ago).unwrap();
        let err = decode(&token, "k").unwrap_err();
        assert_eq!(
            *err.kind(),
            jsonwebtoken::errors::ErrorKind::ExpiredSignature
        );
    }

    #[test]
    fn an_empty_secret_is_refused() {
        assert!(mint(&SecretString::from(""), "c", RUN_TOKEN_TTL, 0).is_err());
    }

    #[test]
    fn each_customer_gets_its_own_token_and_debug_shows_none() {
        let operator = SecretString::from("op-token-123");
        let secret = SecretString::from("jwt-secret-456");
        let ids = ["c-1", "c-2"];
        let c = Credentials::new(Some(&operator), Some(&secret), ids.into_iter()).unwrap();
        let header = |id: &str| {
            let value = c.customers[id].to_str().unwrap().to_string();
            value.strip_prefix("Bearer ").unwrap().to_string()
        };
        assert_eq!(decode(&header("c-1"), "jwt-secret-456").unwrap().sub, "c-1");
        assert_eq!(decode(&header("c-2"), "jwt-secret-456").unwrap().sub, "c-2");
        let debug = format!("{c:?}");
        assert!(!debug.contains("op-token-123"), "{debug}");
        assert!(!debug.contains(&header("c-1")), "{debug}");
    }

    #[test]
    fn without_a_jwt_secret_customers_send_the_operator_token() {
        let operator = SecretString::from("op");
        let c = Credentials::new(Some(&operator), None, ["c-1"].into_iter()).unwrap();
        let request = c
            .customer(reqwest::Client::new().get("http://127.0.0.1/"), "c-1")
            .build()
            .unwrap();
        assert_eq!(request.headers()[AUTHORIZATION], "Bearer op");
    }
}
