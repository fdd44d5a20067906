//! A phone that stops sending RTP is taken for gone: the gateway sends a BYE and the call
//! ends `disconnected`. The phone here is the test itself, speaking SIP over a UDP socket
//! and never sending a single RTP packet.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Backend, TestServer, json as body};

const DID: &str = "+15550100";

/// Reads datagrams until one starts with `prefix`; answers it as text.
fn expect(socket: &UdpSocket, prefix: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 65_536];
    while Instant::now() < deadline {
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if text.starts_with(prefix) {
                return text;
            }
        }
    }
    panic!("no {prefix:?} within {within:?}")
}

fn header<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .unwrap_or_else(|| panic!("no {name} in {message}"))
}

#[test]
fn a_phone_that_stops_sending_rtp_is_hung_up() {
    let sip_port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.sip_listen = Some(format!("127.0.0.1:{sip_port}").parse().expect("addr"));
        c.rtp_timeout_secs = 2;
    });
    let (_, key) = server.signup("dead@example.com");
    // The trunk is this machine, so the test's own socket may ring the number.
    body(
        server.post(
            "/api/sip/trunk",
            &key,
            &json!({"sip_host": "127.0.0.1", "sip_port": 9, "sip_username": "gw", "sip_password": "x"}),
        ),
        201,
    );
    let did = body(
        server.post("/api/sip/trunk/dids", &key, &json!({"number": DID})),
        201,
    );
    let settings = format!(
        "/api/sip/trunk/dids/{}/settings",
        did["did_id"].as_str().expect("id")
    );
    body(
        server.post(&settings, &key, &json!({"auto_answer": true})),
        200,
    );

    let phone = UdpSocket::bind("127.0.0.1:0").expect("phone socket");
    phone
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let port = phone.local_addr().expect("addr").port();
    // An RTP port that exists but never sends anything.
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
    let rtp_port = rtp.local_addr().expect("addr").port();
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    let gateway = format!("127.0.0.1:{sip_port}");
    let invite = format!(
        "INVITE sip:{DID}@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKdead1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+15550199@127.0.0.1>;tag=phone\r\n\
         To: <sip:{DID}@127.0.0.1>\r\n\
         Call-ID: dead-call\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:+15550199@127.0.0.1:{port}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    phone
        .send_to(invite.as_bytes(), &gateway)
        .expect("send INVITE");
    let ok = expect(&phone, "SIP/2.0 200", Duration::from_secs(10));
    let to = header(&ok, "To");
    let ack = format!(
        "ACK sip:{DID}@127.0.0.1:{sip_port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKdead2\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+15550199@127.0.0.1>;tag=phone\r\n\
         To: {to}\r\n\
         Call-ID: dead-call\r\n\
         CSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n"
    );
    phone.send_to(ack.as_bytes(), &gateway).expect("send ACK");
    let calls = body(server.get("/api/calls", &key), 200);
    let call_id = calls["calls"][0]["call_id"]
        .as_str()
        .expect("a call")
        .to_string();

    // No RTP for 2 s: the gateway hangs up.
    let bye = expect(&phone, "BYE ", Duration::from_secs(15));
    assert_eq!(header(&bye, "Call-ID"), "dead-call");
    let reply = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: dead-call\r\nCSeq: {}\r\n\
         Content-Length: 0\r\n\r\n",
        header(&bye, "Via"),
        header(&bye, "From"),
        header(&bye, "To"),
        header(&bye, "CSeq"),
    );
    phone
        .send_to(reply.as_bytes(), &gateway)
        .expect("answer BYE");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let call = body(server.get(&format!("/api/call/{call_id}"), &key), 200);
        if call["state"] == "disconnected" {
            break;
        }
        assert!(Instant::now() < deadline, "the call is {call}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
