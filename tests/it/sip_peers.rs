//! The SIP test peers themselves: the kamailio trunk authenticates and registers the baresip
//! phones, routes a DID call between them, and the audio and DTMF they exchange arrive intact.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::TempDir;
use crate::support::sip_peers::{
    Baresip, BaresipOpts, Kamailio, KamailioOpts, Source, best_match, read_wav, test_signal,
    write_wav,
};

/// The `WWW-Authenticate` header the trunk answers an unauthenticated REGISTER with.
fn register_challenge(kamailio: &Kamailio, user: &str) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let local = socket.local_addr().expect("address").port();
    let port = kamailio.port();
    let register = format!(
        "REGISTER sip:trunk.test SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-challenge;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@trunk.test>;tag=c1\r\n\
         To: <sip:{user}@trunk.test>\r\n\
         Call-ID: challenge-{local}@127.0.0.1\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:{user}@127.0.0.1:{local}>\r\n\
         Expires: 60\r\n\
         Content-Length: 0\r\n\r\n"
    );
    socket
        .send_to(register.as_bytes(), ("127.0.0.1", port))
        .expect("send REGISTER");
    let mut buf = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buf).expect("an answer to REGISTER");
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        answer.starts_with("SIP/2.0 401"),
        "unauthenticated REGISTER not challenged: {answer}"
    );
    answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
        .expect("a WWW-Authenticate header")
        .to_string()
}

#[test]
fn phones_register_with_digest_auth() {
    let kamailio = Kamailio::start(KamailioOpts::default());
    let challenge = register_challenge(&kamailio, "alice");
    assert!(challenge.contains("realm=\"trunk.test\""), "{challenge}");
    assert!(!challenge.contains("qop"), "{challenge}");

    let alice = Baresip::start(BaresipOpts::new("alice", kamailio.port()));
    let bob = Baresip::start(BaresipOpts::new("bob", kamailio.port()));
    for user in ["alice", "bob"] {
        assert!(
            kamailio.wait_registered(user, Duration::from_secs(10)),
            "{user} did not register; kamailio log:\n{}\nalice:\n{}\nbob:\n{}",
            kamailio.log(),
            alice.log(),
            bob.log()
        );
    }
    assert!(!kamailio.registered("gw"));
    let log = kamailio.log();
    assert!(log.contains("REGISTERED alice"), "{log}");
    assert!(log.contains("REGISTER challenge for alice"), "{log}");
}

#[test]
fn registration_with_qop_challenge() {
    let kamailio = Kamailio::start(KamailioOpts {
        qop: true,
        ..KamailioOpts::default()
    });
    let challenge = register_challenge(&kamailio, "gw");
    assert!(challenge.contains("qop=\"auth\""), "{challenge}");

    let gw = Baresip::start(BaresipOpts::new("gw", kamailio.port()));
    assert!(
        kamailio.wait_registered("gw", Duration::from_secs(10)),
        "gw did not register with qop; kamailio log:\n{}\nbaresip log:\n{}",
        kamailio.log(),
        gw.log()
    );
}

/// Length of the test signal in each direction, after its 0.3 s lead-in.
const SIGNAL_SECS: f32 = 3.0;

/// A source file: the test signal of `seed`, then silence so that the call outlives it
/// (baresip hangs up when its source ends). Returns the path and the signal alone.
fn source(dir: &TempDir, seed: u64) -> (PathBuf, Vec<i16>) {
    let signal = test_signal(8000, SIGNAL_SECS, seed);
    let mut samples = signal.clone();
    samples.resize(signal.len() + 4 * 8000, 0);
    let path = dir.0.join(format!("source-{seed}.wav"));
    write_wav(&path, 8000, &samples);
    (path, signal)
}

#[test]
fn did_call_carries_audio_and_dtmf_both_ways() {
    let kamailio = Kamailio::start(KamailioOpts::default());
    let dir = TempDir::new();
    let (bob_wav, bob_signal) = source(&dir, 1);
    let (alice_wav, alice_signal) = source(&dir, 2);
    let mut bob = Baresip::start(BaresipOpts {
        source: Source::Wav(bob_wav),
        ..BaresipOpts::new("bob", kamailio.port())
    });
    let mut alice = Baresip::start(BaresipOpts {
        source: Source::Wav(alice_wav),
        ..BaresipOpts::new("alice", kamailio.port())
    });
    for user in ["alice", "bob"] {
        assert!(
            kamailio.wait_registered(user, Duration::from_secs(10)),
            "{user} did not register; kamailio log:\n{}",
            kamailio.log()
        );
    }

    alice.dial("sip:+15550300@trunk.test");
    let wait = Duration::from_secs(10);
    let answered = bob
        .wait_event("CALL_ESTABLISHED", wait)
        .unwrap_or_else(|| panic!("no call reached bob; kamailio log:\n{}", kamailio.log()));
    assert_eq!(answered["peeruri"], "sip:alice@trunk.test", "{answered}");
    let placed = alice
        .wait_event("CALL_ESTABLISHED", wait)
        .unwrap_or_else(|| panic!("alice's call not established; log:\n{}", alice.log()));
    assert_eq!(placed["peeruri"], "sip:+15550300@trunk.test", "{placed}");
    let established = Instant::now();
    let log = kamailio.log();
    assert!(log.contains("INVITE challenge (407) for alice"), "{log}");
    assert!(log.contains("routing INVITE to sip:bob"), "{log}");

    // DTMF goes after the signals, so that it cannot disturb them.
    let signal_time = Duration::from_secs_f32(0.3 + SIGNAL_SECS + 0.3);
    std::thread::sleep(signal_time.saturating_sub(established.elapsed()));
    alice.send_dtmf("12#");
    let digits: Vec<String> = (0..3)
        .map(|_| {
            let e = bob
                .wait_event("CALL_DTMF_START", Duration::from_secs(3))
                .unwrap_or_else(|| panic!("missing DTMF; bob saw {:?}", bob.events_seen()));
            e["param"].as_str().expect("DTMF digit").to_string()
        })
        .collect();
    assert_eq!(digits, ["1", "2", "#"]);
    for _ in 0..3 {
        assert!(
            bob.wait_event("CALL_DTMF_END", Duration::from_secs(1))
                .is_some(),
            "a digit without its end; bob saw {:?}",
            bob.events_seen()
        );
    }

    alice.hangup();
    alice
        .wait_event("CALL_CLOSED", wait)
        .expect("alice's call closed");
    bob.wait_event("CALL_CLOSED", wait)
        .expect("bob's call closed");

    for (name, phone, sent, other) in [
        ("bob -> alice", &alice, &bob_signal, &alice_signal),
        ("alice -> bob", &bob, &alice_signal, &bob_signal),
    ] {
        let path = phone
            .received_recording()
            .unwrap_or_else(|| panic!("{name}: no recording"));
        let (rate, received) = read_wav(&path);
        assert_eq!(rate, 8000, "{name}");
        let (corr, lag) = best_match(sent, &received);
        let (wrong, _) = best_match(other, &received);
        println!("{name}: corr {corr:.4} at lag {lag}, other signal {wrong:.3}");
        assert!(corr >= 0.8, "{name}: correlation {corr} at lag {lag}");
        assert!(wrong < 0.3, "{name}: the other signal correlates {wrong}");
    }
}

#[test]
fn wav_files_and_alignment() {
    let dir = TempDir::new();
    let signal = test_signal(8000, 1.0, 7);
    assert_eq!(signal.len(), 10_400);
    assert!(signal[..2400].iter().all(|&s| s == 0), "0.3 s lead-in");
    let peak = signal.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
    assert!((6000..=16_400).contains(&peak), "peak {peak}");
    assert_eq!(signal, test_signal(8000, 1.0, 7), "same seed, same signal");

    // A file with an extra chunk between fmt and data, as some writers produce.
    let plain = dir.0.join("plain.wav");
    write_wav(&plain, 8000, &signal);
    let bytes = std::fs::read(&plain).expect("read");
    let mut extra = bytes[..36].to_vec();
    extra.extend_from_slice(b"LIST\x03\x00\x00\x00abc\x00");
    extra.extend_from_slice(&bytes[36..]);
    let with_extra = dir.0.join("extra.wav");
    std::fs::write(&with_extra, extra).expect("write");
    assert_eq!(read_wav(&plain), (8000, signal.clone()));
    assert_eq!(read_wav(&with_extra), (8000, signal.clone()));

    // Delayed by 1234 samples, and missing its first 800 samples.
    let mut delayed = vec![0i16; 1234];
    delayed.extend_from_slice(&signal);
    let (corr, lag) = best_match(&signal, &delayed);
    assert!(corr > 0.999 && lag == 1234, "{corr} {lag}");
    let (corr, lag) = best_match(&signal, &signal[800..]);
    assert!(corr > 0.999 && lag == -800, "{corr} {lag}");
    let (corr, _) = best_match(&signal, &test_signal(8000, 1.0, 8));
    assert!(corr < 0.3, "unrelated signals correlate {corr}");
}
