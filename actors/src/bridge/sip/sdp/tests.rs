use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

fn local() -> LocalMedia {
    LocalMedia {
        address: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
        rtp_port: 40_000,
        session_id: 4_242,
    }
}

fn sdp(text: &str) -> SessionDescription {
    parse(text.replace('\n', "\r\n").as_bytes()).expect("test SDP parses")
}

fn answer_text(offer_text: &str) -> Result<(String, Negotiated), SdpError> {
    answer(&sdp(offer_text), &local()).map(|(sd, n)| (sd.to_string(), n))
}

/// What baresip 3.x sends for an outgoing call with its default audio codecs.
const BARESIP_OFFER: &str = "v=0
o=- 1936862553 3141224357 IN IP4 192.168.1.20
s=-
c=IN IP4 192.168.1.20
t=0 0
a=tool:baresip 3.10.1
m=audio 10010 RTP/AVP 9 0 8 101
b=AS:64
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp:10011
a=sendrecv
a=label:1
a=ssrc:2928390011 cname:4e2a0f0c-6d1b-4b7e-9a55-0c1f3f8f4b21
a=rtcp-rsize
a=ptime:20
";

#[test]
fn our_offer_parses_back() {
    let text = offer(&local()).to_string();
    assert!(text.starts_with("v=0\r\n"), "{text}");
    for line in [
        "o=- 4242 4242 IN IP4 203.0.113.7",
        "s=chamade",
        "c=IN IP4 203.0.113.7",
        "t=0 0",
        "m=audio 40000 RTP/AVP 0 8 101",
        "a=sendrecv",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
    ] {
        assert!(
            text.contains(&format!("{line}\r\n")),
            "{line} missing in\n{text}"
        );
    }
    let back = parse(text.as_bytes()).unwrap();
    assert_eq!(back.media_descriptions.len(), 1);
    let m = &back.media_descriptions[0];
    assert_eq!(m.media.fmts, [0, 8, 101]);
    assert_eq!(m.direction, Direction::SendRecv);
    // Another chamade answering it picks PCMU and telephone-events.
    let (_, n) = answer(&back, &local()).unwrap();
    assert_eq!(n.codec, RtpCodec::Pcmu);
    assert_eq!(n.dtmf_payload_type, Some(101));
    assert_eq!(
        n.remote,
        "203.0.113.7:40000".parse::<std::net::SocketAddr>().unwrap()
    );
}

#[test]
fn ipv6_offer_uses_ip6_lines() {
    let mut l = local();
    l.address = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let text = offer(&l).to_string();
    assert!(text.contains("c=IN IP6 ::1\r\n"), "{text}");
    assert!(text.contains("o=- 4242 4242 IN IP6 ::1\r\n"), "{text}");
}

#[test]
fn baresip_offer_is_answered_with_pcmu_and_telephone_events() {
    let (text, n) = answer_text(BARESIP_OFFER).unwrap();
    assert_eq!(
        n,
        Negotiated {
            codec: RtpCodec::Pcmu,
            payload_type: 0,
            dtmf_payload_type: Some(101),
            remote: "192.168.1.20:10010"
                .parse::<std::net::SocketAddr>()
                .unwrap(),
            ptime_ms: 20,
        }
    );
    for line in [
        "c=IN IP4 203.0.113.7",
        "m=audio 40000 RTP/AVP 0 101",
        "a=sendrecv",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
    ] {
        assert!(
            text.contains(&format!("{line}\r\n")),
            "{line} missing in\n{text}"
        );
    }
    for absent in ["G722", "PCMA", "ssrc", "rtcp"] {
        assert!(!text.contains(absent), "{absent} in\n{text}");
    }
    // The offerer's view of our answer agrees.
    let seen = accept_answer(&parse(text.as_bytes()).unwrap()).unwrap();
    assert_eq!(seen.codec, RtpCodec::Pcmu);
    assert_eq!(seen.payload_type, 0);
    assert_eq!(seen.dtmf_payload_type, Some(101));
    assert_eq!(
        seen.remote,
        "203.0.113.7:40000".parse::<std::net::SocketAddr>().unwrap()
    );
}

#[test]
fn pcma_only_offer_without_rtpmap_gets_pcma() {
    let (text, n) = answer_text(
        "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 5004 RTP/AVP 8
a=ptime:30
",
    )
    .unwrap();
    assert_eq!((n.codec, n.payload_type), (RtpCodec::Pcma, 8));
    assert_eq!(n.dtmf_payload_type, None);
    assert_eq!(n.ptime_ms, 30);
    assert!(text.contains("m=audio 40000 RTP/AVP 8\r\n"), "{text}");
    assert!(text.contains("a=rtpmap:8 PCMA/8000\r\n"), "{text}");
    assert!(!text.contains("telephone-event"), "{text}");
}

#[test]
fn dynamic_payload_types_are_kept() {
    let (text, n) = answer_text(
        "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 5004 RTP/AVPF 98 96 97
a=rtpmap:98 PCMU/16000
a=rtpmap:96 pcmu/8000
a=rtpmap:97 TELEPHONE-EVENT/8000
",
    )
    .unwrap();
    assert_eq!((n.codec, n.payload_type), (RtpCodec::Pcmu, 96));
    assert_eq!(n.dtmf_payload_type, Some(97));
    assert!(text.contains("m=audio 40000 RTP/AVPF 96 97\r\n"), "{text}");
    assert!(text.contains("a=rtpmap:96 PCMU/8000\r\n"), "{text}");
    assert!(
        text.contains("a=rtpmap:97 telephone-event/8000\r\n"),
        "{text}"
    );
    assert!(text.contains("a=fmtp:97 0-16\r\n"), "{text}");
}

#[test]
fn static_type_remapped_to_another_codec_is_not_g711() {
    let err = answer_text(
        "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 5004 RTP/AVP 0 101
a=rtpmap:0 G722/8000
a=rtpmap:101 telephone-event/8000
",
    )
    .unwrap_err();
    assert_eq!(err, SdpError::NoCommonCodec);
}

#[test]
fn g722_only_has_no_common_codec() {
    let err = answer_text(
        "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 5004 RTP/AVP 9 101
a=rtpmap:9 G722/8000
a=rtpmap:101 telephone-event/8000
",
    )
    .unwrap_err();
    assert_eq!(err, SdpError::NoCommonCodec);
    assert_eq!(err.sip_status(), 488);
}

#[test]
fn video_first_is_rejected_and_lines_stay_in_order() {
    let (text, n) = answer_text(
        "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=video 5006 RTP/AVP 96
a=rtpmap:96 H264/90000
a=mid:v
m=audio 5004 RTP/AVP 0 8
a=mid:a
m=audio 5008 RTP/SAVP 0
",
    )
    .unwrap();
    assert_eq!(
        n.remote,
        "10.0.0.1:5004".parse::<std::net::SocketAddr>().unwrap()
    );
    let back = parse(text.as_bytes()).unwrap();
    let m: Vec<_> = back.media_descriptions.iter().collect();
    assert_eq!(m.len(), 3, "{text}");
    assert_eq!(
        (m[0].media.media_type, m[0].media.port),
        (MediaType::Video, 0)
    );
    assert_eq!(m[0].mid.as_deref(), Some("v"));
    assert_eq!(
        (m[1].media.media_type, m[1].media.port),
        (MediaType::Audio, 40_000)
    );
    assert_eq!(m[1].media.fmts, [0]);
    assert_eq!(m[1].mid.as_deref(), Some("a"));
    assert_eq!(
        (m[2].media.port, &m[2].media.proto),
        (0, &TransportProtocol::RtpSavp)
    );
    assert!(text.contains("m=video 0 RTP/AVP 96\r\n"), "{text}");
}

#[test]
fn later_audio_is_used_when_the_first_is_rejected_or_unusable() {
    let (_, n) = answer_text(
        "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 0 RTP/AVP 0
m=audio 5010 RTP/AVP 9
m=audio 5012 RTP/AVP 18 8
",
    )
    .unwrap();
    assert_eq!((n.codec, n.remote.port()), (RtpCodec::Pcma, 5012));
}

#[test]
fn media_level_connection_overrides_the_session_one() {
    let (_, n) = answer_text(
        "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 5004 RTP/AVP 0
c=IN IP4 10.0.0.2
",
    )
    .unwrap();
    assert_eq!(
        n.remote,
        "10.0.0.2:5004".parse::<std::net::SocketAddr>().unwrap()
    );
    let (_, n) = answer_text(
        "v=0
o=- 1 1 IN IP6 ::1
s=-
t=0 0
m=audio 5004 RTP/AVP 0
c=IN IP6 2001:db8::5
",
    )
    .unwrap();
    assert_eq!(
        n.remote,
        "[2001:db8::5]:5004"
            .parse::<std::net::SocketAddr>()
            .unwrap()
    );
}

#[test]
fn missing_or_host_name_addresses_are_refused() {
    for connection in ["", "c=IN IP4 pbx.example.com\n"] {
        let err = answer_text(&format!(
            "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
{connection}t=0 0
m=audio 5004 RTP/AVP 0
"
        ))
        .unwrap_err();
        assert_eq!(err, SdpError::NoAddress, "{connection:?}");
    }
}

#[test]
fn directions_are_mirrored() {
    for (offered, answered) in [
        ("sendrecv", "sendrecv"),
        ("recvonly", "sendonly"),
        ("sendonly", "recvonly"),
        ("inactive", "inactive"),
    ] {
        let (text, _) = answer_text(&format!(
            "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 5004 RTP/AVP 0
a={offered}
"
        ))
        .unwrap();
        assert!(
            text.contains(&format!("a={answered}\r\n")),
            "{offered}: {text}"
        );
    }
    // A session-level direction applies to the streams after it.
    let (text, _) = answer_text(
        "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
a=sendonly
m=audio 5004 RTP/AVP 0
",
    )
    .unwrap();
    assert!(text.contains("a=recvonly\r\n"), "{text}");
}

#[test]
fn offers_without_usable_audio_are_refused() {
    for media in [
        "m=video 5006 RTP/AVP 96\n",
        "m=audio 0 RTP/AVP 0\n",
        "m=audio 5004 RTP/SAVP 0\n",
        "m=audio 5004 UDP/TLS/RTP/SAVPF 0\n",
        "",
    ] {
        let err = answer_text(&format!(
            "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
{media}"
        ))
        .unwrap_err();
        assert_eq!(err, SdpError::NoAudio, "{media:?}");
    }
}

#[test]
fn answers_to_our_offer_are_read() {
    // A terse answer: PCMA, and our telephone-event type without an rtpmap.
    let n = accept_answer(&sdp("v=0
o=- 7 7 IN IP4 10.0.0.9
s=-
c=IN IP4 10.0.0.9
t=0 0
m=audio 6000 RTP/AVP 8 101
a=ptime:20
"))
    .unwrap();
    assert_eq!(
        n,
        Negotiated {
            codec: RtpCodec::Pcma,
            payload_type: 8,
            dtmf_payload_type: Some(101),
            remote: "10.0.0.9:6000".parse::<std::net::SocketAddr>().unwrap(),
            ptime_ms: 20,
        }
    );
    // Audio refused by the answerer.
    let err = accept_answer(&sdp("v=0
o=- 7 7 IN IP4 10.0.0.9
s=-
c=IN IP4 10.0.0.9
t=0 0
m=audio 0 RTP/AVP 0
"))
    .unwrap_err();
    assert_eq!(err, SdpError::NoAudio);
    // Without telephone-events, no DTMF.
    let n = accept_answer(&sdp("v=0
o=- 7 7 IN IP4 10.0.0.9
s=-
c=IN IP4 10.0.0.9
t=0 0
m=audio 6000 RTP/AVP 0
"))
    .unwrap();
    assert_eq!((n.codec, n.dtmf_payload_type), (RtpCodec::Pcmu, None));
}

#[test]
fn garbage_is_a_parse_error() {
    for body in [
        &b""[..],
        b"\xff\xfe\x00garbage",
        b"hello world",
        b"v=0\r\n",
        b"v=0\r\no=\r\ns=-\r\nt=0 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 99999 RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\na=rtpmap:x\r\n",
    ] {
        let err = parse(body).expect_err(&String::from_utf8_lossy(body));
        assert!(matches!(err, SdpError::Parse(_)), "{err:?}");
        assert_eq!(err.sip_status(), 400);
    }
}

/// SDP-shaped lines: a valid preamble, then lines built from the type letters and the
/// tokens the parser branches on, so the fuzzing reaches past the first line.
fn sdp_like() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("IN IP4 ".to_owned()),
        Just("IN IP6 ".to_owned()),
        Just("RTP/AVP ".to_owned()),
        Just("audio ".to_owned()),
        Just("rtpmap:".to_owned()),
        Just("fmtp:".to_owned()),
        Just("rtcp:".to_owned()),
        Just("candidate:".to_owned()),
        Just("crypto:".to_owned()),
        Just("ssrc:".to_owned()),
        Just("extmap:".to_owned()),
        Just("imageattr:".to_owned()),
        Just("fingerprint:".to_owned()),
        Just("group:".to_owned()),
        Just("msid:".to_owned()),
        Just("rtcp-fb:".to_owned()),
        Just("ice-options:".to_owned()),
        Just("ptime:".to_owned()),
        "[0-9]{1,6}",
        "[ -~]{0,12}",
        "\\PC{0,4}",
    ];
    let line = (
        prop_oneof![
            Just("v="),
            Just("o="),
            Just("s="),
            Just("c="),
            Just("t="),
            Just("m="),
            Just("a="),
            Just("b="),
            Just("")
        ],
        proptest::collection::vec(token, 0..6),
    )
        .prop_map(|(kind, tokens)| format!("{kind}{}", tokens.concat()));
    proptest::collection::vec(line, 0..12).prop_map(|lines| {
        format!(
            "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\n{}",
            lines.join("\r\n")
        )
    })
}

proptest! {
    /// `parse` never panics on arbitrary bytes.
    #[test]
    fn parse_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&body);
    }

    /// Nor on arbitrary text.
    #[test]
    fn parse_never_panics_on_text(body in "\\PC{0,256}") {
        let _ = parse(body.as_bytes());
    }

    /// Nor on SDP-shaped text, and whatever parses can be answered or refused without a
    /// panic, and the answer prints as SDP that parses again.
    #[test]
    fn sdp_like_text_never_panics(body in sdp_like()) {
        if let Ok(sd) = parse(body.as_bytes()) {
            let _ = accept_answer(&sd);
            if let Ok((answer, _)) = answer(&sd, &local()) {
                prop_assert!(parse(answer.to_string().as_bytes()).is_ok());
            }
        }
    }
}
