//! Hostile SIP datagrams against a live gateway: every file of
//! `tests/fixtures/sip-malformed/` is sent three times over UDP to the gateway's SIP port,
//! from 127.0.0.1, which is also the host of the account's trunk, so that the INVITEs among
//! them pass the trunk's source check and reach the call logic. Afterwards the gateway
//! must still answer OPTIONS, still serve its HTTP API, have created no call, and every
//! reply it sent must have been a well-formed SIP error response (or a keep-alive pong).
//! A well-formed INVITE then rings, and its CANCEL ends the call, which shows that the
//! corpus was refused for what it is rather than because nothing could ring.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Backend, TestServer, json as body};

/// The number the account owns on its trunk, which the corpus's INVITEs call.
const DID: &str = "+15550100";
/// Times each file is sent, as a retransmitting or flooding peer would.
const SENDS_PER_FILE: usize = 3;

/// The corpus files the gateway answers, with the status codes each may get (all of its
/// replies, retransmissions included, must be among them, and there must be one). Every
/// other file must get no reply at all: a datagram that cannot be parsed into a request
/// with Via, From, To, Call-ID and CSeq is dropped (RFC 3261 §18.3), as are ACKs and
/// stray responses. A 488 is only ever sent by the gateway's inbound-call logic, after
/// the number lookup and the trunk's source check, so the INVITEs answered 488 did reach
/// it.
const ANSWERED: &[(&str, &[u16])] = &[
    // No dialog or transaction to match: 481 (RFC 3261 §15.1.2, §9.2).
    ("bye-unknown-dialog.sip", &[481]),
    ("cancel-unknown-transaction.sip", &[481]),
    // 405 or 501 are the RFC 3261 §8.2.1 answers; the SIP stack answers 481 to any request
    // no layer takes.
    ("unknown-method.sip", &[405, 481, 501]),
    // The first Content-Length (0) wins: an INVITE without an offer.
    ("content-length-duplicate-contradictory.sip", &[400, 488]),
    // The body is cut at 20 bytes, which is no SDP.
    ("content-length-smaller-than-body.sip", &[400, 488]),
    // A 60 KB Subject and no offer.
    ("header-60kb.sip", &[400, 488]),
    ("invalid-utf8-body.sip", &[400, 488]),
    ("invite-sdp-10000-lines.sip", &[400, 488]),
    ("invite-sdp-garbage.sip", &[400, 488]),
    ("invite-sdp-no-media-line.sip", &[400, 488]),
    ("invite-sdp-port-zero.sip", &[400, 488]),
    // RFC 3261 §8.1.1.5: the CSeq must name the request's method.
    ("cseq-method-mismatch.sip", &[400]),
];

/// A UDP port on 127.0.0.1 that was free a moment ago (bound, read, released).
fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a probe socket");
    socket.local_addr().expect("probe address").port()
}

/// The corpus, by file name (dotfiles such as `.gitattributes` are not datagrams).
fn corpus() -> BTreeMap<String, Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sip-malformed");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("read the corpus folder") {
        let path = entry.expect("corpus entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name")
            .to_string();
        if name.starts_with('.') {
            continue;
        }
        files.insert(name, std::fs::read(&path).expect("read a corpus file"));
    }
    files
}

/// The test's SIP peer: one socket on 127.0.0.1 that sends to the gateway and keeps every
/// datagram the gateway sends back.
struct Peer {
    socket: UdpSocket,
    gateway: SocketAddr,
    received: Vec<Vec<u8>>,
}

impl Peer {
    fn new(gateway: SocketAddr) -> Peer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the peer socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        Peer {
            socket,
            gateway,
            received: Vec::new(),
        }
    }

    fn port(&self) -> u16 {
        self.socket.local_addr().expect("peer address").port()
    }

    fn send(&self, datagram: &[u8]) {
        self.socket
            .send_to(datagram, self.gateway)
            .expect("send a datagram");
    }

    /// Keeps what arrives for `how_long`.
    fn drain(&mut self, how_long: Duration) {
        let deadline = Instant::now() + how_long;
        while Instant::now() < deadline {
            self.receive_one();
        }
    }

    /// Waits up to 10 s for a datagram matching `pred` (kept like every other one).
    fn wait_for(&mut self, what: &str, pred: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let seen = self.received.len();
        loop {
            if let Some(d) = self.received[seen..].iter().find(|d| pred(d)) {
                return d.clone();
            }
            assert!(Instant::now() < deadline, "the gateway never sent {what}");
            self.receive_one();
        }
    }

    fn receive_one(&mut self) {
        let mut buf = vec![0u8; 65_536];
        match self.socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                assert_eq!(from, self.gateway, "a datagram from a stranger");
                buf.truncate(n);
                self.received.push(buf);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("receive: {e}"),
        }
    }
}

/// A SIP response's status code, when the datagram is a well-formed response head:
/// `SIP/2.0 NNN Reason` then header lines, each `Name: value`, then an empty line, all
/// in UTF-8 with CRLF line ends.
fn status_of(datagram: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(datagram).ok()?;
    let (head, _body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let rest = status_line.strip_prefix("SIP/2.0 ")?;
    let (code, reason) = rest.split_once(' ')?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) || reason.trim().is_empty() {
        return None;
    }
    for line in lines {
        let (name, _) = line.split_once(':')?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) || line.contains('\n') {
            return None;
        }
    }
    code.parse().ok()
}

/// The value of header `name` in a SIP message, or `None`.
fn header<'a>(datagram: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(datagram).ok()?;
    let head = text.split("\r\n\r\n").next()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The corpus file a reply answers: the corpus's Call-IDs are `<file stem>@malformed.test`.
fn answered_file(reply: &[u8]) -> Option<String> {
    header(reply, "Call-ID")?
        .strip_suffix("@malformed.test")
        .map(|stem| format!("{stem}.sip"))
}

/// A well-formed request from the peer; `branch` and `call_id` make it its own
/// transaction and dialog.
fn request(
    peer: &Peer,
    method: &str,
    branch: &str,
    call_id: &str,
    cseq: u32,
    sdp: Option<&str>,
) -> Vec<u8> {
    let port = peer.port();
    let (ctype, body) = match sdp {
        Some(sdp) => ("Content-Type: application/sdp\r\n", sdp),
        None => ("", ""),
    };
    format!(
        "{method} sip:{DID}@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+15550199@127.0.0.1>;tag=caller-{call_id}\r\n\
         To: <sip:{DID}@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:+15550199@127.0.0.1:{port}>\r\n\
         {ctype}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An audio offer of PCMU and telephone-events toward the peer (which never reads RTP).
fn offer(port: u16) -> String {
    format!(
        "v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n"
    )
}

/// The owner's calls as stored, whatever their state.
fn stored_calls(server: &TestServer, user_id: &str) -> Vec<chamade::db::calls::CallRow> {
    chamade::db::calls::calls_of(&mut server.conn(), user_id).expect("read the calls")
}

fn live_calls(server: &TestServer, key: &str) -> Vec<Value> {
    body(server.get("/api/calls", key), 200)["calls"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn hostile_datagrams_are_refused_and_the_gateway_keeps_answering() {
    let sip_port = free_udp_port();
    let gateway = SocketAddr::from(([127, 0, 0, 1], sip_port));
    let server = TestServer::start_with(Backend::Sqlite, |c| c.sip_listen = Some(gateway));
    let (user_id, key) = server.signup("hostile@example.com");
    // The trunk: a socket on 127.0.0.1 that never answers (its registration keeps failing,
    // which does not matter to inbound INVITEs).
    let trunk = UdpSocket::bind("127.0.0.1:0").expect("bind the trunk socket");
    let trunk_port = trunk.local_addr().expect("trunk address").port();
    body(
        server.post(
            "/api/sip/trunk",
            &key,
            &json!({"sip_host": "127.0.0.1", "sip_port": trunk_port,
                    "sip_username": "gw", "sip_password": "x"}),
        ),
        201,
    );
    body(
        server.post("/api/sip/trunk/dids", &key, &json!({"number": DID})),
        201,
    );

    let mut peer = Peer::new(gateway);
    let files = corpus();
    assert!(files.len() >= 25, "the corpus has {} files", files.len());
    for (name, _) in ANSWERED {
        assert!(files.contains_key(*name), "{name} is not in the corpus");
    }
    for _ in 0..SENDS_PER_FILE {
        for datagram in files.values() {
            peer.send(datagram);
            // Paced so that the gateway's socket buffer never overflows, the large
            // datagrams most; replies are read as they come.
            let pause = if datagram.len() > 16 * 1024 { 50 } else { 5 };
            peer.drain(Duration::from_millis(pause));
        }
    }
    // Until every file that gets a reply has one (a loaded machine may be slow), then a
    // while longer for any reply that should not come.
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline
        && !ANSWERED.iter().all(|(name, _)| {
            peer.received
                .iter()
                .any(|r| answered_file(r).as_deref() == Some(*name))
        })
    {
        peer.drain(Duration::from_millis(100));
    }
    peer.drain(Duration::from_secs(1));

    // Every reply is a keep-alive pong or a well-formed response to a corpus file.
    let mut codes: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    let mut pongs = 0;
    for reply in &peer.received {
        if reply.as_slice() == b"\r\n" {
            pongs += 1;
            continue;
        }
        let shown = String::from_utf8_lossy(reply);
        let code = status_of(reply).unwrap_or_else(|| panic!("not a SIP response: {shown:?}"));
        let file = answered_file(reply).unwrap_or_else(|| panic!("a reply to no file: {shown:?}"));
        codes.entry(file).or_default().push(code);
    }
    // A double-CRLF ping gets its CRLF pong (RFC 5626 §3.5.1), once per send.
    assert_eq!(pongs, SENDS_PER_FILE, "keep-alive pongs");
    for (file, got) in &codes {
        if let Some((_, allowed)) = ANSWERED.iter().find(|(name, _)| name == file) {
            assert!(
                got.iter().all(|c| allowed.contains(c)),
                "{file} got {got:?}, not {allowed:?}"
            );
        } else {
            panic!("{file} should get no reply, got {got:?}");
        }
    }
    for (name, _) in ANSWERED {
        assert!(
            codes.contains_key(*name),
            "{name} got no reply; replies: {codes:?}"
        );
    }

    // No malformed datagram made a call, live or stored.
    let stored = stored_calls(&server, &user_id);
    assert!(stored.is_empty(), "calls were made: {stored:?}");
    assert_eq!(live_calls(&server, &key), Vec::<Value>::new());

    // The gateway still answers, on SIP and on HTTP.
    peer.send(&request(
        &peer,
        "OPTIONS",
        "options-after",
        "options-after@test",
        1,
        None,
    ));
    let reply = peer.wait_for("a reply to OPTIONS", |d| {
        header(d, "Call-ID") == Some("options-after@test")
    });
    assert_eq!(
        status_of(&reply),
        Some(200),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    let health = server
        .client()
        .get(format!("{}/api/health", server.url))
        .send()
        .expect("GET /api/health");
    assert_eq!(body(health, 200)["status"], "ok");

    // A well-formed INVITE still rings a call, and its CANCEL ends it as missed.
    let sdp = offer(peer.port() + 2);
    peer.send(&request(
        &peer,
        "INVITE",
        "good-invite",
        "good-invite@test",
        1,
        Some(&sdp),
    ));
    peer.wait_for("180 to the INVITE", |d| {
        header(d, "Call-ID") == Some("good-invite@test") && status_of(d) == Some(180)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let call = loop {
        let found = live_calls(&server, &key)
            .into_iter()
            .find(|c| c["caller"] == "+15550199");
        if let Some(c) = found {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "the INVITE rang but no call is listed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(call["state"], "ringing", "{call}");
    assert_eq!(call["direction"], "inbound", "{call}");
    let call_id = call["call_id"].as_str().expect("call_id").to_string();
    peer.send(&request(
        &peer,
        "CANCEL",
        "good-invite",
        "good-invite@test",
        1,
        None,
    ));
    let terminated = peer.wait_for("487 to the INVITE", |d| {
        header(d, "Call-ID") == Some("good-invite@test") && status_of(d) == Some(487)
    });
    assert_eq!(header(&terminated, "CSeq"), Some("1 INVITE"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = body(server.get(&format!("/api/call/{call_id}"), &key), 200);
        if c["state"] == "missed" {
            break;
        }
        assert!(Instant::now() < deadline, "the cancelled call is {c}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        live_calls(&server, &key)
            .iter()
            .all(|c| c["call_id"] != call_id.as_str()),
        "the cancelled call is still live"
    );
    drop(trunk);
}

/// ezk-sip-core 0.9.2 frames a UDP datagram's body with an unchecked
/// `head_end + Content-Length`: a Content-Length near `usize::MAX` panics its UDP receive
/// task (an overflow, or a reversed slice range without overflow checks), after which the
/// gateway read no SIP at all. The fuzz target `sip_message` found it; the copy in
/// `vendor/ezk-sip-core` checks the addition (vendor/README.md).
#[test]
fn a_content_length_near_usize_max_does_not_stop_sip() {
    let sip_port = free_udp_port();
    let gateway = SocketAddr::from(([127, 0, 0, 1], sip_port));
    let _server = TestServer::start_with(Backend::Sqlite, |c| {
        c.sip_listen = Some(gateway);
    });
    let mut peer = Peer::new(gateway);
    peer.send(&request(&peer, "OPTIONS", "before", "before@test", 1, None));
    let reply = peer.wait_for("a reply to the first OPTIONS", |d| {
        header(d, "Call-ID") == Some("before@test")
    });
    assert_eq!(status_of(&reply), Some(200));

    let options = request(&peer, "OPTIONS", "huge", "huge@test", 1, None);
    let hostile = String::from_utf8(options).expect("ASCII").replace(
        "Content-Length: 0",
        &format!("Content-Length: {}", usize::MAX),
    );
    peer.send(hostile.as_bytes());

    peer.send(&request(&peer, "OPTIONS", "after", "after@test", 1, None));
    let reply = peer.wait_for("a reply to OPTIONS after the hostile datagram", |d| {
        header(d, "Call-ID") == Some("after@test")
    });
    assert_eq!(status_of(&reply), Some(200));
}
