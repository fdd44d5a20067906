//! The account routes' happy paths, and the GDPR guarantees (export, erasure).

use reqwest::Method;
use serde_json::json;

use crate::on_both_backends;
use crate::support::{Backend, TestServer, json};

fn account_status_has_every_spec_field(b: Backend) {
    let s = TestServer::start(b);
    let (_, key) = s.signup("ops@example.org");
    let a = json(s.get("/api/account", &key), 200);
    for field in [
        "plan",
        "features",
        "features_note",
        "platforms",
        "concurrent_calls",
        "identities",
        "last_message_cursor",
    ] {
        assert!(a.get(field).is_some(), "missing {field} in {a}");
    }
    for f in [
        "transport",
        "audio_in",
        "audio_out",
        "text_chat",
        "typing_indicators",
        "files",
    ] {
        assert_eq!(a["features"][f], "ready");
    }
    assert_eq!(a["features"]["hosted_stt"], "byok");
    let discord = &a["platforms"]["discord"];
    assert_eq!(discord["status"], "not_configured");
    assert_eq!(discord["files"], true);
    assert!(
        discord["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("audio_in"))
    );
    assert_eq!(a["platforms"]["sip"]["files"], false);
    assert_eq!(a["concurrent_calls"]["active"], 0);
}

fn profile_and_password_changes(b: Backend) {
    let s = TestServer::start(b);
    let (_, key) = s.signup("kim@example.org");
    let p = s
        .req(Method::PATCH, "/api/profile", &key)
        .json(&json!({"name": "Kim"}))
        .send()
        .unwrap();
    assert_eq!(json(p, 200)["name"], "Kim");
    assert_eq!(json(s.get("/api/account", &key), 200)["name"], "Kim");
    let wrong = s.post(
        "/api/change-password",
        &key,
        &json!({"current_password": "not-it-at-all", "new_password": "new-password-1"}),
    );
    assert_eq!(json(wrong, 400)["code"], "invalid_password");
    let short = s.post(
        "/api/change-password",
        &key,
        &json!({"current_password": "password123", "new_password": "short"}),
    );
    json(short, 422);
    let ok = s.post(
        "/api/change-password",
        &key,
        &json!({"current_password": "password123", "new_password": "new-password-1"}),
    );
    json(ok, 200);
    let login = s
        .client()
        .post(format!("{}/api/login", s.url))
        .json(&json!({"email": "kim@example.org", "password": "new-password-1"}))
        .send()
        .unwrap();
    json(login, 200);
}

fn email_change_is_pending_and_refuses_taken_addresses(b: Backend) {
    let s = TestServer::start(b);
    let (_, key) = s.signup("old@example.org");
    s.signup("taken@example.org");
    let taken = s.post(
        "/api/change-email",
        &key,
        &json!({"new_email": "taken@example.org"}),
    );
    json(taken, 409);
    let ok = s.post(
        "/api/change-email",
        &key,
        &json!({"new_email": "new@example.org"}),
    );
    let v = json(ok, 202);
    assert_eq!(v["pending_email"], "new@example.org");
    assert_eq!(
        json(s.get("/api/account", &key), 200)["email"],
        "old@example.org"
    );
}

fn export_holds_every_table_of_the_user_and_nothing_of_others(b: Backend) {
    let s = TestServer::start(b);
    let (user_id, key) = s.signup("exp@example.org");
    let (other_id, other) = s.signup("other@example.org");
    s.fill_every_table(&user_id, &key, "exp@example.org");
    s.fill_every_table(&other_id, &other, "other@example.org");
    let e = json(s.get("/api/export", &key), 200);
    let counts = chamade::db::repo::row_counts(&mut s.conn(), &user_id).unwrap();
    for (table, n) in counts {
        let rows = e[table]
            .as_array()
            .unwrap_or_else(|| panic!("{table} missing from export"));
        assert_eq!(rows.len() as i64, n, "{table}");
    }
    for table in chamade::db::repo::USER_TABLES {
        assert!(e.get(*table).is_some(), "{table} missing from export");
    }
    assert_eq!(e["api_keys"].as_array().unwrap().len(), 2);
    let text = e.to_string();
    assert!(!text.contains("password_hash") && !text.contains("key_hash"));
    assert!(!text.contains("other@example.org"));
    assert!(!text.contains(&other[13..]));
    for secret in [
        "trunk-pass-1",
        "sk_voice_key_0123456789",
        "_sealed",
        "token_hash",
    ] {
        assert!(!text.contains(secret), "{secret} in the export");
    }
    assert!(
        !text.contains(&other_id),
        "another user's rows in the export"
    );
    assert_eq!(e["bot_tokens"][0]["platform"], "telegram");
    assert_eq!(e["sip_trunks"][0]["host"], "sip.example.com");
    assert_eq!(e["voice_providers"][0]["key_hint"], "…6789");
    assert_eq!(e["link_tokens"][0]["kind"], "invite");
    assert_eq!(e["connections"][0]["display_name"], "Nelly");
}

fn deleting_the_account_leaves_no_row(b: Backend) {
    let s = TestServer::start(b);
    let (user_id, key) = s.signup("gone@example.org");
    let (other_id, other) = s.signup("stays@example.org");
    s.fill_every_table(&user_id, &key, "gone@example.org");
    s.fill_every_table(&other_id, &other, "stays@example.org");
    let wrong = s
        .req(Method::DELETE, "/api/account", &key)
        .json(&json!({"password": "wrong-password"}))
        .send()
        .unwrap();
    json(wrong, 400);
    let ok = s
        .req(Method::DELETE, "/api/account", &key)
        .json(&json!({"password": "password123"}))
        .send()
        .unwrap();
    assert_eq!(ok.status(), 204);
    for (table, n) in chamade::db::repo::row_counts(&mut s.conn(), &user_id).unwrap() {
        assert_eq!(n, 0, "{table} still holds rows of the deleted user");
    }
    json(s.get("/api/account", &key), 401);
    json(s.get("/api/account", &other), 200);
    for (table, n) in chamade::db::repo::row_counts(&mut s.conn(), &other_id).unwrap() {
        assert!(n >= 1, "the other account lost its {table} rows");
    }
}

fn usage_is_informational(b: Backend) {
    let s = TestServer::start(b);
    let (_, key) = s.signup("u@example.org");
    let u = json(s.get("/api/usage", &key), 200);
    assert_eq!(u["informational"], true);
    assert_eq!(u["call_count"], 0);
}

on_both_backends!(
    account_status_has_every_spec_field,
    profile_and_password_changes,
    email_change_is_pending_and_refuses_taken_addresses,
    export_holds_every_table_of_the_user_and_nothing_of_others,
    deleting_the_account_leaves_no_row,
    usage_is_informational,
);
