use saga_common::configuration::AmqpSettings;
use saga_common::messaging::dead_letters::DeadLetterQueue;
use saga_common::messaging::inbox::DedupWindow;
use saga_common::testing::{PATIENCE, eventually, free_port};

use crate::helpers::{OK, QUEUE, SERVICE, retry, start_with};

/// An address nothing listens on, with a password that must not show anywhere.
fn nothing_listening() -> String {
    format!("amqp://guest:n0-such-pa55@127.0.0.1:{}/%2f", free_port())
}

#[tokio::test]
async fn a_first_address_with_nothing_listening_is_passed_over_for_the_next() {
    // `urls` = [nothing listening, the test vhost]; the harness waits until the consumer runs.
    let harness = start_with(
        retry(3, 100),
        AmqpSettings {
            urls: vec![nothing_listening().into()],
            ..AmqpSettings::default()
        },
    )
    .await;

    let message = harness.send(OK).await;
    eventually("the message applied", PATIENCE, || async {
        harness
            .calls(message.message_id)
            .iter()
            .any(|c| c.succeeded)
            .then_some(())
    })
    .await;

    // The dead-letter admin opens its own connection: the first address that answers.
    let admin = DeadLetterQueue::new(SERVICE, nothing_listening(), QUEUE, DedupWindow::default())
        .with_addresses(vec![
            nothing_listening().into(),
            harness.vhost.amqp_url.clone().into(),
        ]);
    let page = admin.list(0, 10).await.unwrap();
    assert_eq!(page.total, 0, "the DLQ is reached, and empty");
}
