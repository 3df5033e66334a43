//! The test fleet's credentials: the operator token and JWT secret test services are configured
//! with, customer tokens signed with it, a client that speaks as the operator.

use serde_json::Value;

/// `POST /api/admin/retention/prune` (`?dry_run=true` when `dry_run`) on the service at
/// `address`, with the test token.
pub async fn prune(client: &reqwest::Client, address: &str, dry_run: bool) -> reqwest::Response {
    client
        .post(format!(
            "{address}/api/admin/retention/prune?dry_run={dry_run}"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("POST /api/admin/retention/prune failed")
}

/// The operator token test services are configured with (`auth.operator_token`).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// The same token, by its new name.
pub const OPERATOR_TOKEN: &str = ADMIN_TOKEN;
/// The HS256 secret test services verify customer tokens with (`auth.jwt_secret`).
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789-0123456789";

/// A customer token for `customer_id`, HS256 with [`JWT_SECRET`], valid for an hour.
pub fn customer_token(customer_id: &str) -> String {
    sign_hs256(
        JWT_SECRET,
        &serde_json::json!({"sub": customer_id, "exp": unix_now() + 3_600}),
    )
}

/// A token of `claims` signed HS256 with `secret`.
pub fn sign_hs256(secret: &str, claims: &Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), claims, &key).unwrap()
}

/// Seconds since the epoch, for `exp` and `iat` claims.
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A client that sends the operator token on every request (a request may still set its own
/// `Authorization`); test helpers use it so the routes' guards let them through.
pub fn operator_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {OPERATOR_TOKEN}")).unwrap();
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}
