//! Hostile and malformed requests: always a JSON error with the right status, never a 500.

use reqwest::Method;
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{Backend, TestServer, json};

fn malformed_bodies_are_422_naming_the_problem(b: Backend) {
    let s = TestServer::start(b);
    let (_, key) = s.signup("bad@example.org");
    let raw = |body: &str| {
        s.req(Method::POST, "/api/api-keys", &key)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap()
    };
    let v = json(raw("{not json"), 422);
    assert_eq!(v["code"], "validation_error");
    let v = json(raw("{}"), 422);
    assert!(v["detail"].as_str().unwrap().contains("name"), "{v}");
    let v = json(raw(r#"{"name": 12}"#), 422);
    assert!(
        v["detail"].as_str().unwrap().contains("invalid type"),
        "{v}"
    );
    let v = json(raw(r#"{"name": "x", "surprise": 1}"#), 422);
    assert!(v["detail"].as_str().unwrap().contains("surprise"), "{v}");
    json(raw(r#"{"name": ""}"#), 422);
    json(raw(&format!(r#"{{"name": "{}"}}"#, "n".repeat(101))), 422);
    let no_type = s
        .req(Method::POST, "/api/api-keys", &key)
        .body(r#"{"name":"x"}"#)
        .send()
        .unwrap();
    json(no_type, 422);
    let huge = format!(r#"{{"name": "{}"}}"#, "x".repeat(300 * 1024));
    let v = json(raw(&huge), 422);
    assert!(v["detail"].as_str().unwrap().contains("larger"), "{v}");
}

fn signup_rejects_bad_addresses_and_passwords(b: Backend) {
    let s = TestServer::start(b);
    let post = |body: Value| {
        s.client()
            .post(format!("{}/api/signup", s.url))
            .json(&body)
            .send()
            .unwrap()
    };
    for email in [
        "",
        "no-at-sign",
        "@example.org",
        "a@",
        "a b@example.org",
        "a@b@c",
    ] {
        json(
            post(json!({"email": email, "password": "password123"})),
            422,
        );
    }
    json(
        post(json!({"email": "ok@example.org", "password": "short"})),
        422,
    );
    json(post(json!({"email": "ok@example.org"})), 422);
    json(
        post(json!({"email": "ok@example.org", "password": "password123"})),
        201,
    );
    let dup = post(json!({"email": "OK@example.org", "password": "password123"}));
    assert_eq!(json(dup, 409)["code"], "conflict");
}

fn unknown_routes_are_json_404_and_trailing_slashes_work(b: Backend) {
    let s = TestServer::start(b);
    let (_, key) = s.signup("slash@example.org");
    let v = json(s.get("/api/nope", &key), 404);
    assert_eq!(v["code"], "not_found");
    json(s.get("/api/account/", &key), 200);
    json(s.get("/api/api-keys/", &key), 200);
    let path = s.get("/api/api-keys/%ZZ", &key);
    assert!(path.status().is_client_error());
}

fn wrong_methods_and_odd_headers_never_500(b: Backend) {
    let s = TestServer::start(b);
    let (_, key) = s.signup("odd@example.org");
    for (m, p) in [
        (Method::PUT, "/api/account"),
        (Method::DELETE, "/api/api-keys"),
        (Method::GET, "/api/signup"),
        (Method::PATCH, "/api/api-keys/x"),
    ] {
        let r = s.req(m.clone(), p, &key).send().unwrap();
        assert!(r.status().is_client_error(), "{m} {p}: {}", r.status());
    }
    let r = s
        .client()
        .get(format!("{}/api/account", s.url))
        .header("Authorization", "Bearer")
        .send()
        .unwrap();
    json(r, 401);
    let r = s
        .client()
        .get(format!("{}/api/account", s.url))
        .header("Cookie", "chamade_session=garbage")
        .send()
        .unwrap();
    json(r, 401);
}

fn a_bad_key_is_401_whatever_the_body(b: Backend) {
    let s = TestServer::start(b);
    let wrong = format!("chmd_{}", "B".repeat(43));
    for (method, path) in [
        (Method::POST, "/api/api-keys"),
        (Method::PATCH, "/api/profile"),
        (Method::POST, "/api/sip/trunk"),
        (Method::DELETE, "/api/account"),
    ] {
        for body in ["{not json", r#"{"unexpected": true}"#, ""] {
            let r = s
                .req(method.clone(), path, &wrong)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .unwrap();
            assert_eq!(
                json(r, 401)["code"],
                "unauthorized",
                "{method} {path} {body:?}"
            );
        }
        let anonymous = s
            .client()
            .request(method.clone(), format!("{}{path}", s.url))
            .body("{not json")
            .send()
            .unwrap();
        json(anonymous, 401);
    }
}

on_both_backends!(
    nul_and_control_characters_are_422_not_500,
    a_bad_key_is_401_whatever_the_body,
    malformed_bodies_are_422_naming_the_problem,
    signup_rejects_bad_addresses_and_passwords,
    unknown_routes_are_json_404_and_trailing_slashes_work,
    wrong_methods_and_odd_headers_never_500,
);

fn nul_and_control_characters_are_422_not_500(b: Backend) {
    let s = TestServer::start(b);
    let (_, key) = s.signup("nul@example.org");
    for (path, body) in [
        ("/api/api-keys", json!({"name": "bad\u{0}name"})),
        (
            "/api/call",
            json!({"platform": "web", "agent_name": "a\u{0007}b"}),
        ),
    ] {
        let v = json(s.post(path, &key, &body), 422);
        assert_eq!(v["code"], "validation_error", "{path}");
    }
    let r = s
        .req(Method::PATCH, "/api/profile", &key)
        .json(&json!({"name": "x\u{0}"}))
        .send()
        .unwrap();
    json(r, 422);
    // Wherever else a NUL reaches PostgreSQL, it is the client's error, not a 500.
    let r = s.post(
        "/api/change-email",
        &key,
        &json!({"new_email": "a\u{0}b@example.org"}),
    );
    assert!(r.status().is_client_error(), "{}", r.status());
}
