//! The mail outbox's sender: sends the `PENDING` rows of `notifications` after the transaction
//! that wrote them committed. Woken by the consumer once a batch with rows to send commits (and
//! by a resend), and every `notify.sweep_interval_ms` regardless, which finds the retries whose
//! time has come and the rows an instance committed but never sent before it crashed.
//!
//! Each round claims due rows ([`store::claim`]: `FOR UPDATE SKIP LOCKED`, attempts counted, a
//! lease instead of a held transaction), renders and sends each, and marks it `SENT`, for a
//! retry after an exponential backoff, or `FAILED` after `notify.max_attempts` or an error no
//! retry can mend.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::Notify;

use saga_common::service::{Task, TaskError};
use saga_common::shutdown::Shutdown;

use crate::configuration::NotifySettings;
use crate::facts::{self, Sending};
use crate::mail::{self, MailError, Mailer, Ties};
use crate::notifications::store::{self, Attempt, Due};

pub struct Sender {
    pub db: DatabaseConnection,
    pub mailer: Mailer,
    pub settings: NotifySettings,
    pub wake: Arc<Notify>,
}

impl Sender {
    /// The sender as a front-tier task: it stops with the HTTP server, between two mails.
    pub fn task(self) -> Task {
        Task::new("mail", move |stop| async move {
            self.serve(stop).await;
            Ok::<(), TaskError>(())
        })
    }

    async fn serve(&self, stop: Shutdown) {
        let sweep = Duration::from_millis(self.settings.sweep_interval_ms);
        loop {
            // Rounds until one finds fewer rows than it may claim: the backlog is sent.
            loop {
                match self.round(&stop).await {
                    Ok(claimed) if claimed >= self.settings.batch_size && !stop.is_triggered() => {}
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the notifications to send; retrying at the next sweep");
                        break;
                    }
                }
            }
            tokio::select! {
                () = stop.wait() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sweep) => {}
            }
        }
    }

    /// One claim and the sends of what it claimed; returns how many rows it claimed.
    async fn round(&self, stop: &Shutdown) -> Result<i64, sea_orm::DbErr> {
        let due = store::claim(&self.db, self.settings.batch_size, self.lease()).await?;
        let claimed = i64::try_from(due.len()).unwrap_or(i64::MAX);
        for row in due {
            // A row claimed but not tried is taken again once its lease ends.
            if stop.is_triggered() {
                break;
            }
            let attempt = self.attempt(&row).await;
            store::mark(&self.db, row.id, &attempt).await?;
            facts::attempted(
                &Sending {
                    kind: row.kind,
                    order_id: row.order_id,
                    product_id: row.product_id.as_deref(),
                    correlation_id: &row.correlation_id,
                    attempts: row.attempts,
                },
                &attempt,
            );
        }
        Ok(claimed)
    }

    /// How long a claimed row is left alone: longer than the batch's SMTP conversations can
    /// take, so a row is never claimed again while it is being sent.
    fn lease(&self) -> Duration {
        let per_mail = Duration::from_millis(self.settings.smtp_timeout_ms);
        let batch = u32::try_from(self.settings.batch_size).unwrap_or(u32::MAX);
        per_mail.saturating_mul(batch.saturating_add(1))
    }

    async fn attempt(&self, row: &Due) -> Attempt {
        match self.send(row).await {
            Ok(()) => Attempt::Sent,
            Err(error) if error.is_transient() && row.attempts < self.settings.max_attempts => {
                Attempt::Retry {
                    error: error.to_string(),
                    retry_in: self.settings.backoff(row.attempts),
                }
            }
            Err(error) => Attempt::Failed {
                error: error.to_string(),
            },
        }
    }

    async fn send(&self, row: &Due) -> Result<(), MailError> {
        let to = row.recipient.as_deref().ok_or(MailError::NoRecipient)?;
        let rendered = mail::render(row.kind, &row.content)?;
        let ties = Ties {
            notification_id: row.id,
            order_id: row.order_id,
            product_id: row.product_id.clone(),
            correlation_id: row.correlation_id.clone(),
        };
        self.mailer.send(to, rendered, &ties).await
    }
}
