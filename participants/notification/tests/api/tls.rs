//! SMTP over TLS: aiosmtpd with a certificate of a private CA made here (rcgen), trusted through
//! `notify.smtp_ca_file`; STARTTLS and implicit TLS each deliver, and a server whose CA is not
//! trusted gets nothing.

use std::path::PathBuf;

use uuid::Uuid;

use notification::configuration::SmtpTls;

use crate::helpers::{completed, spawn_app};
use crate::mailer::MailCatcher;

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM files; removed on drop.
struct PrivateCa {
    dir: PathBuf,
}

impl PrivateCa {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "saga mail test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_certificate = params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(params, ca_key);
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server_certificate = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();

        let dir = std::env::temp_dir().join(format!("notify-tls-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_certificate.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), server_certificate.pem()).unwrap();
        std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
        Self { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    async fn server(&self, implicit: bool) -> MailCatcher {
        MailCatcher::start_tls(implicit, &self.file("server.pem"), &self.file("server.key")).await
    }
}

impl Drop for PrivateCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends one confirmation through a server of `ca`, in `mode`, trusting the CA or not;
/// returns the server (to read what it received) and the app.
async fn confirmation_over(
    ca: &PrivateCa,
    mode: SmtpTls,
    trust: bool,
) -> (MailCatcher, crate::helpers::TestApp, Uuid) {
    let smtp = ca.server(mode == SmtpTls::Tls).await;
    let ca_file = trust.then(|| ca.file("ca.pem").to_string_lossy().into_owned());
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
