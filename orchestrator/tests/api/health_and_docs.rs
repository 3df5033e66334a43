use reqwest::StatusCode;
use serde_json::Value;

use saga_common::testing::{PATIENCE, drop_database, eventually};

use crate::helpers::spawn_fleet;

#[tokio::test]
async fn every_service_is_live_and_ready_with_its_dependencies_named() {
    let fleet = spawn_fleet().await;
    for service in [&fleet.orchestrator, &fleet.payment, &fleet.inventory] {
        let live = fleet.get(format!("{}/health/live", service.base)).await;
        assert_eq!(live.status(), StatusCode::OK);
        let ready = fleet.get(format!("{}/health/ready", service.base)).await;
        assert_eq!(ready.status(), StatusCode::OK);
        let report: Value = ready.json().await.unwrap();
        assert_eq!(report["status"], "ok");
        for check in ["database", "rabbitmq", "consumers"] {
            assert_eq!(report["checks"][check], "up", "{check}");
        }
    }
}

async fn wait_unready(fleet: &crate::helpers::TestFleet, base: &str, down: &str) -> Value {
    let url = format!("{base}/health/ready");
    eventually(
        &format!("readiness to report {down} down"),
        PATIENCE,
        || async {
            let response = fleet.get(url.clone()).await;
            if response.status() != StatusCode::SERVICE_UNAVAILABLE {
                return None;
            }
            let report: Value = response.json().await.ok()?;
            (report["checks"][down] == "down").then_some(report)
        },
    )
    .await
}

#[tokio::test]
async fn readiness_is_503_naming_rabbitmq_when_the_broker_connection_is_gone() {
    let fleet = spawn_fleet().await;
    // Deleting the vhost makes the broker close every connection into it.
    fleet.vhost.delete().await;
    for service in [&fleet.orchestrator, &fleet.payment, &fleet.inventory] {
        let report = wait_unready(&fleet, &service.base, "rabbitmq").await;
        assert_eq!(report["status"], "unavailable");
        assert_eq!(report["checks"]["consumers"], "down");
        assert_eq!(report["checks"]["database"], "up");
    }
    // Liveness is about the process, not its dependencies.
    let live = fleet
        .get(format!("{}/health/live", fleet.orchestrator.base))
        .await;
    assert_eq!(live.status(), StatusCode::OK);
}

#[tokio::test]
async fn readiness_is_503_naming_the_database_when_it_is_gone() {
    let fleet = spawn_fleet().await;
    drop_database(&fleet.payment.db_url).await;
    let report = wait_unready(&fleet, &fleet.payment.base, "database").await;
    assert_eq!(report["checks"]["rabbitmq"], "up");
    // The other services are unaffected.
    let ready = fleet
        .get(format!("{}/health/ready", fleet.orchestrator.base))
        .await;
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test]
async fn swagger_ui_is_served_and_the_spec_documents_every_body() {
    let fleet = spawn_fleet().await;
    for (service, expected_paths) in [
        (
            &fleet.orchestrator,
            vec![
                "/api/orders",
                "/api/orders/{order_id}",
                "/api/orders/{order_id}/timeline",
                "/api/console/overview",
                "/api/console/services/{service}/{path}",
                "/api/admin/dead-letters/groups",
            ],
        ),
        (
            &fleet.payment,
            vec!["/api/accounts/{customer_id}", "/api/payments"],
        ),
        (
            &fleet.inventory,
            vec!["/api/products/{product_id}", "/api/reservations"],
        ),
    ] {
        let ui = fleet.get(format!("{}/api/docs/", service.base)).await;
        assert_eq!(ui.status(), StatusCode::OK);
        assert!(
            ui.text().await.unwrap().contains("swagger"),
            "Swagger UI page"
        );

        let spec: Value = fleet
            .get(format!("{}/api/docs/openapi.json", service.base))
            .await
            .json()
            .await
            .unwrap();
        let paths = spec["paths"].as_object().unwrap();
        for path in expected_paths
            .iter()
            .chain(&["/health/live", "/health/ready"])
        {
            assert!(paths.contains_key(*path), "{path} is not documented");
        }
        for (path, operations) in paths {
            for (method, operation) in operations.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                assert!(
                    responses
                        .keys()
                        .any(|s| s.starts_with('4') || path.starts_with("/health")),
                    "{method} {path} documents no error"
                );
                for (status, response) in responses {
                    assert!(
                        response["content"]["application/json"]["schema"].is_object(),
                        "{method} {path} {status} has no body schema"
                    );
                }
            }
        }
    }
}
