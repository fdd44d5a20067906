//! The call WebSocket over a real socket: events, commands, audio through the mixer, and
//! hostile input.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use chamade_media::SampleRate;
use chamade_media::analysis::{samples_from_le, samples_to_le, sine, tone_amplitude};
use serde_json::json;
use tungstenite::Message;
use tungstenite::stream::MaybeTlsStream;

use crate::support::ws::{Ws, connect, next_event, of_type, send_json};
use crate::support::{Backend, TestServer, json as body};

fn web_call(s: &TestServer, key: &str) -> String {
    let c = body(s.post("/api/call", key, &json!({"platform": "web"})), 200);
    c["call_id"].as_str().expect("call id").to_string()
}

#[test]
fn events_reach_the_socket_and_hang_up_closes_it() {
    let s = TestServer::start(Backend::Sqlite);
    let (_, key) = s.signup("ws@example.org");
    let id = web_call(&s, &key);
    let mut ws = connect(&s, &id, &key);
    let joined = next_event(&mut ws, 10, of_type("participant_joined"));
    assert_eq!(joined["kind"], "agent");
    body(
        s.post(
            &format!("/api/call/{id}/chat"),
            &key,
            &json!({"text": "hello room", "sender_name": "Ops"}),
        ),
        200,
    );
    let chat = next_event(&mut ws, 10, of_type("call_chat"));
    assert_eq!(
        (chat["sender"].as_str(), chat["text"].as_str()),
        (Some("Ops"), Some("hello room"))
    );
    send_json(
        &mut ws,
        json!({"type": "send_chat", "text": "from the agent"}),
    );
    let echoed = next_event(&mut ws, 10, of_type("call_chat"));
    assert_eq!(echoed["text"], "from the agent");
    send_json(&mut ws, json!({"type": "say", "text": "hi"}));
    let err = next_event(&mut ws, 10, of_type("call_error"));
    assert_eq!(err["code"], "tts_not_configured");
    s.req(reqwest::Method::DELETE, &format!("/api/call/{id}"), &key)
        .send()
        .unwrap();
    let ended = next_event(&mut ws, 10, of_type("call_state"));
    assert_eq!(ended["state"], "ended");
    // Then the server closes the socket.
    let mut closed = false;
    for _ in 0..10 {
        match ws.read() {
            Ok(Message::Close(_)) | Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => {}
        }
    }
    assert!(closed, "the socket stays open after the call ended");
}

#[test]
fn unknown_calls_other_users_and_missing_keys_are_refused_before_upgrade() {
    let s = TestServer::start(Backend::Sqlite);
    let (_, alice) = s.signup("a@example.org");
    let (_, bob) = s.signup("b@example.org");
    let id = web_call(&s, &alice);
    let base = s.url.replace("http://", "ws://");
    let status = |url: String| match tungstenite::connect(url) {
        Err(tungstenite::Error::Http(r)) => r.status().as_u16(),
        Ok(_) => 101,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        status(format!("{base}/api/call/{id}/stream?api_key={bob}")),
        404
    );
    assert_eq!(
        status(format!("{base}/api/call/nope/stream?api_key={alice}")),
        404
    );
    assert_eq!(status(format!("{base}/api/call/{id}/stream")), 401);
    assert_eq!(
        status(format!("{base}/api/call/{id}/stream?api_key={alice}")),
        101
    );
}

#[test]
fn bad_input_gets_call_error_and_the_socket_stays_up() {
    let s = TestServer::start(Backend::Sqlite);
    let (_, key) = s.signup("bad-ws@example.org");
    let id = web_call(&s, &key);
    let mut ws = connect(&s, &id, &key);
    ws.send(Message::text("{not json")).unwrap();
    assert_eq!(
        next_event(&mut ws, 10, of_type("call_error"))["code"],
        "invalid_json"
    );
    send_json(&mut ws, json!({"type": "teleport"}));
    assert_eq!(
        next_event(&mut ws, 10, of_type("call_error"))["code"],
        "unknown_type"
    );
    send_json(&mut ws, json!({"type": "send_chat"}));
    assert_eq!(
        next_event(&mut ws, 10, of_type("call_error"))["code"],
        "invalid_message"
    );
    send_json(
        &mut ws,
        json!({"type": "audio_config", "sample_rate": 11025}),
    );
    assert_eq!(
        next_event(&mut ws, 10, of_type("call_error"))["code"],
        "unsupported_sample_rate"
    );
    send_json(
        &mut ws,
        json!({"type": "audio", "audio": "***not base64***"}),
    );
    assert_eq!(
        next_event(&mut ws, 10, of_type("call_error"))["code"],
        "invalid_audio"
    );
    // Odd byte counts are fine: the odd byte waits for its pair.
    ws.send(Message::binary(vec![1u8; 3])).unwrap();
    ws.send(Message::binary(vec![1u8; 1])).unwrap();
    // Larger than the spec's 1 MB: refused, socket up.
    ws.send(Message::binary(vec![0u8; (1 << 20) + 2])).unwrap();
    let err = next_event(&mut ws, 10, of_type("call_error"));
    assert_eq!(err["code"], "frame_too_large");
    send_json(&mut ws, json!({"type": "audio_config"}));
    let cfg = next_event(&mut ws, 10, of_type("audio_config"));
    assert_eq!(cfg["native_sample_rate"], 48_000);
    assert_eq!(cfg["ready"], true);
}

#[test]
fn audio_config_declares_a_rate_as_the_spec_shows() {
    let s = TestServer::start(Backend::Sqlite);
    let (_, key) = s.signup("cfg@example.org");
    let id = web_call(&s, &key);
    let mut ws = connect(&s, &id, &key);
    send_json(&mut ws, json!({"type": "audio_config"}));
    let q = next_event(&mut ws, 10, of_type("audio_config"));
    assert_eq!(
        (
            q["sample_rate"].as_u64(),
            q["resampling"].as_bool(),
            q["frame_bytes"].as_u64()
        ),
        (Some(48_000), Some(false), Some(1920))
    );
    send_json(
        &mut ws,
        json!({"type": "audio_config", "sample_rate": 24000, "receive": true}),
    );
    let c = next_event(&mut ws, 10, of_type("audio_config"));
    assert_eq!(c["sample_rate"], 24_000);
    assert_eq!(c["native_sample_rate"], 48_000);
    assert_eq!(c["resampling"], true);
    assert_eq!(c["frame_bytes"], 960);
    assert_eq!(c["format"], "pcm_s16le");
    assert_eq!(c["channels"], 1);
    assert_eq!(c["frame_duration_ms"], 20);
    assert_eq!(c["ready"], true);
}

/// Reads binary frames (skipping events) until `seconds` of audio at `rate` arrived.
fn collect_audio(ws: &mut Ws, rate: SampleRate, seconds: f64) -> (Vec<i16>, usize) {
    let want = (f64::from(rate.hz()) * seconds) as usize;
    let mut got = Vec::with_capacity(want);
    let mut frames = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < want {
        assert!(
            Instant::now() < deadline,
            "audio stopped after {frames} frames"
        );
        if let Message::Binary(b) = ws.read().expect("read") {
            assert_eq!(b.len(), rate.frame_bytes(), "every frame is exactly 20 ms");
            got.extend(samples_from_le(&b));
            frames += 1;
        }
    }
    (got, frames)
}

#[test]
fn two_agents_at_16k_and_24k_hear_each_other_and_not_themselves() {
    let s = TestServer::start(Backend::Sqlite);
    let (_, key) = s.signup("duo@example.org");
    let id = web_call(&s, &key);
    let (ra, rb) = (SampleRate::HZ_16000, SampleRate::HZ_24000);
    let mut a = connect(&s, &id, &key);
    let mut b = connect(&s, &id, &key);
    send_json(
        &mut a,
        json!({"type": "audio_config", "sample_rate": 16000, "receive": true}),
    );
    next_event(&mut a, 10, of_type("audio_config"));
    send_json(
        &mut b,
        json!({"type": "audio_config", "sample_rate": 24000, "receive": true}),
    );
    next_event(&mut b, 10, of_type("audio_config"));
    // Each pushes 4 s in one frame; the gateway plays it out in real time.
    a.send(Message::binary(samples_to_le(&sine(
        ra,
        440.0,
        -12.0,
        4 * 16_000,
    ))))
    .unwrap();
    b.send(Message::binary(samples_to_le(&sine(
        rb,
        1000.0,
        -12.0,
        4 * 24_000,
    ))))
    .unwrap();
    // Skip the first half second (resampler start-up), then analyse one second.
    let (heard_a, _) = collect_audio(&mut a, ra, 1.5);
    let (heard_b, _) = collect_audio(&mut b, rb, 1.5);
    let (tail_a, tail_b) = (&heard_a[8_000..24_000], &heard_b[12_000..36_000]);
    let a_other = tone_amplitude(tail_a, ra, 1000.0);
    let a_self = tone_amplitude(tail_a, ra, 440.0);
    let b_other = tone_amplitude(tail_b, rb, 440.0);
    let b_self = tone_amplitude(tail_b, rb, 1000.0);
    assert!(a_other > 0.15, "A hears B at {a_other}");
    assert!(b_other > 0.15, "B hears A at {b_other}");
    assert!(
        a_self < a_other / 100.0,
        "A hears itself at {a_self} vs {a_other}"
    );
    assert!(
        b_self < b_other / 100.0,
        "B hears itself at {b_self} vs {b_other}"
    );
}

#[test]
fn marks_are_played_or_cleared_by_stop_speaking() {
    let s = TestServer::start(Backend::Sqlite);
    let (_, key) = s.signup("marks@example.org");
    let id = web_call(&s, &key);
    let mut ws = connect(&s, &id, &key);
    let r = SampleRate::HZ_48000;
    ws.send(Message::binary(samples_to_le(&sine(
        r,
        300.0,
        -20.0,
        10 * 48_000,
    ))))
    .unwrap();
    send_json(&mut ws, json!({"type": "mark", "name": "long"}));
    send_json(&mut ws, json!({"type": "stop_speaking"}));
    let cleared = next_event(&mut ws, 20, of_type("mark"));
    assert_eq!(
        (cleared["name"].as_str(), cleared["status"].as_str()),
        (Some("long"), Some("cleared"))
    );
    ws.send(Message::binary(samples_to_le(&sine(
        r, 300.0, -20.0, 4_800,
    ))))
    .unwrap();
    send_json(&mut ws, json!({"type": "mark", "name": "short"}));
    let played = next_event(&mut ws, 200, of_type("mark"));
    assert_eq!(
        (played["name"].as_str(), played["status"].as_str()),
        (Some("short"), Some("played"))
    );
}

#[test]
fn metrics_count_ticks_and_seated_agents() {
    let s = TestServer::start(Backend::Sqlite);
    let (_, key) = s.signup("metrics@example.org");
    let read = || {
        let r = s.client().get(format!("{}/metrics", s.url)).send().unwrap();
        assert_eq!(r.status(), 200);
        r.text().unwrap()
    };
    let value = |text: &str, name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
    };
    let id = web_call(&s, &key);
    let mut ws = connect(&s, &id, &key);
    send_json(&mut ws, json!({"type": "audio_config", "receive": true}));
    next_event(&mut ws, 10, of_type("audio_config"));
    // Ticks advance and the seated agent is counted (poll: the shard applies commands at
    // its next tick).
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = value(&read(), "chamade_shard_ticks_total");
    loop {
        let now = read();
        if value(&now, "chamade_shard_participants") == 1
            && value(&now, "chamade_shard_ticks_total") > first
        {
            assert!(now.contains("chamade_shard_tick_duration_us_bucket{shard=\"0\",le=\"+Inf\"}"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed the agent:\n{now}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn call_stats_report_queued_playout_on_request_and_periodically() {
    let s = TestServer::start(Backend::Sqlite);
    let (_, key) = s.signup("stats@example.org");
    let id = web_call(&s, &key);
    let mut ws = connect(&s, &id, &key);
    send_json(
        &mut ws,
        json!({"type": "audio_config", "sample_rate": 16000, "receive": true}),
    );
    let cfg = next_event(&mut ws, 10, of_type("audio_config"));
    assert_eq!(
        (cfg["queued_ms"].as_u64(), cfg["underruns"].as_u64()),
        (Some(0), Some(0))
    );
    // Queue 5 s: the playout queue reports (nearly) all of it at once.
    ws.send(Message::binary(samples_to_le(&sine(
        SampleRate::HZ_16000,
        500.0,
        -20.0,
        5 * 16_000,
    ))))
    .unwrap();
    send_json(&mut ws, json!({"type": "call_stats", "interval_ms": 200}));
    let first = next_event(&mut ws, 400, of_type("call_stats"));
    // The agent is the room's only voice: nothing to mix, so the room forwards.
    assert_eq!(first["mode"], "forwarding");
    // The server's end of this socket: TCP_NODELAY as the kernel reports it.
    assert_eq!(first["tcp_nodelay"], true);
    let q1 = first["queued_ms"].as_u64().unwrap();
    assert!(q1 > 3_000 && q1 <= 5_000, "queued {q1} ms");
    // Periodic events follow, and the queue drains in real time between them.
    let mut later = first.clone();
    for _ in 0..5 {
        later = next_event(&mut ws, 400, of_type("call_stats"));
    }
    let q2 = later["queued_ms"].as_u64().unwrap();
    assert!(q2 < q1, "queue did not drain: {q1} → {q2}");
    assert!(later["frames_played"].as_u64().unwrap() > first["frames_played"].as_u64().unwrap());
    assert!(later["frames_received"].as_u64().unwrap() > 0);
    // The room's own counters: mixed every tick, with this agent talking.
    let room = &later["room"];
    assert!(room["ticks"].as_u64().unwrap() > first["room"]["ticks"].as_u64().unwrap());
    assert!(room["talker_frames"].as_u64().unwrap() > 0);
    assert_eq!(room["max_talkers"], 1);
    send_json(&mut ws, json!({"type": "call_stats", "interval_ms": 5}));
    assert_eq!(
        next_event(&mut ws, 400, of_type("call_error"))["code"],
        "invalid_message"
    );
}

#[test]
fn a_socket_that_stops_reading_does_not_stall_the_others() {
    let s = TestServer::start(Backend::Sqlite);
    let (_, key) = s.signup("slow@example.org");
    let id = web_call(&s, &key);
    let r = SampleRate::HZ_48000;
    let mut talker = connect(&s, &id, &key);
    let mut listener = connect(&s, &id, &key);
    // The stalled agent's socket has a 4 KB receive window, so once it stops reading the
    // server's writes to it block within a fraction of a second.
    let mut stalled = connect_small_window(&s, &id, &key);
    for ws in [&mut talker, &mut listener, &mut stalled] {
        send_json(ws, json!({"type": "audio_config", "receive": true}));
        next_event(ws, 10, of_type("audio_config"));
    }
    talker
        .send(Message::binary(samples_to_le(&sine(
            r,
            700.0,
            -12.0,
            10 * 48_000,
        ))))
        .unwrap();
    // `stalled` never reads again. The listener still gets 50 frames a second of the talker.
    let started = Instant::now();
    let (heard, frames) = collect_audio(&mut listener, r, 6.0);
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(frames, 300);
    assert!(elapsed < 10.0, "300 frames took {elapsed:.1} s");
    assert!(tone_amplitude(&heard[48_000..], r, 700.0) > 0.15);
    drop(stalled);
}

fn connect_small_window(s: &TestServer, call_id: &str, key: &str) -> Ws {
    use socket2::{Domain, Socket, Type};
    let addr: std::net::SocketAddr = s.url.trim_start_matches("http://").parse().expect("addr");
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    socket.connect(&addr.into()).expect("connect");
    let tcp: TcpStream = socket.into();
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let url = format!("ws://{addr}/api/call/{call_id}/stream?api_key={key}");
    let (ws, _) =
        tungstenite::client(url, MaybeTlsStream::Plain(tcp)).expect("websocket handshake");
    ws
}
