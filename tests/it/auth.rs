//! Who may call: keys in every accepted place, sessions, and refusals.

use reqwest::Method;
use serde_json::json;

use crate::on_both_backends;
use crate::support::{Backend, TestServer, json};

fn missing_and_wrong_keys_are_401_with_the_spec_message(b: Backend) {
    let s = TestServer::start(b);
    let r = s
        .client()
        .get(format!("{}/api/account", s.url))
        .send()
        .unwrap();
    let body = json(r, 401);
    assert_eq!(body["detail"], "Invalid or missing API key");
    assert_eq!(body["code"], "unauthorized");
    let wrong = format!("chmd_{}", "A".repeat(43));
    json(s.get("/api/account", &wrong), 401);
    json(s.get("/api/account", ""), 401);
}

fn a_key_works_in_the_header_as_bearer_and_in_the_query(b: Backend) {
    let s = TestServer::start(b);
    let (user_id, key) = s.signup("ada@example.org");
    assert_eq!(json(s.get("/api/account", &key), 200)["user_id"], user_id);
    let bearer = s
        .client()
        .get(format!("{}/api/account", s.url))
        .header("Authorization", format!("Bearer {key}"))
        .send()
        .unwrap();
    assert_eq!(json(bearer, 200)["user_id"], user_id);
    let query = s
        .client()
        .get(format!("{}/api/account?api_key={key}", s.url))
        .send()
        .unwrap();
    assert_eq!(json(query, 200)["user_id"], user_id);
}

fn login_sets_a_session_cookie_and_logout_ends_it(b: Backend) {
    let s = TestServer::start(b);
    let (user_id, _) = s.signup("grace@example.org");
    let browser = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let bad = browser
        .post(format!("{}/api/login", s.url))
        .json(&json!({"email": "grace@example.org", "password": "nope-nope"}))
        .send()
        .unwrap();
    json(bad, 401);
    let unknown = browser
        .post(format!("{}/api/login", s.url))
        .json(&json!({"email": "nobody@example.org", "password": "password123"}))
        .send()
        .unwrap();
    json(unknown, 401);
    let ok = browser
        .post(format!("{}/api/login", s.url))
        .json(&json!({"email": "Grace@Example.org", "password": "password123"}))
        .send()
        .unwrap();
    let cookie = ok
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    json(ok, 200);
    let me = browser
        .get(format!("{}/api/account", s.url))
        .send()
        .unwrap();
    assert_eq!(json(me, 200)["user_id"], user_id);
    let out = browser
        .post(format!("{}/api/logout", s.url))
        .send()
        .unwrap();
    assert_eq!(out.status(), 204);
    let after = browser
        .get(format!("{}/api/account", s.url))
        .send()
        .unwrap();
    json(after, 401);
}

fn revoked_keys_stop_working_and_use_is_tracked(b: Backend) {
    let s = TestServer::start(b);
    let (_, key) = s.signup("lin@example.org");
    let created = json(s.post("/api/api-keys", &key, &json!({"name": "bot"})), 201);
    let second = created["key"].as_str().unwrap().to_string();
    assert!(second.starts_with("chmd_"));
    let list = json(s.get("/api/api-keys", &second), 200);
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let listed = keys
        .iter()
        .find(|k| k["key_id"] == created["key_id"])
        .unwrap();
    assert_eq!(listed["prefix"], created["prefix"]);
    assert!(
        listed.get("key").is_none(),
        "a listed key never shows the key"
    );
    assert!(
        !list.to_string().contains(&second[13..]),
        "no part of the secret is listed"
    );
    assert!(listed["last_used_at"].is_string(), "use is recorded");
    let id = created["key_id"].as_str().unwrap();
    let del = s
        .req(Method::DELETE, &format!("/api/api-keys/{id}"), &key)
        .send()
        .unwrap();
    assert_eq!(del.status(), 204);
    json(s.get("/api/account", &second), 401);
    json(s.get("/api/account", &key), 200);
}

fn another_users_key_cannot_be_revoked_or_seen(b: Backend) {
    let s = TestServer::start(b);
    let (_, alice) = s.signup("alice@example.org");
    let (_, bob) = s.signup("bob@example.org");
    let bob_keys = json(s.get("/api/api-keys", &bob), 200);
    let bob_key_id = bob_keys["keys"][0]["key_id"].as_str().unwrap().to_string();
    let alice_keys = json(s.get("/api/api-keys", &alice), 200);
    assert!(!alice_keys.to_string().contains(&bob_key_id));
    let r = s
        .req(
            Method::DELETE,
            &format!("/api/api-keys/{bob_key_id}"),
            &alice,
        )
        .send()
        .unwrap();
    assert_eq!(json(r, 404)["code"], "not_found");
    json(s.get("/api/account", &bob), 200);
}

fn signup_can_be_disabled(b: Backend) {
    let s = TestServer::start_with(b, |c| c.signup = false);
    let r = s
        .client()
        .post(format!("{}/api/signup", s.url))
        .json(&json!({"email": "x@example.org", "password": "password123"}))
        .send()
        .unwrap();
    assert_eq!(json(r, 403)["code"], "forbidden");
}

on_both_backends!(
    missing_and_wrong_keys_are_401_with_the_spec_message,
    a_key_works_in_the_header_as_bearer_and_in_the_query,
    login_sets_a_session_cookie_and_logout_ends_it,
    revoked_keys_stop_working_and_use_is_tracked,
    another_users_key_cannot_be_revoked_or_seen,
    signup_can_be_disabled,
);
