use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_openapi_document_describes_every_endpoint_and_its_errors() {
    let app = spawn_app().await;

    let response = app.get_openapi().await;

    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.unwrap();
    let paths = &document["paths"];
    for (path, method, statuses) in [
        (
            "/api/products/{product_id}",
            "put",
            &["200", "201", "400", "413", "415", "422"][..],
        ),
        (
            "/api/products/{product_id}",
            "get",
            &["200", "404", "422"][..],
        ),
        ("/api/reservations", "get", &["200", "422"][..]),
        ("/health/live", "get", &["200"][..]),
        (
            "/api/admin/dead-letters",
            "get",
            &["200", "401", "403", "422", "503"][..],
        ),
        (
            "/api/admin/dead-letters/replay",
            "post",
            &["200", "400", "401", "403", "415", "422", "503"][..],
        ),
        (
            "/api/admin/dead-letters/{message_id}",
            "delete",
            &["200", "401", "403", "404", "422", "503"][..],
        ),
        ("/health/ready", "get", &["200", "503"][..]),
    ] {
        let responses = &paths[path][method]["responses"];
        for status in statuses {
            assert!(
                responses.get(status).is_some(),
                "{method} {path} does not document {status}"
            );
        }
    }
    assert_eq!(
        document["components"]["securitySchemes"]["operator_token"]["scheme"],
        "bearer"
    );
    assert_eq!(
        paths["/api/admin/dead-letters"]["get"]["security"][0]["operator_token"],
        serde_json::json!([])
    );
    app.stop().await;
}
