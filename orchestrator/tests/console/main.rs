//! The operator console in a real browser: Debian's Chromium, headless, driven through
//! chromedriver (`browser`), against the whole fleet in this process (`../api/helpers.rs`).
//! The tests follow the DOM contract of the console's pages (docs/console.md): they sign in,
//! find and open a saga, compensate a stuck one, replay a dead letter, dry-run a bulk retry,
//! resend a notification, check the phone layout, and take the screenshots docs/console.md shows
//! (`SAGA_CONSOLE_SCREENSHOTS=docs/console`). They take turns: one Chromium at a time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

mod browser;

mod dead_letters;
mod layout;
mod notifications;
mod sagas;
mod signin;
