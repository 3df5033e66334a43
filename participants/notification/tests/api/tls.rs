//! SMTP over TLS: aiosmtpd with a certificate of a private CA (`testing::PrivateCa`), trusted through
//! `notify.smtp_ca_file`; STARTTLS and implicit TLS each deliver, and a server whose CA is not
//! trusted gets nothing.

use std::path::Path;

use uuid::Uuid;

use notification::configuration::SmtpTls;
use saga_common::testing::PrivateCa;

use crate::helpers::{completed, spawn_app};
use saga_common::testing::MailCatcher;

async fn server(ca: &PrivateCa, implicit: bool) -> MailCatcher {
    MailCatcher::start_tls(
        implicit,
        Path::new(&ca.server_cert_file()),
        Path::new(&ca.server_key_file()),
    )
    .await
}

/// Sends one confirmation through a server of `ca`, in `mode`, trusting the CA or not;
/// returns the server (to read what it received) and the app.
async fn confirmation_over(
    ca: &PrivateCa,
    mode: SmtpTls,
    trust: bool,
) -> (MailCatcher, crate::helpers::TestApp, Uuid) {
    let smtp = server(ca, mode == SmtpTls::Tls).await;
    let ca_file = trust.then(|| ca.ca_file());
    let app = spawn_app(smtp.port, |settings| {
        settings.notify.smtp_tls = mode;
        settings.notify.smtp_ca_file = ca_file;
    })
    .await;
    app.give_address("c-1", Some("ada@example.com")).await;
    let (order_id, event) = completed("c-1");
    app.publish(&event).await;
    (smtp, app, order_id)
}

#[tokio::test]
async fn a_confirmation_goes_out_over_starttls_to_a_server_of_a_private_ca() {
    let ca = PrivateCa::new();
    let (smtp, app, order_id) = confirmation_over(&ca, SmtpTls::Starttls, true).await;
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0].header("X-Order-Id"), Some(order_id.to_string()));
    app.wait_status(&format!("?order_id={order_id}"), "SENT")
        .await;
}

#[tokio::test]
async fn a_confirmation_goes_out_over_implicit_tls() {
    let ca = PrivateCa::new();
    let (smtp, app, order_id) = confirmation_over(&ca, SmtpTls::Tls, true).await;
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0].header("X-Order-Id"), Some(order_id.to_string()));
    app.wait_status(&format!("?order_id={order_id}"), "SENT")
        .await;
}

#[tokio::test]
async fn a_server_whose_certificate_is_not_trusted_gets_nothing() {
    let ca = PrivateCa::new();
    let (smtp, app, order_id) = confirmation_over(&ca, SmtpTls::Starttls, false).await;
    let row = app
        .wait_status(&format!("?order_id={order_id}"), "FAILED")
        .await;
    let error = row["last_error"].as_str().unwrap_or_default();
    assert!(!error.is_empty(), "{row}");
    assert!(
        smtp.mails().is_empty(),
        "nothing is sent to an untrusted server"
    );
}
