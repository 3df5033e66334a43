//! The console's files, compiled in from `orchestrator/console/`. Served with a strict Content
//! Security Policy (scripts, styles and calls from this origin only, no framing) and
//! `Cache-Control: no-cache`, so a browser revalidates after an upgrade instead of mixing an old
//! script with a new API.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use saga_common::http::error::ApiError;

/// One embedded file: its name under `/console/assets/`, media type and bytes.
struct Asset {
    name: &'static str,
    media_type: &'static str,
    body: &'static str,
}

const INDEX: &str = include_str!("../../console/index.html");

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        media_type: "text/javascript; charset=utf-8",
        body: include_str!("../../console/app.js"),
    },
    Asset {
        name: "core.js",
        media_type: "text/javascript; charset=utf-8",
        body: include_str!("../../console/core.js"),
    },
    Asset {
        name: "overview.js",
        media_type: "text/javascript; charset=utf-8",
        body: include_str!("../../console/overview.js"),
    },
    Asset {
        name: "sagas.js",
        media_type: "text/javascript; charset=utf-8",
        body: include_str!("../../console/sagas.js"),
    },
    Asset {
        name: "saga.js",
        media_type: "text/javascript; charset=utf-8",
        body: include_str!("../../console/saga.js"),
    },
    Asset {
        name: "deadletters.js",
        media_type: "text/javascript; charset=utf-8",
        body: include_str!("../../console/deadletters.js"),
    },
    Asset {
        name: "ops.js",
        media_type: "text/javascript; charset=utf-8",
        body: include_str!("../../console/ops.js"),
    },
    Asset {
        name: "app.css",
        media_type: "text/css; charset=utf-8",
        body: include_str!("../../console/app.css"),
    },
];

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub fn router() -> Router {
    Router::new()
        .route("/console", get(index))
        .route(
            "/console/",
            get(|| async { Redirect::permanent("/console") }),
        )
        .route("/console/assets/{file}", get(asset))
}

async fn index() -> Response {
    serve("text/html; charset=utf-8", INDEX)
}

async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .find(|asset| asset.name == file)
        .map(|asset| serve(asset.media_type, asset.body))
        .ok_or_else(|| ApiError::not_found(format!("no console asset `{file}`")))
}

fn serve(media_type: &'static str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
