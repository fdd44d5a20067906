//! Plain RTP legs over real UDP on 127.0.0.1: a test socket plays the remote media system.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use chamade_actors::bridge::rtp::{RtpCodec, RtpReceiver, RtpSender};
use chamade_media::analysis::{samples_from_le, samples_to_le, sine, tone_amplitude};
use chamade_media::{Frame, SampleRate};
use serde_json::json;
use tungstenite::Message;

use crate::support::{Backend, TestServer, json as body};

#[test]
fn an_rtp_leg_and_an_agent_hear_each_other() {
    let s = TestServer::start(Backend::Sqlite);
    let (_, key) = s.signup("rtp@example.org");
    let call = body(s.post("/api/call", &key, &json!({"platform": "web"})), 200);
    let id = call["call_id"].as_str().unwrap().to_string();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let port = peer.local_addr().unwrap().port();
    let leg = body(
        s.post(
            &format!("/api/call/{id}/rtp"),
            &key,
            &json!({"address": "127.0.0.1", "port": port, "codec": "PCMU"}),
        ),
        201,
    );
    assert_eq!(leg["payload_type"], 0);
    let ours = format!("127.0.0.1:{}", leg["local_port"].as_u64().unwrap());

    // The agent listens at 8 kHz and speaks 1 kHz; the RTP peer speaks 440 Hz.
    let url = format!(
        "{}/api/call/{id}/stream?api_key={key}",
        s.url.replace("http://", "ws://")
    );
    let (mut ws, _) = tungstenite::connect(url).unwrap();
    ws.send(Message::text(
        json!({"type": "audio_config", "sample_rate": 8000, "receive": true}).to_string(),
    ))
    .unwrap();
    ws.send(Message::binary(samples_to_le(&sine(
        SampleRate::HZ_8000,
        1000.0,
        -10.0,
        5 * 8000,
    ))))
    .unwrap();

    let rate = SampleRate::HZ_8000;
    let mut tx = RtpSender::new(RtpCodec::Pcmu, 77, 100, 0).unwrap();
    let tone = sine(rate, 440.0, -10.0, 160 * 150);
    let sender_sock = peer.try_clone().unwrap();
    let target = ours.clone();
    let pacer = std::thread::spawn(move || {
        // Paced at 20 ms like a real endpoint (the count of packets is what matters).
        let start = Instant::now();
        for (i, chunk) in tone.chunks_exact(160).enumerate() {
            let f = Frame::from_samples(rate, chunk).unwrap();
            sender_sock
                .send_to(tx.packetize(&f).unwrap(), &target)
                .unwrap();
            let due = start + Duration::from_millis(20 * (i as u64 + 1));
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    });

    // The peer receives the agent's 1 kHz tone as RTP.
    let mut rx = RtpReceiver::new(RtpCodec::Pcmu).unwrap();
    let mut heard_by_peer = Vec::new();
    let mut buf = [0u8; 2048];
    while heard_by_peer.len() < 8000 * 2 {
        let (n, from) = peer.recv_from(&mut buf).expect("RTP from the gateway");
        assert_eq!(from.to_string(), ours, "symmetric RTP");
        rx.on_datagram(&buf[..n]).unwrap();
        heard_by_peer.extend_from_slice(rx.next_frame().samples());
    }
    assert!(
        tone_amplitude(&heard_by_peer[8000..], rate, 1000.0) > 0.1,
        "the peer hears the agent"
    );
    assert!(
        tone_amplitude(&heard_by_peer[8000..], rate, 440.0) < 0.01,
        "the peer does not hear itself"
    );

    // The agent receives the peer's 440 Hz.
    let mut heard_by_agent = Vec::new();
    while heard_by_agent.len() < 8000 * 2 {
        if let Message::Binary(b) = ws.read().unwrap() {
            heard_by_agent.extend(samples_from_le(&b));
        }
    }
    let a440 = tone_amplitude(&heard_by_agent[8000..], rate, 440.0);
    assert!(a440 > 0.1, "the agent hears the RTP peer: {a440}");
    pacer.join().unwrap();

    // Removing the leg stops its packets.
    let leg_id = leg["leg_id"].as_str().unwrap();
    let del = s
        .req(
            reqwest::Method::DELETE,
            &format!("/api/call/{id}/rtp/{leg_id}"),
            &key,
        )
        .send()
        .unwrap();
    assert_eq!(del.status(), 204);
    std::thread::sleep(Duration::from_millis(200));
    peer.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    while peer.recv_from(&mut buf).is_ok() {}
    assert!(
        peer.recv_from(&mut buf).is_err(),
        "packets still flow after the leg was removed"
    );
}

#[test]
fn rtp_leg_requests_are_checked() {
    let s = TestServer::start(Backend::Sqlite);
    let (_, key) = s.signup("rtp-bad@example.org");
    let (_, other) = s.signup("rtp-other@example.org");
    let call = body(s.post("/api/call", &key, &json!({"platform": "web"})), 200);
    let id = call["call_id"].as_str().unwrap();
    let path = format!("/api/call/{id}/rtp");
    body(
        s.post(
            &path,
            &key,
            &json!({"address": "localhost", "port": 4000, "codec": "PCMU"}),
        ),
        422,
    );
    body(
        s.post(
            &path,
            &key,
            &json!({"address": "127.0.0.1", "port": 0, "codec": "PCMU"}),
        ),
        422,
    );
    body(
        s.post(
            &path,
            &key,
            &json!({"address": "127.0.0.1", "port": 4000, "codec": "G729"}),
        ),
        422,
    );
    body(
        s.post(
            &path,
            &other,
            &json!({"address": "127.0.0.1", "port": 4000, "codec": "PCMU"}),
        ),
        404,
    );
    let leg = body(
        s.post(
            &path,
            &key,
            &json!({"address": "127.0.0.1", "port": 4000, "codec": "opus"}),
        ),
        201,
    );
    assert_eq!(leg["payload_type"], 111);
    let leg_id = leg["leg_id"].as_str().unwrap();
    let by_other = s
        .req(reqwest::Method::DELETE, &format!("{path}/{leg_id}"), &other)
        .send()
        .unwrap();
    assert_eq!(by_other.status(), 404);
    let ok = s
        .req(reqwest::Method::DELETE, &format!("{path}/{leg_id}"), &key)
        .send()
        .unwrap();
    assert_eq!(ok.status(), 204);
    let again = s
        .req(reqwest::Method::DELETE, &format!("{path}/{leg_id}"), &key)
        .send()
        .unwrap();
    assert_eq!(again.status(), 404);
}
