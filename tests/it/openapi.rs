//! The OpenAPI document lists every route the server answers.

use crate::support::{Backend, TestServer, json};

/// Every route the server implements, as (method, path). A route added to the code must be
/// added here and will then fail this test until it is documented.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/health"),
    ("post", "/api/signup"),
    ("post", "/api/login"),
    ("post", "/api/logout"),
    ("get", "/api/account"),
    ("delete", "/api/account"),
    ("get", "/api/usage"),
    ("patch", "/api/profile"),
    ("post", "/api/change-password"),
    ("post", "/api/change-email"),
    ("get", "/api/export"),
    ("get", "/api/api-keys"),
    ("post", "/api/api-keys"),
    ("delete", "/api/api-keys/{key_id}"),
];

#[test]
fn every_route_is_documented_and_answered() {
    let s = TestServer::start(Backend::Sqlite);
    let doc = json(
        s.client()
            .get(format!("{}/api/openapi.json", s.url))
            .send()
            .unwrap(),
        200,
    );
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in ROUTES {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} missing from the OpenAPI document"
        );
        // And the server has the route: an unauthenticated call is never a route 404.
        let concrete = path.replace("{key_id}", "00000000-0000-0000-0000-000000000000");
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = s
            .client()
            .request(m, format!("{}{concrete}", s.url))
            .send()
            .unwrap();
        let body = r.text().unwrap();
        assert!(
            !body.contains("No route for"),
            "{method} {path} is not served"
        );
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        ROUTES.len(),
        "a documented route is missing from ROUTES"
    );
}
