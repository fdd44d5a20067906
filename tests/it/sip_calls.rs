//! Phone calls through a real trunk: kamailio as the user's SIP provider, baresip as the
//! person's phone, the gateway in between, an agent on the call WebSocket. Everything runs
//! over real UDP on 127.0.0.1.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chamade_media::analysis::{samples_from_le, samples_to_le};
use serde_json::{Value, json};
use tungstenite::Message;

use crate::support::sip_peers::{
    Answer, Baresip, BaresipOpts, Kamailio, KamailioOpts, REALM, Source, best_match, test_signal,
    write_wav,
};
use crate::support::ws::{Ws, connect, next_event, of_type, send_json};
use crate::support::{Backend, TempDir, TestServer, json as body};

/// The gateway's account on the trunk and the number routed to it.
const GW_NUMBER: &str = "+15550100";
/// alice's number on the trunk.
const ALICE_NUMBER: &str = "+15550200";

/// A gateway whose account has the trunk `kam` connected, with `numbers` (number,
/// auto_answer), registered.
struct Gateway {
    server: TestServer,
    key: String,
}

fn gateway(backend: Backend, kam: &Kamailio, numbers: &[(&str, bool)]) -> Gateway {
    gateway_with(backend, kam, numbers, |_| {})
}

fn gateway_with(
    backend: Backend,
    kam: &Kamailio,
    numbers: &[(&str, bool)],
    adjust: impl FnOnce(&mut chamade::Config),
) -> Gateway {
    let server = TestServer::start_with(backend, adjust);
    let (_, key) = server.signup(&format!("{}@example.com", uuid::Uuid::new_v4()));
    body(
        server.post(
            "/api/sip/trunk",
            &key,
            &json!({
                "sip_host": "127.0.0.1",
                "sip_port": kam.port(),
                "sip_username": "gw",
                "sip_password": "gwpass",
                "sip_realm": REALM,
                "sip_caller_id": GW_NUMBER,
            }),
        ),
        201,
    );
    for (number, auto_answer) in numbers {
        let did = body(
            server.post("/api/sip/trunk/dids", &key, &json!({"number": number})),
            201,
        );
        if *auto_answer {
            let path = format!(
                "/api/sip/trunk/dids/{}/settings",
                did["did_id"].as_str().unwrap_or_default()
            );
            body(server.post(&path, &key, &json!({"auto_answer": true})), 200);
        }
    }
    let gw = Gateway { server, key };
    let reg = gw.wait_registration(|r| r["state"] != "registering");
    assert_eq!(
        reg["state"],
        "registered",
        "registration: {reg}\n{}",
        kam.log()
    );
    assert!(kam.registered("gw"), "kamailio has no binding for gw");
    assert_eq!(gw.get("/api/account")["platforms"]["sip"]["status"], "ok");
    gw
}

impl Gateway {
    fn get(&self, path: &str) -> Value {
        body(self.server.get(path, &self.key), 200)
    }

    /// Polls the trunk's registration until `done` holds (at most 10 s).
    fn wait_registration(&self, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reg = self.get("/api/sip/trunk")["registration"].clone();
            if done(&reg) || Instant::now() > deadline {
                return reg;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `GET /api/calls` until a call matches (at most 15 s).
    fn wait_call(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let calls = self.get("/api/calls");
            let list = calls["calls"].as_array().cloned().unwrap_or_default();
            if let Some(c) = list.into_iter().find(|c| pred(c)) {
                return c;
            }
            assert!(Instant::now() < deadline, "no such call in {calls}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls the call until its state is `state` (at most 15 s).
    fn wait_state(&self, call_id: &str, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let c = self.get(&format!("/api/call/{call_id}"));
            if c["state"] == state {
                return c;
            }
            assert!(Instant::now() < deadline, "call never reached {state}: {c}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The account's event stream (`GET /api/events`), read on a thread of its own.
    fn events(&self) -> std::sync::mpsc::Receiver<Value> {
        use std::io::BufRead;
        let response = reqwest::blocking::Client::builder()
            .timeout(None)
            .build()
            .expect("client")
            .get(format!("{}/api/events", self.server.url))
            .header("X-API-Key", &self.key)
            .send()
            .expect("event stream");
        assert_eq!(response.status(), 200);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(response).lines() {
                let Ok(line) = line else { break };
                if let Some(data) = line.strip_prefix("data: ")
                    && let Ok(v) = serde_json::from_str::<Value>(data)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        rx
    }

    fn post(&self, path: &str, v: &Value) -> reqwest::blocking::Response {
        self.server.post(path, &self.key, v)
    }
}

fn phone(kam: &Kamailio, user: &str, source: Source, answer: Answer) -> Baresip {
    let mut opts = BaresipOpts::new(user, kam.port());
    opts.source = source;
    opts.answer = answer;
    let b = Baresip::start(opts);
    assert!(
        kam.wait_registered(user, Duration::from_secs(10)),
        "{user} did not register:\n{}",
        b.log()
    );
    b
}

/// A WAV of lead-in silence, the signal, and a tail, at 8 kHz (baresip hangs up at its end).
fn signal_wav(
    dir: &TempDir,
    name: &str,
    signal: &[i16],
    lead_secs: f32,
    tail_secs: f32,
) -> PathBuf {
    let mut samples = vec![0i16; (8000.0 * lead_secs) as usize];
    samples.extend_from_slice(signal);
    samples.extend(std::iter::repeat_n(0i16, (8000.0 * tail_secs) as usize));
    let path = dir.0.join(name);
    write_wav(&path, 8000, &samples);
    path
}

/// Asks for the room's audio at 8 kHz on the socket.
fn receive_audio(ws: &mut Ws) {
    send_json(
        ws,
        json!({"type": "audio_config", "sample_rate": 8000, "receive": true}),
    );
    next_event(ws, 200, of_type("audio_config"));
}

/// Reads the socket until `seconds` of audio came or the call ended; answers the audio
/// and the events seen.
fn collect(ws: &mut Ws, seconds: f64) -> (Vec<i16>, Vec<Value>) {
    let want = (8000.0 * seconds) as usize;
    let mut audio = Vec::with_capacity(want);
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds + 20.0);
    while audio.len() < want && Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Binary(b)) => audio.extend(samples_from_le(&b)),
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).expect("event");
                let ended = v["type"] == "call_state" && v["state"] != "active";
                events.push(v);
                if ended {
                    break;
                }
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    (audio, events)
}

fn assert_matches(what: &str, reference: &[i16], recording: &[i16]) {
    let (corr, lag) = best_match(reference, recording);
    assert!(
        corr >= 0.8,
        "{what}: correlation {corr:.3} at lag {lag} (recording of {} samples)",
        recording.len()
    );
}

/// Waits for the phone's call to close, then checks its recording of what it received.
fn assert_phone_heard(phone: &mut Baresip, what: &str, reference: &[i16]) {
    assert!(
        phone
            .wait_event("CALL_CLOSED", Duration::from_secs(10))
            .is_some(),
        "{what}: the call never closed"
    );
    let recording = phone
        .received_recording()
        .expect("the phone recorded the call");
    let (_, heard) = crate::support::sip_peers::read_wav(&recording);
    assert_matches(what, reference, &heard);
}

/// Registration, refreshed before expiry: with a 20 s expiry the binding outlives it.
#[test]
fn the_gateway_registers_with_digest_auth_and_refreshes_before_expiry() {
    let kam = Kamailio::start(KamailioOpts {
        qop: true,
        invite_auth: true,
    });
    let gw = gateway_with(Backend::Sqlite, &kam, &[], |c| {
        c.sip_register_expiry_secs = 20
    });
    let log = kam.log();
    assert!(
        log.contains("401") || log.contains("challenge"),
        "kamailio never challenged the REGISTER:\n{log}"
    );
    std::thread::sleep(Duration::from_secs(26));
    assert!(
        kam.registered("gw"),
        "the binding expired: it was not refreshed"
    );
    assert_eq!(
        gw.get("/api/sip/trunk")["registration"]["state"],
        "registered"
    );
    // Disconnecting the trunk removes the binding.
    assert_eq!(gw.server.delete("/api/sip/trunk", &gw.key).status(), 204);
    let deadline = Instant::now() + Duration::from_secs(5);
    while kam.registered("gw") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !kam.registered("gw"),
        "the binding survived the disconnection"
    );
}

/// A wrong password is reported, not retried silently forever.
#[test]
fn a_wrong_password_shows_as_a_failed_registration() {
    let kam = Kamailio::start(KamailioOpts::default());
    let server = TestServer::start(Backend::Sqlite);
    let (_, key) = server.signup("wrong@example.com");
    body(
        server.post(
            "/api/sip/trunk",
            &key,
            &json!({"sip_host": "127.0.0.1", "sip_port": kam.port(), "sip_username": "gw",
                    "sip_password": "not-the-password", "sip_realm": REALM}),
        ),
        201,
    );
    let gw = Gateway { server, key };
    let reg = gw.wait_registration(|r| r["state"] == "failed");
    assert_eq!(reg["state"], "failed", "{reg}");
    assert!(
        reg["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("authentication"),
        "{reg}"
    );
    assert!(!kam.registered("gw"));
    let status = gw.get("/api/account")["platforms"]["sip"]["status"].clone();
    assert!(
        status
            .as_str()
            .unwrap_or_default()
            .starts_with("failed: authentication"),
        "{status}"
    );
}

fn inbound_call_with_audio_both_ways(backend: Backend) {
    let kam = Kamailio::start(KamailioOpts::default());
    let gw = gateway(backend, &kam, &[(GW_NUMBER, false)]);
    let dir = TempDir::new();
    let caller_signal = test_signal(8000, 3.0, 11);
    let agent_signal = test_signal(8000, 3.0, 12);
    let wav = signal_wav(&dir, "bob.wav", &caller_signal, 1.0, 2.5);
    let mut bob = phone(&kam, "bob", Source::Wav(wav), Answer::Auto);
    let pushes = gw.events();
    bob.dial(&format!("sip:{GW_NUMBER}@{REALM}"));

    let invite = pushes
        .recv_timeout(Duration::from_secs(15))
        .expect("a call_invite on the event stream");
    assert_eq!(invite["type"], "call_invite");
    assert_eq!(invite["caller"], "bob");
    assert_eq!(invite["number"], GW_NUMBER);
    assert!(
        invite["sip_call_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    let call = gw.wait_call(|c| c["state"] == "ringing");
    assert_eq!(call["call_id"], invite["call_id"]);
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["platform"], "sip");
    assert_eq!(call["caller"], "bob");
    let call_id = call["call_id"].as_str().expect("call id").to_string();
    assert!(
        bob.wait_event("CALL_RINGING", Duration::from_secs(5))
            .is_some(),
        "the phone never heard ringing"
    );

    let mut ws = connect(&gw.server, &call_id, &gw.key);
    receive_audio(&mut ws);
    let accepted = body(
        gw.post(&format!("/api/call/{call_id}/accept"), &json!({})),
        200,
    );
    assert_eq!(accepted["state"], "active");
    assert!(
        bob.wait_event("CALL_ESTABLISHED", Duration::from_secs(10))
            .is_some(),
        "the phone never saw the answer:\n{}",
        bob.log()
    );
    ws.send(Message::binary(samples_to_le(&agent_signal)))
        .expect("send audio");
    // The caller's WAV ends after 6.5 s and baresip hangs up: the call ends from the phone.
    let (heard, events) = collect(&mut ws, 12.0);
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "participant_joined" && e["kind"] == "phone"),
        "no phone participant in {events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e == &json!({"type": "call_state", "state": "ended"})),
        "the caller's hang-up did not end the call: {events:?}"
    );
    assert_matches("caller → agent", &caller_signal, &heard);
    assert!(gw.wait_state(&call_id, "ended")["ended_at"].is_string());

    assert_phone_heard(&mut bob, "agent → caller", &agent_signal);
}

#[test]
fn inbound_call_rings_is_accepted_and_carries_audio_both_ways_sqlite() {
    inbound_call_with_audio_both_ways(Backend::Sqlite);
}

#[test]
fn inbound_call_rings_is_accepted_and_carries_audio_both_ways_postgres() {
    inbound_call_with_audio_both_ways(Backend::Postgres);
}

/// bob (silent, auto-answering) dials the gateway's number; answers his phone and the
/// ringing call's id.
fn ring(kam: &Kamailio, gw: &Gateway) -> (Baresip, String) {
    let mut bob = phone(kam, "bob", Source::Silence(30), Answer::Auto);
    bob.dial(&format!("sip:{GW_NUMBER}@{REALM}"));
    let call = gw.wait_call(|c| c["state"] == "ringing");
    let call_id = call["call_id"].as_str().expect("id").to_string();
    (bob, call_id)
}

/// Refused → 603 for the phone, `refused` for the call.
#[test]
fn a_refused_call_is_declined_to_the_phone() {
    let kam = Kamailio::start(KamailioOpts::default());
    let gw = gateway(Backend::Sqlite, &kam, &[(GW_NUMBER, false)]);
    let (mut bob, call_id) = ring(&kam, &gw);
    let call_id = call_id.as_str();
    let refused = body(
        gw.post(&format!("/api/call/{call_id}/refuse"), &json!({})),
        200,
    );
    assert_eq!(refused["state"], "refused");
    let closed = bob
        .wait_event("CALL_CLOSED", Duration::from_secs(10))
        .expect("the phone saw the refusal");
    assert!(closed.to_string().contains("603"), "{closed}");
    assert_eq!(gw.wait_state(call_id, "refused")["state"], "refused");
}

/// Nobody answers within the ring timeout → `missed`, and the phone is told.
#[test]
fn an_unanswered_call_becomes_missed() {
    let kam = Kamailio::start(KamailioOpts::default());
    let gw = gateway_with(Backend::Sqlite, &kam, &[(GW_NUMBER, false)], |c| {
        c.sip_ring_timeout_secs = 2
    });
    let (mut bob, call_id) = ring(&kam, &gw);
    let call_id = call_id.as_str();
    assert!(
        bob.wait_event("CALL_CLOSED", Duration::from_secs(10))
            .is_some(),
        "the phone was never told"
    );
    assert_eq!(gw.wait_state(call_id, "missed")["state"], "missed");
}

/// The caller hangs up while it rings (CANCEL) → `missed`.
#[test]
fn a_call_cancelled_while_ringing_becomes_missed() {
    let kam = Kamailio::start(KamailioOpts::default());
    let gw = gateway(Backend::Sqlite, &kam, &[(GW_NUMBER, false)]);
    let (mut bob, call_id) = ring(&kam, &gw);
    let call_id = call_id.as_str();
    bob.wait_event("CALL_RINGING", Duration::from_secs(5));
    bob.hangup();
    assert_eq!(gw.wait_state(call_id, "missed")["state"], "missed");
    // Accepting now is too late.
    assert_eq!(
        gw.post(&format!("/api/call/{call_id}/accept"), &json!({}))
            .status(),
        404
    );
}

/// Auto-answer: the call is `active` without the agent's say, and the agent hangs up
/// first (BYE to the phone).
#[test]
fn auto_answer_calls_are_active_at_once_and_the_agent_can_hang_up() {
    let kam = Kamailio::start(KamailioOpts::default());
    let gw = gateway(Backend::Sqlite, &kam, &[(GW_NUMBER, true)]);
    let mut bob = phone(&kam, "bob", Source::Silence(30), Answer::Auto);
    bob.dial(&format!("sip:{GW_NUMBER}@{REALM}"));
    let call = gw.wait_call(|c| c["direction"] == "inbound");
    let call_id = call["call_id"].as_str().expect("id").to_string();
    assert!(
        bob.wait_event("CALL_ESTABLISHED", Duration::from_secs(10))
            .is_some(),
        "auto-answer did not answer:\n{}",
        bob.log()
    );
    assert_eq!(gw.wait_state(&call_id, "active")["state"], "active");
    let ended = body(
        gw.server.delete(&format!("/api/call/{call_id}"), &gw.key),
        200,
    );
    assert_eq!(ended["state"], "ended");
    assert!(
        bob.wait_event("CALL_CLOSED", Duration::from_secs(10))
            .is_some(),
        "the phone never got the BYE"
    );
}

/// A number the user has not added: 404 to the caller, no call created.
#[test]
fn a_call_to_an_unknown_number_is_rejected_and_creates_nothing() {
    let kam = Kamailio::start(KamailioOpts::default());
    // The trunk routes +15550100 to the gateway, but the account has no such number.
    let gw = gateway(Backend::Sqlite, &kam, &[]);
    let mut bob = phone(&kam, "bob", Source::Silence(30), Answer::Auto);
    bob.dial(&format!("sip:{GW_NUMBER}@{REALM}"));
    let closed = bob
        .wait_event("CALL_CLOSED", Duration::from_secs(10))
        .expect("the phone was answered");
    assert!(closed.to_string().contains("404"), "{closed}");
    assert_eq!(gw.get("/api/calls")["calls"], json!([]));
}

/// Outbound through the trunk (407 challenge answered), audio both ways, DTMF both ways,
/// and the agent hangs up.
#[test]
fn outbound_call_through_the_trunk_with_audio_and_dtmf_both_ways() {
    let kam = Kamailio::start(KamailioOpts::default());
    let gw = gateway(Backend::Sqlite, &kam, &[]);
    let dir = TempDir::new();
    let callee_signal = test_signal(8000, 3.0, 21);
    let agent_signal = test_signal(8000, 3.0, 22);
    let wav = signal_wav(&dir, "alice.wav", &callee_signal, 1.0, 20.0);
    let mut alice = phone(&kam, "alice", Source::Wav(wav), Answer::Auto);

    let call = body(
        gw.post(
            "/api/call",
            &json!({"platform": "sip", "meeting_url": format!("sip:{ALICE_NUMBER}@{REALM}")}),
        ),
        200,
    );
    assert_eq!(call["state"], "connecting");
    assert_eq!(call["audio"]["sample_rate"], 8000);
    let call_id = call["call_id"].as_str().expect("id").to_string();
    let mut ws = connect(&gw.server, &call_id, &gw.key);
    receive_audio(&mut ws);
    // The socket hears the room's events from its subscription on (done once
    // `audio_config` is answered); a phone that answers within milliseconds may have made
    // the call active before that, which the call's own state then says.
    if gw.get(&format!("/api/call/{call_id}"))["state"] != "active" {
        next_event(&mut ws, 2500, |e| {
            e == &json!({"type": "call_state", "state": "active"})
        });
    }
    assert!(
        alice
            .wait_event("CALL_ESTABLISHED", Duration::from_secs(10))
            .is_some()
    );
    assert!(
        kam.log().contains("407") || kam.log().contains("challenge"),
        "the INVITE was not challenged"
    );
    ws.send(Message::binary(samples_to_le(&agent_signal)))
        .expect("send audio");
    let (heard, _) = collect(&mut ws, 6.0);
    assert_matches("callee → agent", &callee_signal, &heard);

    // DTMF from the phone reaches the agent, each key once.
    alice.send_dtmf("12#");
    let mut keys = String::new();
    while keys.len() < 3 {
        let e = next_event(&mut ws, 2000, of_type("call_dtmf"));
        keys.push_str(e["digit"].as_str().unwrap_or_default());
    }
    assert_eq!(keys, "12#");

    // DTMF from the agent, over HTTP and over the socket, reaches the phone.
    let queued = body(
        gw.post(
            &format!("/api/call/{call_id}/dtmf"),
            &json!({"digits": "4*"}),
        ),
        200,
    );
    assert_eq!(queued["digits"], 2);
    send_json(&mut ws, json!({"type": "dtmf", "digits": "9"}));
    let mut heard_keys = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while heard_keys.len() < 3 && Instant::now() < deadline {
        if let Some(e) = alice.wait_event("CALL_DTMF_START", Duration::from_secs(2)) {
            heard_keys.push_str(e["param"].as_str().unwrap_or_default());
        }
    }
    assert_eq!(heard_keys, "4*9");
    // The phone leg's packets are counted, RTCP included (baresip reports every ~5 s).
    send_json(&mut ws, json!({"type": "call_stats"}));
    let stats = next_event(&mut ws, 2000, of_type("call_stats"));
    let phone = &stats["phone"];
    assert!(phone["rtp_in"].as_u64().unwrap_or(0) > 300, "{stats}");
    assert!(phone["rtp_out"].as_u64().unwrap_or(0) > 300, "{stats}");
    assert!(phone["rtcp_in"].as_u64().unwrap_or(0) >= 1, "{stats}");
    assert!(phone["rtcp_out"].as_u64().unwrap_or(0) >= 1, "{stats}");
    assert_eq!(phone["dtmf_in"], 3, "{stats}");
    // 3 keys of 5 tone packets and 2 repeated ends each; the last key's ends may still
    // be on their way when the phone has already reported the key.
    let sent = phone["dtmf_out"].as_u64().unwrap_or(0);
    assert!((15..=21).contains(&sent), "{stats}");
    // Bad keys are refused with the reason.
    let bad = body(
        gw.post(
            &format!("/api/call/{call_id}/dtmf"),
            &json!({"digits": "12x"}),
        ),
        422,
    );
    assert!(
        bad["detail"].as_str().unwrap_or_default().contains("'x'"),
        "{bad}"
    );

    let ended = body(
        gw.server.delete(&format!("/api/call/{call_id}"), &gw.key),
        200,
    );
    assert_eq!(ended["state"], "ended");
    assert_phone_heard(&mut alice, "agent → callee", &agent_signal);
}

/// A callee that declines: the call ends in `error` with the SIP reason on the socket.
#[test]
fn an_outbound_call_that_fails_reports_the_sip_reason() {
    let kam = Kamailio::start(KamailioOpts::default());
    let gw = gateway(Backend::Sqlite, &kam, &[]);
    let mut alice = phone(&kam, "alice", Source::Silence(30), Answer::Manual);
    let call = body(
        gw.post(
            "/api/call",
            &json!({"platform": "sip", "meeting_url": format!("tel:{ALICE_NUMBER}")}),
        ),
        200,
    );
    let call_id = call["call_id"].as_str().expect("id").to_string();
    let mut ws = connect(&gw.server, &call_id, &gw.key);
    assert!(
        alice
            .wait_event("CALL_INCOMING", Duration::from_secs(10))
            .is_some(),
        "the callee's phone never rang"
    );
    alice.hangup();
    let err = next_event(&mut ws, 2500, of_type("call_error"));
    let message = err["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("SIP 4") || message.contains("SIP 6"),
        "no SIP status in {err}"
    );
    assert_eq!(gw.wait_state(&call_id, "error")["state"], "error");
    // A meeting_url that names nobody is refused up front.
    let bad = body(
        gw.post(
            "/api/call",
            &json!({"platform": "sip", "meeting_url": "sip:@x"}),
        ),
        422,
    );
    assert!(
        bad["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("meeting_url")
    );
}
