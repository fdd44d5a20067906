//! The call API over HTTP with `web` rooms: creation, status with transcript delta, chat,
//! commands, hang-up, listing, limits and isolation between users.

use reqwest::Method;
use serde_json::json;

use crate::on_both_backends;
use crate::support::{Backend, TestServer, json};

fn create_web_call(s: &TestServer, key: &str) -> serde_json::Value {
    json(
        s.post(
            "/api/call",
            key,
            &json!({"platform": "web", "agent_name": "Tester"}),
        ),
        200,
    )
}

fn a_web_call_is_created_active_with_the_spec_fields(b: Backend) {
    let s = TestServer::start(b);
    let (_, key) = s.signup("caller@example.org");
    let c = create_web_call(&s, &key);
    assert_eq!(c["state"], "active");
    assert_eq!(c["platform"], "web");
    assert_eq!(c["agent_name"], "Tester");
    assert_eq!(c["audio"]["sample_rate"], 48_000);
    assert_eq!(c["audio"]["frame_bytes"], 1920);
    assert_eq!(c["audio"]["format"], "pcm_s16le");
    assert_eq!(c["audio"]["channels"], 1);
    assert_eq!(c["audio"]["frame_duration_ms"], 20);
    let id = c["call_id"].as_str().unwrap();
    assert_eq!(
        c["text_ws_url"].as_str().unwrap(),
        format!("{}/api/call/{id}/stream", s.url.replace("http://", "ws://"))
    );
    for f in [
        "room_id",
        "participant_id",
        "capabilities",
        "meeting_url",
        "direction",
        "caller",
        "created_at",
    ] {
        assert!(c.get(f).is_some(), "missing {f}");
    }
    // The spec's Python example posts to /api/call/ with a trailing slash.
    let slash = s.post("/api/call/", &key, &json!({"platform": "web"}));
    assert_eq!(json(slash, 200)["state"], "active");
}

fn unavailable_and_unknown_platforms_are_refused(b: Backend) {
    let s = TestServer::start(b);
    let (_, key) = s.signup("p@example.org");
    let v = json(
        s.post(
            "/api/call",
            &key,
            &json!({"platform": "discord", "meeting_url": "https://discord.com/channels/1/2"}),
        ),
        400,
    );
    assert_eq!(v["code"], "platform_unavailable");
    let v = json(
        s.post(
            "/api/call",
            &key,
            &json!({"platform": "sip", "meeting_url": "sip:+15550100@example.com"}),
        ),
        400,
    );
    assert_eq!(v["detail"], "No SIP trunk configured");
    json(
        s.post("/api/call", &key, &json!({"platform": "myspace"})),
        422,
    );
    json(s.post("/api/call", &key, &json!({})), 422);
    json(
        s.post(
            "/api/call",
            &key,
            &json!({"platform": "web", "agent_name": "x".repeat(101)}),
        ),
        422,
    );
}

fn status_chat_say_typing_and_hang_up(b: Backend) {
    let s = TestServer::start(b);
    let (_, key) = s.signup("flow@example.org");
    let id = create_web_call(&s, &key)["call_id"]
        .as_str()
        .unwrap()
        .to_string();
    let st = json(s.get(&format!("/api/call/{id}?since=0"), &key), 200);
    assert_eq!(st["state"], "active");
    assert_eq!(st["transcript_length"], 0);
    assert_eq!(st["transcript"], json!([]));
    assert!(st["ended_at"].is_null());
    let sent = s.post(
        &format!("/api/call/{id}/chat"),
        &key,
        &json!({"text": "Here is the link"}),
    );
    assert_eq!(json(sent, 200)["status"], "sent");
    json(
        s.post(&format!("/api/call/{id}/chat"), &key, &json!({"text": ""})),
        422,
    );
    let say = json(
        s.post(
            &format!("/api/call/{id}/say"),
            &key,
            &json!({"text": "Hello"}),
        ),
        400,
    );
    assert!(
        say["detail"]
            .as_str()
            .unwrap()
            .starts_with("Hosted TTS not configured")
    );
    json(
        s.post(&format!("/api/call/{id}/typing"), &key, &json!({})),
        200,
    );
    // Accepting or refusing an outbound call that is already active does not apply.
    json(
        s.post(&format!("/api/call/{id}/accept"), &key, &json!({})),
        409,
    );
    json(
        s.post(&format!("/api/call/{id}/refuse"), &key, &json!({})),
        409,
    );
    let listed = json(s.get("/api/calls", &key), 200);
    assert_eq!(listed["calls"].as_array().unwrap().len(), 1);
    let ended = s
        .req(Method::DELETE, &format!("/api/call/{id}"), &key)
        .send()
        .unwrap();
    assert_eq!(json(ended, 200)["state"], "ended");
    // Ended: out of the live list, still readable from the database, commands are 404.
    assert!(
        json(s.get("/api/calls", &key), 200)["calls"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let st = json(s.get(&format!("/api/call/{id}"), &key), 200);
    assert_eq!(st["state"], "ended");
    assert!(st["ended_at"].is_string());
    json(
        s.post(
            &format!("/api/call/{id}/chat"),
            &key,
            &json!({"text": "late"}),
        ),
        404,
    );
    let again = s
        .req(Method::DELETE, &format!("/api/call/{id}"), &key)
        .send()
        .unwrap();
    json(again, 404);
}

fn transcript_delta_reads_stored_lines(b: Backend) {
    let s = TestServer::start(b);
    let (user_id, key) = s.signup("delta@example.org");
    let id = create_web_call(&s, &key)["call_id"]
        .as_str()
        .unwrap()
        .to_string();
    s.req(Method::DELETE, &format!("/api/call/{id}"), &key)
        .send()
        .unwrap();
    for (i, (who, text)) in [
        ("Alice", "Hello everyone"),
        ("Bob", "Hi Alice"),
        ("Alice", "Shall we?"),
    ]
    .iter()
    .enumerate()
    {
        chamade::db::calls::insert_line(
            &mut s.conn(),
            &chamade::db::calls::TranscriptRow {
                call_id: id.clone(),
                idx: i as i32,
                user_id: user_id.clone(),
                speaker: (*who).into(),
                text: (*text).into(),
                created_at: chamade::db::now_ms(),
            },
        )
        .unwrap();
    }
    let all = json(s.get(&format!("/api/call/{id}?since=0"), &key), 200);
    assert_eq!(
        all["transcript"],
        json!([
            "[Alice] Hello everyone",
            "[Bob] Hi Alice",
            "[Alice] Shall we?"
        ])
    );
    assert_eq!(all["transcript_length"], 3);
    let delta = json(s.get(&format!("/api/call/{id}?since=2"), &key), 200);
    assert_eq!(delta["transcript"], json!(["[Alice] Shall we?"]));
    json(s.get(&format!("/api/call/{id}?since=-1"), &key), 422);
}

fn another_users_call_is_not_found(b: Backend) {
    let s = TestServer::start(b);
    let (_, alice) = s.signup("alice@example.org");
    let (_, bob) = s.signup("bob@example.org");
    let id = create_web_call(&s, &alice)["call_id"]
        .as_str()
        .unwrap()
        .to_string();
    json(s.get(&format!("/api/call/{id}"), &bob), 404);
    json(
        s.post(
            &format!("/api/call/{id}/chat"),
            &bob,
            &json!({"text": "hi"}),
        ),
        404,
    );
    let del = s
        .req(Method::DELETE, &format!("/api/call/{id}"), &bob)
        .send()
        .unwrap();
    json(del, 404);
    assert!(
        json(s.get("/api/calls", &bob), 200)["calls"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        json(s.get(&format!("/api/call/{id}"), &alice), 200)["state"],
        "active"
    );
    json(s.get("/api/call/not-a-call", &alice), 404);
}

fn the_concurrent_call_limit_is_429(b: Backend) {
    let s = TestServer::start_with(b, |c| c.max_concurrent_calls = 2);
    let (_, key) = s.signup("busy@example.org");
    let first = create_web_call(&s, &key)["call_id"]
        .as_str()
        .unwrap()
        .to_string();
    create_web_call(&s, &key);
    let v = json(s.post("/api/call", &key, &json!({"platform": "web"})), 429);
    assert_eq!(v["detail"], "Concurrent call limit reached");
    s.req(Method::DELETE, &format!("/api/call/{first}"), &key)
        .send()
        .unwrap();
    create_web_call(&s, &key);
}

/// A `web` room may mix at another rate than 48 kHz (an extension for rooms of 8 kHz legs).
fn a_web_room_can_mix_at_another_rate(b: Backend) {
    let s = TestServer::start(b);
    let (_, key) = s.signup("rate@example.com");
    let call = json(
        s.post(
            "/api/call",
            &key,
            &json!({"platform": "web", "sample_rate": 8000}),
        ),
        200,
    );
    assert_eq!(call["audio"]["sample_rate"], 8000);
    assert_eq!(call["audio"]["frame_bytes"], 320);
    let id = call["call_id"].as_str().expect("id");
    assert_eq!(
        json(s.get(&format!("/api/call/{id}"), &key), 200)["audio"]["sample_rate"],
        8000
    );
    let odd = json(
        s.post(
            "/api/call",
            &key,
            &json!({"platform": "web", "sample_rate": 11025}),
        ),
        422,
    );
    assert!(
        odd["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("sample_rate")
    );
    let sip = json(
        s.post(
            "/api/call",
            &key,
            &json!({"platform": "sip", "meeting_url": "tel:+15550100", "sample_rate": 8000}),
        ),
        422,
    );
    assert!(
        sip["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("web calls only")
    );
}

on_both_backends!(
    a_web_room_can_mix_at_another_rate,
    a_web_call_is_created_active_with_the_spec_fields,
    unavailable_and_unknown_platforms_are_refused,
    status_chat_say_typing_and_hang_up,
    transcript_delta_reads_stored_lines,
    another_users_call_is_not_found,
    the_concurrent_call_limit_is_429,
);
