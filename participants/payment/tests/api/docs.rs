use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_openapi_document_describes_the_admin_routes_and_their_bearer_token() {
    let app = spawn_app().await;

    let document: Value = app
        .client
        .get(format!("{}/api/docs/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let scheme = &document["components"]["securitySchemes"]["operator_token"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    for (path, method, statuses) in [
        (
            "/api/admin/dead-letters",
            "get",
            &["200", "401", "403", "422", "503"][..],
        ),
        (
            "/api/admin/dead-letters/groups",
            "get",
            &["200", "401", "403", "503"][..],
        ),
        (
            "/api/admin/dead-letters/replay",
            "post",
            &["200", "400", "401", "403", "413", "415", "422", "503"][..],
        ),
        (
            "/api/admin/dead-letters/{message_id}",
            "delete",
            &["200", "401", "403", "404", "422", "503"][..],
        ),
    ] {
        let operation = &document["paths"][path][method];
        assert_eq!(
            operation["security"][0]["operator_token"],
            serde_json::json!([]),
            "{method} {path} is not behind the token"
        );
        for status in statuses {
            let schema = &operation["responses"][status]["content"]["application/json"]["schema"];
            assert!(schema.is_object(), "{method} {path} {status} has no body");
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    schema["$ref"], "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
    }
    for schema in [
        "DeadLetterPage",
        "DeadLetter",
        "ReplayRequest",
        "ReplayReport",
        "RefusedReplay",
    ] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
    let report = &document["components"]["schemas"]["ReplayReport"];
    assert_eq!(
        report["properties"]["refused"]["items"]["$ref"],
        "#/components/schemas/RefusedReplay"
    );
    // The service's own routes are still there.
    assert!(document["paths"]["/api/accounts/{customer_id}"].is_object());
    // Every route that can be rate limited says so; the probes cannot be.
    let limited = &document["paths"]["/api/accounts/{customer_id}"]["put"]["responses"]["429"];
    assert_eq!(
        limited["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    assert!(limited["headers"]["Retry-After"].is_object());
    assert!(document["paths"]["/health/ready"]["get"]["responses"]["429"].is_null());
}
