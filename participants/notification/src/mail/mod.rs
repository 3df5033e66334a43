//! What a notification says and how it leaves: the templates (plain text and HTML, embedded in
//! the binary, rendered with minijinja) and the SMTP transport (lettre).
//!
//! - [`render`]: a notification's subject and both bodies, from the event it was written for.
//! - [`Mailer`]: the SMTP client built from `notify` settings; [`Mailer::send`] one message,
//!   multipart text + HTML, with the order and correlation ids in `X-` headers.
//! - [`money`]: cents as the mail shows them (`1250` → `12.50`).

use std::sync::LazyLock;
use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use minijinja::Environment;
use secrecy::ExposeSecret;
use serde::Serialize;
use uuid::Uuid;

use saga_common::contracts::{LowStock, OrderCompleted, OrderFailed, OrderFailureReason};

use crate::configuration::{NotifySettings, SmtpTls};
use crate::notifications::Kind;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("the stored event does not fit its kind: {0}")]
    Content(#[from] serde_json::Error),
    #[error("template: {0}")]
    Template(#[from] minijinja::Error),
    #[error("address `{address}`: {source}")]
    Address {
        address: String,
        source: lettre::address::AddressError,
    },
    #[error("no recipient")]
    NoRecipient,
    #[error("message: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("smtp: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

impl MailError {
    /// Whether trying again can help: a connection refused, a timeout, a 4xx answer can pass
    /// later; a bad address, a broken template or a 5xx answer never will.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Smtp(error) => !error.is_permanent(),
            _ => false,
        }
    }
}

/// A notification's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // Names ending in .html are HTML-escaped (minijinja's default), .txt are not.
    for (name, source) in [
        (
            "order_confirmed.txt",
            include_str!("templates/order_confirmed.txt"),
        ),
        (
            "order_confirmed.html",
            include_str!("templates/order_confirmed.html"),
        ),
        (
            "order_failed.txt",
            include_str!("templates/order_failed.txt"),
        ),
        (
            "order_failed.html",
            include_str!("templates/order_failed.html"),
        ),
        ("low_stock.txt", include_str!("templates/low_stock.txt")),
        ("low_stock.html", include_str!("templates/low_stock.html")),
    ] {
        // A template that does not parse fails its render, and the unit tests render them all.
        if let Err(error) = env.add_template(name, source) {
            tracing::error!(%error, template = name, "a mail template does not parse");
        }
    }
    env
});

#[derive(Serialize)]
struct LineView {
    product_id: String,
    quantity: i32,
    unit_price: String,
    line_total: String,
}

/// The subject and both bodies of a notification of `kind` about the event `content`.
pub fn render(kind: Kind, content: &serde_json::Value) -> Result<Rendered, MailError> {
    let (subject, name, context) = match kind {
        Kind::OrderConfirmed => {
            let order: OrderCompleted = serde_json::from_value(content.clone())?;
            let lines: Vec<LineView> = order
                .lines
                .iter()
                .map(|line| LineView {
                    product_id: line.product_id.clone(),
                    quantity: line.quantity,
                    unit_price: money(line.unit_price_cents),
                    line_total: money(
                        i64::from(line.quantity).saturating_mul(line.unit_price_cents),
                    ),
                })
                .collect();
            (
                format!("Your order {} is confirmed", order.order_id),
                "order_confirmed",
                minijinja::context! {
                    order_id => order.order_id.to_string(),
                    lines => lines,
                    total => money(order.total_cents),
                },
            )
        }
        Kind::OrderFailed => {
            let order: OrderFailed = serde_json::from_value(content.clone())?;
            (
                format!("Your order {} could not be completed", order.order_id),
                "order_failed",
                minijinja::context! {
                    order_id => order.order_id.to_string(),
                    why => why(order.reason),
                },
            )
        }
        Kind::LowStock => {
            let low: LowStock = serde_json::from_value(content.clone())?;
            (
                format!("Low stock: {} ({} left)", low.product_id, low.available),
                "low_stock",
                minijinja::context! {
                    product_id => low.product_id,
                    available => low.available,
                    threshold => low.threshold,
                },
            )
        }
    };
    let text = TEMPLATES
        .get_template(&format!("{name}.txt"))?
        .render(&context)?;
    let html = TEMPLATES
        .get_template(&format!("{name}.html"))?
        .render(&context)?;
    Ok(Rendered {
        subject,
        text,
        html,
    })
}

/// Why an order failed, in words a customer reads.
pub fn why(reason: OrderFailureReason) -> &'static str {
    match reason {
        OrderFailureReason::PaymentDeclined => {
            "Your payment was declined, so nothing was charged. Please check your account \
             balance and order again."
        }
        OrderFailureReason::OutOfStock => {
            "An item you ordered is out of stock, and the charge was refunded."
        }
        OrderFailureReason::TimedOut => {
            "The order timed out before it could be completed; anything charged has been \
             refunded."
        }
    }
}

/// Cents as money: `1250` → `12.50`, `123456789` → `1,234,567.89`, `-150` → `-1.50`.
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    let units = (cents / 100).to_string();
    let mut grouped = String::with_capacity(units.len() + units.len() / 3);
    for (i, digit) in units.chars().enumerate() {
        if i > 0 && (units.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{sign}{grouped}.{:02}", cents % 100)
}

/// The headers that tie a mail to what caused it.
#[derive(Debug, Clone, Default)]
pub struct Ties {
    pub notification_id: Uuid,
    pub order_id: Option<Uuid>,
    pub product_id: Option<String>,
    pub correlation_id: String,
}

const NOTIFICATION_ID: HeaderName = HeaderName::new_from_ascii_str("X-Notification-Id");
const ORDER_ID: HeaderName = HeaderName::new_from_ascii_str("X-Order-Id");
const PRODUCT_ID: HeaderName = HeaderName::new_from_ascii_str("X-Product-Id");
const CORRELATION_ID: HeaderName = HeaderName::new_from_ascii_str("X-Correlation-Id");

/// The SMTP client: one per service, its connections pooled.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// The client `settings` describe (validated before). Connects only when it first sends.
    pub fn new(settings: &NotifySettings) -> Result<Self, String> {
        let host = settings.smtp_host.as_str();
        let builder = match settings.smtp_tls {
            // Plain SMTP: the operator chose it (the local mail catcher, a relay on loopback).
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            SmtpTls::Starttls | SmtpTls::Tls => {
                let parameters = tls_parameters(host, settings.smtp_ca_file.as_deref())?;
                let tls = if settings.smtp_tls == SmtpTls::Tls {
                    Tls::Wrapper(parameters)
                } else {
                    Tls::Required(parameters)
                };
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).tls(tls)
            }
        };
        let mut builder = builder
            .port(settings.smtp_port)
            .timeout(Some(Duration::from_millis(settings.smtp_timeout_ms)));
        if let (Some(user), Some(password)) = (&settings.smtp_username, &settings.smtp_password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        let from = settings
            .from
            .parse()
            .map_err(|e| format!("notify.from: {e}"))?;
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    /// Builds the message (multipart: text, then HTML) and hands it to the SMTP server.
    pub async fn send(&self, to: &str, rendered: Rendered, ties: &Ties) -> Result<(), MailError> {
        let message = self.compose(to, rendered, ties)?;
        self.transport.send(message).await?;
        Ok(())
    }

    fn compose(&self, to: &str, rendered: Rendered, ties: &Ties) -> Result<Message, MailError> {
        let to: Mailbox = to.parse().map_err(|source| MailError::Address {
            address: to.to_owned(),
            source,
        })?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject)
            .raw_header(HeaderValue::new(
                NOTIFICATION_ID,
                ties.notification_id.to_string(),
            ))
            .raw_header(HeaderValue::new(
                CORRELATION_ID,
                ties.correlation_id.clone(),
            ));
        if let Some(order_id) = ties.order_id {
            builder = builder.raw_header(HeaderValue::new(ORDER_ID, order_id.to_string()));
        }
        if let Some(product_id) = &ties.product_id {
            builder = builder.raw_header(HeaderValue::new(PRODUCT_ID, product_id.clone()));
        }
        Ok(builder.multipart(MultiPart::alternative_plain_html(
            rendered.text,
            rendered.html,
        ))?)
    }
}

/// TLS to `host`, trusting the system's roots and, when given, the CAs of `ca_file` (PEM).
fn tls_parameters(host: &str, ca_file: Option<&str>) -> Result<TlsParameters, String> {
    let mut parameters = TlsParameters::builder(host.to_owned());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("notify.smtp_ca_file {path}: {e}"))?;
        let ca =
            Certificate::from_pem(&pem).map_err(|e| format!("notify.smtp_ca_file {path}: {e}"))?;
        parameters = parameters.add_root_certificate(ca);
    }
    parameters
        .build()
        .map_err(|e| format!("notify: TLS for {host}: {e}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn money_has_two_decimals_and_groups_thousands() {
        assert_eq!(money(1250), "12.50");
        assert_eq!(money(5), "0.05");
        assert_eq!(money(0), "0.00");
        assert_eq!(money(-150), "-1.50");
        assert_eq!(money(123_456_789), "1,234,567.89");
        assert_eq!(money(100_000), "1,000.00");
        assert_eq!(money(i64::MIN), "-92,233,720,368,547,758.08");
    }

    #[test]
    fn a_confirmation_lists_lines_quantities_prices_and_the_total_in_both_parts() {
        let order_id = Uuid::now_v7();
        let content = json!({
            "order_id": order_id, "customer_id": "c-1", "total_cents": 3550,
            "lines": [
                {"product_id": "p-<1>", "quantity": 2, "unit_price_cents": 1250},
                {"product_id": "p-2", "quantity": 1, "unit_price_cents": 1050},
            ],
        });
        let mail = render(Kind::OrderConfirmed, &content).unwrap();
        assert_eq!(mail.subject, format!("Your order {order_id} is confirmed"));
        assert!(
            mail.text.contains("2 x p-<1> at 12.50 = 25.00"),
            "{}",
            mail.text
        );
        assert!(mail.text.contains("1 x p-2 at 10.50 = 10.50"));
        assert!(mail.text.contains("Total: 35.50"));
        assert!(
            mail.html.contains("<td>p-&lt;1&gt;</td><td>2</td>"),
            "{}",
            mail.html
        );
        assert!(mail.html.contains("<th>35.50</th>"));
    }

    #[test]
    fn a_failure_notice_says_why_in_words() {
        for (reason, words) in [
            ("payment_declined", "payment was declined"),
            ("out_of_stock", "out of stock, and the charge was refunded"),
            ("timed_out", "timed out"),
        ] {
            let content = json!({"order_id": Uuid::now_v7(), "customer_id": "c", "reason": reason});
            let mail = render(Kind::OrderFailed, &content).unwrap();
            assert!(mail.text.contains(words), "{reason}: {}", mail.text);
            assert!(mail.html.contains(words), "{reason}: {}", mail.html);
        }
    }

    #[test]
    fn a_low_stock_alert_names_the_product_and_the_levels() {
        let content = json!({"product_id": "p-9", "available": 4, "threshold": 5});
        let mail = render(Kind::LowStock, &content).unwrap();
        assert_eq!(mail.subject, "Low stock: p-9 (4 left)");
        assert!(mail.text.contains("Available: 4"));
        assert!(mail.text.contains("Threshold: 5"));
        assert!(mail.html.contains("<td>4</td>"));
    }

    #[test]
    fn content_that_does_not_fit_its_kind_is_a_permanent_error() {
        let error = render(Kind::LowStock, &json!({"order_id": 1})).unwrap_err();
        assert!(matches!(error, MailError::Content(_)));
        assert!(!error.is_transient());
    }

    // The transport's pool lives on a runtime.
    #[tokio::test]
    async fn a_message_carries_the_ids_and_both_parts() {
        let mailer = Mailer::new(&NotifySettings::default()).unwrap();
        let order_id = Uuid::now_v7();
        let ties = Ties {
            notification_id: Uuid::now_v7(),
            order_id: Some(order_id),
            product_id: None,
            correlation_id: "req-1".into(),
        };
        let rendered = Rendered {
            subject: "s".into(),
            text: "plain".into(),
            html: "<p>html</p>".into(),
        };
        let message = mailer
            .compose("ada@example.com", rendered.clone(), &ties)
            .unwrap();
        let raw = String::from_utf8(message.formatted()).unwrap();
        assert!(raw.contains(&format!("X-Order-Id: {order_id}")), "{raw}");
        assert!(raw.contains("X-Correlation-Id: req-1"));
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain") && raw.contains("text/html"));
        assert!(matches!(
            mailer.compose("not an address", rendered, &ties),
            Err(MailError::Address { .. })
        ));
    }
}
