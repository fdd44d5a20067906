//! The SIP trunk (BYOT) and its numbers: the password never leaves the server, numbers are
//! E.164 and belong to one account, and one user never reaches another's trunk or numbers.

use diesel::prelude::*;
use reqwest::Method;
use serde_json::{Value, json};

use chamade::db::schema::sip_trunks;

use crate::on_both_backends;
use crate::support::{Backend, TestServer, json, random_number};

const PASSWORD: &str = "trunk-Secret-Pass-42";

fn trunk() -> Value {
    json!({"sip_host": "sip.example.com", "sip_port": 5061, "sip_username": "user",
           "sip_password": PASSWORD, "sip_realm": "sip-domain.io",
           "sip_caller_id": "+33612345678"})
}

fn trunk_round_trip_never_returns_the_password(b: Backend) {
    let s = TestServer::start(b);
    let (user_id, key) = s.signup("sip@example.org");
    let (other_id, _) = s.signup("other@example.org");
    json(s.get("/api/sip/trunk", &key), 404);
    let created = json(s.post("/api/sip/trunk", &key, &trunk()), 201);
    for (field, value) in [
        ("sip_host", json!("sip.example.com")),
        ("sip_port", json!(5061)),
        ("sip_username", json!("user")),
        ("sip_realm", json!("sip-domain.io")),
        ("sip_caller_id", json!("+33612345678")),
        ("dids", json!([])),
    ] {
        assert_eq!(created[field], value, "{field}");
    }
    let shown = json(s.get("/api/sip/trunk", &key), 200);
    assert_eq!(shown["trunk_id"], created["trunk_id"]);
    assert!(!shown.to_string().contains(PASSWORD));
    assert!(shown.get("sip_password").is_none());
    let sealed: String = sip_trunks::table
        .filter(sip_trunks::user_id.eq(&user_id))
        .select(sip_trunks::password_sealed)
        .first(&mut *s.conn())
        .unwrap();
    assert!(!sealed.contains(PASSWORD));
    assert_eq!(s.secrets.open(&user_id, &sealed).unwrap(), PASSWORD);
    assert!(s.secrets.open(&other_id, &sealed).is_err());
    assert!(
        !json(s.get("/api/export", &key), 200)
            .to_string()
            .contains(PASSWORD)
    );

    let number = random_number();
    json(
        s.post("/api/sip/trunk/dids", &key, &json!({"number": number})),
        201,
    );
    let replaced = json(
        s.post(
            "/api/sip/trunk",
            &key,
            &json!({"sip_host": "sip2.example.com", "sip_username": "u2",
                    "sip_password": "another-pass"}),
        ),
        200,
    );
    assert_eq!(replaced["trunk_id"], created["trunk_id"]);
    assert_eq!(replaced["sip_port"], 5060, "the default port");
    assert_eq!(replaced["sip_host"], "sip2.example.com");
    assert!(replaced["sip_realm"].is_null());
    assert_eq!(
        replaced["dids"][0]["number"], number,
        "replacing keeps the numbers"
    );
}

fn trunk_bodies_are_checked(b: Backend) {
    let s = TestServer::start(b);
    let (_, key) = s.signup("tchecks@example.org");
    let with = |field: &str, value: Value| {
        let mut body = trunk();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = trunk();
        body.as_object_mut().unwrap().remove(field);
        body
    };
    for body in [
        json!({}),
        without("sip_host"),
        without("sip_username"),
        without("sip_password"),
        with("sip_host", json!("")),
        with("sip_host", json!("sip:user@host")),
        with("sip_port", json!(0)),
        with("sip_port", json!(70000)),
        with("sip_port", json!("5060")),
        with("sip_password", json!("")),
        with("sip_caller_id", json!("0612345678")),
        with("sip_caller_id", json!("+33 6 12 34 56 78")),
        with("surprise", json!(true)),
    ] {
        let v = json(s.post("/api/sip/trunk", &key, &body), 422);
        assert_eq!(v["code"], "validation_error", "{body}");
    }
    let raw = s
        .req(Method::POST, "/api/sip/trunk", &key)
        .header("Content-Type", "application/json")
        .body("[1, 2")
        .send()
        .unwrap();
    json(raw, 422);
    json(s.get("/api/sip/trunk", &key), 404);
}

fn dids_are_e164_and_unique_across_users(b: Backend) {
    let s = TestServer::start(b);
    let (_, alice) = s.signup("alice@example.org");
    let (_, bob) = s.signup("bob@example.org");
    let number = random_number();
    let no_trunk = s.post("/api/sip/trunk/dids", &alice, &json!({"number": number}));
    assert_eq!(json(no_trunk, 400)["code"], "no_sip_trunk");
    json(s.post("/api/sip/trunk", &alice, &trunk()), 201);
    json(s.post("/api/sip/trunk", &bob, &trunk()), 201);
    for bad in [
        json!({"number": "0612345678"}),
        json!({"number": "+0612345678"}),
        json!({"number": "+1234567890123456"}),
        json!({"number": "+33 612"}),
        json!({"number": "+"}),
        json!({"number": 33612345678u64}),
        json!({}),
        json!({"number": "+33612345678", "label": "x"}),
    ] {
        json(s.post("/api/sip/trunk/dids", &alice, &bad), 422);
    }
    let did = json(
        s.post("/api/sip/trunk/dids", &alice, &json!({"number": number})),
        201,
    );
    assert_eq!(did["number"], number.as_str());
    assert_eq!(did["auto_answer"], false);
    let taken = s.post("/api/sip/trunk/dids", &bob, &json!({"number": number}));
    assert_eq!(json(taken, 409)["code"], "conflict");
    let again = s.post("/api/sip/trunk/dids", &alice, &json!({"number": number}));
    json(again, 409);
    assert_eq!(
        json(s.get("/api/sip/trunk/dids", &bob), 200)["dids"],
        json!([])
    );
    let list = json(s.get("/api/sip/trunk/dids", &alice), 200);
    assert_eq!(list["dids"].as_array().unwrap().len(), 1);
    assert_eq!(list["dids"][0]["did_id"], did["did_id"]);
}

fn did_settings_toggle_auto_answer(b: Backend) {
    let s = TestServer::start(b);
    let (_, key) = s.signup("aa@example.org");
    json(s.post("/api/sip/trunk", &key, &trunk()), 201);
    let did = json(
        s.post(
            "/api/sip/trunk/dids",
            &key,
            &json!({"number": random_number(), "auto_answer": true}),
        ),
        201,
    );
    assert_eq!(did["auto_answer"], true);
    let id = did["did_id"].as_str().unwrap();
    let path = format!("/api/sip/trunk/dids/{id}/settings");
    let off = json(s.post(&path, &key, &json!({"auto_answer": false})), 200);
    assert_eq!(off["auto_answer"], false);
    assert_eq!(
        json(s.get("/api/sip/trunk", &key), 200)["dids"][0]["auto_answer"],
        false
    );
    for bad in [
        json!({}),
        json!({"auto_answer": "yes"}),
        json!({"auto_answer": true, "x": 1}),
    ] {
        json(s.post(&path, &key, &bad), 422);
    }
    json(
        s.post(
            "/api/sip/trunk/dids/no-such-did/settings",
            &key,
            &json!({"auto_answer": true}),
        ),
        404,
    );
    assert_eq!(
        s.delete(&format!("/api/sip/trunk/dids/{id}"), &key)
            .status(),
        204
    );
    json(s.delete(&format!("/api/sip/trunk/dids/{id}"), &key), 404);
}

fn another_users_trunk_and_dids_are_out_of_reach(b: Backend) {
    let s = TestServer::start(b);
    let (_, alice) = s.signup("alice@example.org");
    let (_, bob) = s.signup("bob@example.org");
    json(s.post("/api/sip/trunk", &bob, &trunk()), 201);
    let did = json(
        s.post(
            "/api/sip/trunk/dids",
            &bob,
            &json!({"number": random_number()}),
        ),
        201,
    );
    let id = did["did_id"].as_str().unwrap();
    json(s.get("/api/sip/trunk", &alice), 404);
    json(s.delete("/api/sip/trunk", &alice), 404);
    json(s.delete(&format!("/api/sip/trunk/dids/{id}"), &alice), 404);
    json(
        s.post(
            &format!("/api/sip/trunk/dids/{id}/settings"),
            &alice,
            &json!({"auto_answer": true}),
        ),
        404,
    );
    // Alice's own trunk does not make Bob's numbers hers.
    json(s.post("/api/sip/trunk", &alice, &trunk()), 201);
    json(s.delete(&format!("/api/sip/trunk/dids/{id}"), &alice), 404);
    assert_eq!(
        json(s.get("/api/sip/trunk", &alice), 200)["dids"],
        json!([])
    );
    let bobs = json(s.get("/api/sip/trunk", &bob), 200);
    assert_eq!(bobs["dids"][0]["did_id"], id);
    assert_eq!(bobs["dids"][0]["auto_answer"], false);
    json(s.delete("/api/sip/trunk", &alice), 204);
    json(s.get("/api/sip/trunk", &bob), 200);
}

fn deleting_the_trunk_releases_its_numbers(b: Backend) {
    let s = TestServer::start(b);
    let (_, alice) = s.signup("alice@example.org");
    let (_, bob) = s.signup("bob@example.org");
    json(s.post("/api/sip/trunk", &alice, &trunk()), 201);
    json(s.post("/api/sip/trunk", &bob, &trunk()), 201);
    let number = random_number();
    json(
        s.post("/api/sip/trunk/dids", &alice, &json!({"number": number})),
        201,
    );
    assert_eq!(s.delete("/api/sip/trunk", &alice).status(), 204);
    json(s.get("/api/sip/trunk", &alice), 404);
    assert_eq!(
        json(s.get("/api/sip/trunk/dids", &alice), 200)["dids"],
        json!([])
    );
    json(
        s.post("/api/sip/trunk/dids", &bob, &json!({"number": number})),
        201,
    );
}

on_both_backends!(
    trunk_round_trip_never_returns_the_password,
    trunk_bodies_are_checked,
    dids_are_e164_and_unique_across_users,
    did_settings_toggle_auto_answer,
    another_users_trunk_and_dids_are_out_of_reach,
    deleting_the_trunk_releases_its_numbers,
);
