//! WebRTC legs over real ICE, DTLS and SRTP on 127.0.0.1: a webrtc-rs peer joins through
//! WHIP (and WHEP) with the call's join token, and an agent on the call WebSocket.

use std::time::{Duration, Instant};

use chamade_media::SampleRate;
use chamade_media::analysis::{samples_from_le, samples_to_le, sine, tone_amplitude};
use serde_json::{Value, json};
use tungstenite::Message;

use crate::support::whip::WhipClient;
use crate::support::ws::{self, Ws, next_event, of_type};
use crate::support::{Backend, TestServer, json as body};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Creates a web call; returns its id and join token.
fn web_call(s: &TestServer, key: &str) -> (String, String, Value) {
    let call = body(s.post("/api/call", key, &json!({"platform": "web"})), 200);
    let id = call["call_id"].as_str().expect("id").to_string();
    let url = call["join_url"].as_str().expect("join_url").to_string();
    let token = url.rsplit('/').next().expect("token").to_string();
    (id, token, call)
}

/// Reads the agent's socket until `samples` of audio arrived (text frames go to `events`).
fn agent_audio(ws: &mut Ws, samples: usize, events: &mut Vec<Value>) -> Vec<i16> {
    let mut heard = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while heard.len() < samples {
        assert!(
            Instant::now() < deadline,
            "agent audio stalled at {}",
            heard.len()
        );
        match ws.read().expect("agent socket") {
            Message::Binary(b) => heard.extend(samples_from_le(&b)),
            Message::Text(t) => events.push(serde_json::from_str(&t).expect("event")),
            _ => {}
        }
    }
    heard
}

#[test]
fn a_whip_client_and_the_agent_hear_each_other() {
    let s = TestServer::start(Backend::Sqlite);
    let (_, key) = s.signup("whip@example.org");
    let (id, token, call) = web_call(&s, &key);
    assert!(
        call["join_url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/join/", s.url))
    );
    assert!(token.len() >= 32, "join token of 24 random bytes: {token}");
    // The token is shown once: a later read of the call does not carry it.
    let again = body(s.get(&format!("/api/call/{id}"), &key), 200);
    assert!(again.get("join_url").is_none());

    let mut agent = ws::connect(&s, &id, &key);
    ws::send_json(
        &mut agent,
        json!({"type": "audio_config", "sample_rate": 48000, "receive": true}),
    );
    // The agent speaks 660 Hz for the whole test.
    agent
        .send(Message::binary(samples_to_le(&sine(
            SampleRate::HZ_48000,
            660.0,
            -10.0,
            8 * 48_000,
        ))))
        .expect("agent audio");

    let rt = runtime();
    let whip_url = format!("{}/api/call/{id}/whip?name=Alice", s.url);
    let mut client = rt
        .block_on(WhipClient::join(&whip_url, &token))
        .expect("WHIP answer");
    assert_eq!(client.status, 201);
    assert!(
        client
            .location
            .starts_with(&format!("/api/call/{id}/whip/")),
        "Location: {}",
        client.location
    );
    assert!(
        rt.block_on(client.connected(Duration::from_secs(10))),
        "ICE+DTLS up, state {:?}",
        client.state()
    );
    let joined = next_event(&mut agent, 500, |v| {
        v["type"] == "participant_joined" && v["kind"] == "browser"
    });
    assert_eq!(joined["name"], "Alice");

    // The client plays 440 Hz for 4 s; the agent must hear it, the client must hear the
    // agent's 660 Hz and not its own tone.
    let tone = sine(SampleRate::HZ_48000, 440.0, -10.0, 4 * 48_000);
    let player = rt.spawn(async move {
        client.play(&tone).await;
        client
    });
    let mut events = Vec::new();
    let heard = agent_audio(&mut agent, 3 * 48_000, &mut events);
    let a440 = tone_amplitude(&heard[48_000..], SampleRate::HZ_48000, 440.0);
    assert!(a440 > 0.05, "the agent hears the WebRTC peer: {a440}");
    let client = rt.block_on(player).expect("player");
    let received = client.received.lock().unwrap().clone();
    assert!(
        received.len() >= 2 * 48_000,
        "the peer received {} samples",
        received.len()
    );
    let tail = &received[received.len() - 2 * 48_000..];
    let a660 = tone_amplitude(tail, SampleRate::HZ_48000, 660.0);
    let a440_self = tone_amplitude(tail, SampleRate::HZ_48000, 440.0);
    assert!(a660 > 0.05, "the peer hears the agent: {a660}");
    assert!(
        a440_self < a660 / 10.0,
        "the peer does not hear itself: {a440_self} vs {a660}"
    );

    // DELETE on the session ends the participant, with the token as credential.
    let del = s
        .client()
        .delete(format!("{}{}", s.url, client.location))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .expect("DELETE");
    assert_eq!(del.status(), 200);
    let left = next_event(&mut agent, 2000, |v| v["type"] == "participant_left");
    assert_eq!(left["name"], "Alice");
    assert_eq!(left["kind"], "browser");
    // A second DELETE finds nothing.
    let again = s
        .client()
        .delete(format!("{}{}", s.url, client.location))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .expect("DELETE");
    assert_eq!(again.status(), 404);
    rt.block_on(client.close());
}

#[test]
fn a_whep_listener_hears_the_room_and_adds_nothing() {
    let s = TestServer::start(Backend::Sqlite);
    let (_, key) = s.signup("whep@example.org");
    let (id, _token, _) = web_call(&s, &key);
    let mut agent = ws::connect(&s, &id, &key);
    ws::send_json(
        &mut agent,
        json!({"type": "audio_config", "sample_rate": 48000, "receive": true}),
    );
    agent
        .send(Message::binary(samples_to_le(&sine(
            SampleRate::HZ_48000,
            880.0,
            -10.0,
            6 * 48_000,
        ))))
        .expect("agent audio");
    let rt = runtime();
    // The owner's API key works as well as the join token.
    let mut listener = rt
        .block_on(WhipClient::join(
            &format!("{}/api/call/{id}/whep", s.url),
            &key,
        ))
        .expect("WHEP answer");
    assert!(listener.location.contains("/whep/"));
    assert!(rt.block_on(listener.connected(Duration::from_secs(10))));
    // It plays a tone too, but a listener is not mixed: the agent hears silence.
    let tone = sine(SampleRate::HZ_48000, 440.0, -10.0, 3 * 48_000);
    let player = rt.spawn(async move {
        listener.play(&tone).await;
        listener
    });
    let mut events = Vec::new();
    let heard = agent_audio(&mut agent, 2 * 48_000, &mut events);
    let listener = rt.block_on(player).expect("player");
    assert!(
        tone_amplitude(&heard[48_000..], SampleRate::HZ_48000, 440.0) < 0.005,
        "a WHEP listener is not heard"
    );
    let received = listener.received.lock().unwrap().clone();
    assert!(received.len() >= 48_000, "listener got {}", received.len());
    let a880 = tone_amplitude(
        &received[received.len() - 48_000..],
        SampleRate::HZ_48000,
        880.0,
    );
    assert!(a880 > 0.05, "the listener hears the agent: {a880}");
    // Vanishing without a DELETE still ends the participant (DTLS close).
    rt.block_on(listener.close());
    let left = next_event(&mut agent, 3000, of_type("participant_left"));
    assert_eq!(left["name"], "Listener");
}

#[test]
fn whip_requests_are_checked() {
    let s = TestServer::start(Backend::Sqlite);
    let (_, key) = s.signup("whip-bad@example.org");
    let (_, other_key) = s.signup("whip-other@example.org");
    let (id, token, _) = web_call(&s, &key);
    let (other_id, other_token, _) = web_call(&s, &other_key);
    let post = |path: &str, auth: Option<&str>, ctype: &str, sdp: &str| {
        let mut r = s
            .client()
            .post(format!("{}{path}", s.url))
            .header("Content-Type", ctype)
            .body(sdp.to_string());
        if let Some(a) = auth {
            r = r.header("Authorization", format!("Bearer {a}"));
        }
        r.send().expect("POST")
    };
    let whip = format!("/api/call/{id}/whip");
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n";
    // No credential, a wrong token, another call's token, another user's key.
    assert_eq!(post(&whip, None, "application/sdp", offer).status(), 401);
    assert_eq!(
        post(&whip, Some("not-a-token"), "application/sdp", offer).status(),
        401
    );
    body(
        post(&whip, Some(&other_token), "application/sdp", offer),
        404,
    );
    body(post(&whip, Some(&other_key), "application/sdp", offer), 404);
    body(
        post(
            &format!("/api/call/{other_id}/whip"),
            Some(&token),
            "application/sdp",
            offer,
        ),
        404,
    );
    // Not SDP, not the right type, too big, no Opus.
    let e = body(post(&whip, Some(&token), "application/json", "{}"), 422);
    assert!(
        e["detail"].as_str().unwrap().contains("application/sdp"),
        "{e}"
    );
    body(post(&whip, Some(&token), "application/sdp", "hello"), 422);
    let huge = format!("v=0\r\n{}", "a=x\r\n".repeat(20_000));
    body(post(&whip, Some(&token), "application/sdp", &huge), 422);
    let e = body(post(&whip, Some(&token), "application/sdp", offer), 422);
    assert!(e["detail"].as_str().unwrap().contains("Opus"), "{e}");
    let mangled =
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\0\0garbage";
    body(post(&whip, Some(&token), "application/sdp", mangled), 422);
    // A bad name.
    body(
        post(
            &format!("{whip}?name=%07bell"),
            Some(&token),
            "application/sdp",
            offer,
        ),
        422,
    );
    // DELETE of a session that does not exist, and with no credential.
    let del = s
        .client()
        .delete(format!("{}{whip}/nope", s.url))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .unwrap();
    assert_eq!(del.status(), 404);
    let del = s
        .client()
        .delete(format!("{}{whip}/nope", s.url))
        .send()
        .unwrap();
    assert_eq!(del.status(), 401);

    // The join page and its info: the token works until the call ends.
    let page = s
        .client()
        .get(format!("{}/join/{token}", s.url))
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let html = page.text().unwrap();
    assert!(html.contains("/join/assets/join.js"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no outside assets"
    );
    for asset in ["join.js", "join.css"] {
        let r = s
            .client()
            .get(format!("{}/join/assets/{asset}", s.url))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
    }
    assert_eq!(
        s.client()
            .get(format!("{}/join/assets/nope.js", s.url))
            .send()
            .unwrap()
            .status(),
        404
    );
    let info = body(
        s.client()
            .get(format!("{}/join/{token}/info", s.url))
            .send()
            .unwrap(),
        200,
    );
    assert_eq!(info["call_id"], id.as_str());
    assert_eq!(info["whip_url"], format!("/api/call/{id}/whip"));
    body(
        s.client()
            .get(format!("{}/join/wrong/info", s.url))
            .send()
            .unwrap(),
        404,
    );
    body(s.delete(&format!("/api/call/{id}"), &key), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = s
            .client()
            .get(format!("{}/join/{token}/info", s.url))
            .send()
            .unwrap();
        if r.status() == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "the token outlived its call");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `a=candidate` lines of an SDP body: (address, port).
fn candidates(sdp: &str) -> Vec<(String, u16)> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a=candidate:"))
        .filter_map(|c| {
            let f: Vec<&str> = c.split_whitespace().collect();
            Some((f.get(4)?.to_string(), f.get(5)?.parse().ok()?))
        })
        .collect()
}

#[test]
fn media_ports_come_from_the_configured_range_and_public_ips_are_announced() {
    let base = 46_000 + (std::process::id() % 500) as u16 * 10;
    let s = TestServer::start_with(Backend::Sqlite, |c| {
        c.webrtc_port_min = Some(base);
        c.webrtc_port_max = Some(base + 9);
    });
    let (_, key) = s.signup("ports@example.org");
    let (id, token, _) = web_call(&s, &key);
    let rt = runtime();
    let url = format!("{}/api/call/{id}/whip", s.url);
    let mut client = rt.block_on(WhipClient::join(&url, &token)).expect("answer");
    let found = candidates(&client.answer);
    assert!(!found.is_empty(), "no candidate in {}", client.answer);
    for (ip, port) in &found {
        assert_eq!(ip, "127.0.0.1");
        assert!(
            (base..=base + 9).contains(port),
            "port {port} outside {base}-{}",
            base + 9
        );
    }
    assert!(rt.block_on(client.connected(Duration::from_secs(10))));
    rt.block_on(client.close());

    // Behind 1:1 NAT the answer names the public address instead of the bound one.
    let s = TestServer::start_with(Backend::Sqlite, |c| {
        c.webrtc_public_ips = vec!["192.0.2.44".parse().unwrap()];
    });
    let (_, key) = s.signup("nat@example.org");
    let (id, token, _) = web_call(&s, &key);
    let url = format!("{}/api/call/{id}/whip", s.url);
    let client = rt.block_on(WhipClient::join(&url, &token)).expect("answer");
    let found = candidates(&client.answer);
    assert!(
        found.iter().any(|(ip, _)| ip == "192.0.2.44"),
        "public IP not announced: {found:?}"
    );
    assert!(found.iter().all(|(ip, _)| ip != "127.0.0.1"), "{found:?}");
    rt.block_on(client.close());
}
