//! Who may call the payment service, and which bearer tokens prove what. The operator routes
//! make the verdict visible: a customer token that verifies is 403 `forbidden`, one that does
//! not is 401 `unauthorized`, so each token kind is checked end to end through a real service.
//! Keys of an identity provider's JWKS are in `jwks`.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use saga_common::configuration::{AdminSettings, AuthSettings};
use saga_common::testing::{ADMIN_TOKEN, JWT_SECRET, customer_token, sign_hs256, unix_now};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

pub const RSA_PRIVATE: &str = include_str!("../../../../common/tests/fixtures/rsa_private.pem");
pub const RSA_PUBLIC: &str = include_str!("../../../../common/tests/fixtures/rsa_public.pem");
pub const RSA2_PRIVATE: &str = include_str!("../../../../common/tests/fixtures/rsa2_private.pem");
pub const EC_PRIVATE: &str = include_str!("../../../../common/tests/fixtures/ec_private.pem");
pub const EC_PUBLIC: &str = include_str!("../../../../common/tests/fixtures/ec_public.pem");

/// `GET /api/accounts/c-1` with `Authorization: <authorization>` (none when `None`).
async fn get_account(app: &TestApp, authorization: Option<&str>) -> reqwest::Response {
    let mut request = app
        .anonymous
        .get(format!("{}/api/accounts/c-1", app.address));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap()
}

/// The status and error code of a call with `Bearer <token>`.
pub async fn verdict(app: &TestApp, token: &str) -> (StatusCode, String) {
    let response = get_account(app, Some(&format!("Bearer {token}"))).await;
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

pub fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": unix_now() + 600})
}

pub fn sign(algorithm: Algorithm, kid: Option<&str>, private_pem: &str, claims: &Value) -> String {
    let key = match algorithm {
        Algorithm::ES256 => EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
    };
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    use std::fmt::Write;
    // base64url without padding, by hand: three bytes to four characters.
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            let index = ((n >> (18 - 6 * i)) & 63) as usize;
            let _ = out.write_char(char::from(ALPHABET[index]));
        }
    }
    out
}

#[tokio::test]
async fn operator_routes_answer_401_without_credentials_and_403_to_a_customer() {
    let app = spawn_app().await;
    for path in ["/api/accounts/c-1", "/api/payments"] {
        let anonymous = app
            .anonymous
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
        let body: Value = anonymous.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized");

        let customer = app
            .anonymous
            .get(format!("{}{path}", app.address))
            .bearer_auth(customer_token("c-1"))
            .send()
            .await
            .unwrap();
        assert_eq!(customer.status(), StatusCode::FORBIDDEN, "{path}");
        let body: Value = customer.json().await.unwrap();
        assert_eq!(body["error"], "forbidden");
    }
    let put = app
        .anonymous
        .put(format!("{}/api/accounts/c-1", app.address))
        .bearer_auth(customer_token("c-1"))
        .json(&json!({"balance_cents": 1_000_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.status(),
        StatusCode::FORBIDDEN,
        "a customer sets no balance"
    );
    // The probes and the docs stay open.
    for path in ["/health/live", "/health/ready", "/api/docs/openapi.json"] {
        let open = app
            .anonymous
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(open.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn every_kind_of_bad_hs256_token_is_refused_with_401() {
    let app = spawn_app_with(|settings| {
        settings.auth.jwt_audience = Some("shop".into());
        settings.auth.jwt_issuer = Some("https://id.example".into());
    })
    .await;
    let good =
        json!({"sub": "c-1", "exp": unix_now() + 600, "aud": "shop", "iss": "https://id.example"});
    assert_eq!(
        verdict(&app, &sign_hs256(JWT_SECRET, &good)).await,
        (StatusCode::FORBIDDEN, "forbidden".into()),
        "the well-formed token proves a customer"
    );
    let with = |change: Value| {
        let mut claims = good.clone();
        for (key, value) in change.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(key);
            } else {
                claims[key] = value.clone();
            }
        }
        claims
    };
    let none_header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let none_payload = b64(good.to_string().as_bytes());
    let refused = [
        ("alg none", format!("{none_header}.{none_payload}.")),
        (
            "bad signature",
            sign_hs256("another-secret-0123456789-0123456789", &good),
        ),
        (
            "wrong audience",
            sign_hs256(JWT_SECRET, &with(json!({"aud": "elsewhere"}))),
        ),
        (
            "wrong issuer",
            sign_hs256(JWT_SECRET, &with(json!({"iss": "https://evil.example"}))),
        ),
        (
            "expired beyond the leeway",
            sign_hs256(JWT_SECRET, &with(json!({"exp": unix_now() - 120}))),
        ),
        (
            "missing exp",
            sign_hs256(JWT_SECRET, &with(json!({"exp": null}))),
        ),
        (
            "missing sub",
            sign_hs256(JWT_SECRET, &with(json!({"sub": null}))),
        ),
        (
            "control character in sub",
            sign_hs256(JWT_SECRET, &with(json!({"sub": "c\u{0}1"}))),
        ),
        ("malformed", "not.a.jwt".to_owned()),
        ("not a JWT at all", "garbage".to_owned()),
        (
            "HS256 signed with the RSA public key as the secret",
            sign_hs256(RSA_PUBLIC, &good),
        ),
    ];
    for (kind, token) in refused {
        assert_eq!(
            verdict(&app, &token).await,
            (StatusCode::UNAUTHORIZED, "unauthorized".into()),
            "{kind}"
        );
    }
    // Within the leeway (30 s by default), a token just expired is still accepted.
    let just = sign_hs256(JWT_SECRET, &with(json!({"exp": unix_now() - 5})));
    assert_eq!(verdict(&app, &just).await.0, StatusCode::FORBIDDEN);
    // The refusal says why, never the token.
    let expired = sign_hs256(JWT_SECRET, &with(json!({"exp": unix_now() - 120})));
    let response = get_account(&app, Some(&format!("Bearer {expired}"))).await;
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_with_a_public_key_and_hs256_ones_are_then_refused() {
    for (algorithm, private, public) in [
        (Algorithm::RS256, RSA_PRIVATE, RSA_PUBLIC),
        (Algorithm::ES256, EC_PRIVATE, EC_PUBLIC),
    ] {
        let app = spawn_app_with(|settings| {
            settings.auth = AuthSettings {
                operator_token: ADMIN_TOKEN.into(),
                jwt_public_key: Some(public.to_owned()),
                ..AuthSettings::default()
            };
        })
        .await;
        let token = sign(algorithm, None, private, &claims("c-1"));
        assert_eq!(
            verdict(&app, &token).await.0,
            StatusCode::FORBIDDEN,
            "{algorithm:?}"
        );
        // The key's algorithm, not the token's, decides: HS256 with the public key as the
        // secret, or a token of the other asymmetric algorithm, proves nothing.
        let confused = sign_hs256(public, &claims("c-1"));
        assert_eq!(verdict(&app, &confused).await.0, StatusCode::UNAUTHORIZED);
        let other = match algorithm {
            Algorithm::RS256 => sign(Algorithm::ES256, None, EC_PRIVATE, &claims("c-1")),
            _ => sign(Algorithm::RS256, None, RSA_PRIVATE, &claims("c-1")),
        };
        assert_eq!(verdict(&app, &other).await.0, StatusCode::UNAUTHORIZED);
        let forged = sign(Algorithm::RS256, None, RSA2_PRIVATE, &claims("c-1"));
        assert_eq!(verdict(&app, &forged).await.0, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn with_auth_disabled_every_request_is_the_operators() {
    let app = spawn_app_with(|settings| {
        settings.auth = AuthSettings {
            disabled: true,
            ..AuthSettings::default()
        };
    })
    .await;
    assert_eq!(
        get_account(&app, None).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get_account(&app, Some("Bearer whatever")).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_old_admin_token_setting_still_opens_the_operator_routes() {
    let app = spawn_app_with(|settings| {
        settings.auth = AuthSettings::default();
        settings.admin = AdminSettings::with_token("old-style-admin-token-0123");
    })
    .await;
    assert_eq!(
        get_account(&app, Some("Bearer old-style-admin-token-0123"))
            .await
            .status(),
        StatusCode::NOT_FOUND,
        "the alias is the operator token"
    );
    assert_eq!(
        get_account(&app, Some(&format!("Bearer {ADMIN_TOKEN}")))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}
