//! SDP offer/answer (RFC 3264) for a SIP phone leg, on `ezk_sdp_types`.
//!
//! A phone leg carries one audio stream of G.711 (PCMU or PCMA, 8 kHz, which is the SIP
//! mixing rate and what every phone and trunk supports) plus RFC 4733 telephone-events for
//! DTMF. So negotiation is small: [`offer`] proposes exactly that; [`answer`] picks from a
//! peer's offer the first audio stream and the first G.711 codec in the peer's order of
//! preference, and rejects every other stream; [`accept_answer`] reads the peer's answer to
//! our own offer. Each returns a [`Negotiated`], everything the RTP leg needs to start.
//!
//! Nothing here reads a clock, a socket or DNS: host names in `c=` are refused rather than
//! resolved, because the media path must not wait on a resolver.

use std::net::{IpAddr, SocketAddr};

use bytesstr::BytesStr;
use ezk_sdp_types::{
    Connection, Direction, Fmtp, MediaDescription, MediaType, Origin, RtpMap, SessionDescription,
    TaggedAddress, Time, TransportProtocol, UnknownAttribute,
};

use crate::bridge::rtp::RtpCodec;

/// The payload type our offers give telephone-events (the common choice of phones, so
/// their answers rarely need to map it).
pub const TELEPHONE_EVENT_PAYLOAD_TYPE: u8 = 101;
/// The packet time the gateway sends and asks for, and assumes when a peer names none
/// (RFC 3551 §4.5: 20 ms is the G.711 default).
pub const DEFAULT_PTIME_MS: u32 = 20;

/// The clock rate of G.711 and of its telephone-events.
const CLOCK_RATE: u32 = 8_000;
/// The events we accept: the 16 keypad digits and flash (RFC 4733 §3.2).
const TELEPHONE_EVENTS: &str = "0-16";
/// The session name of every description we write.
const SESSION_NAME: &str = "chamade";

/// Where this leg receives media, as the server allocated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalMedia {
    /// The address put in `c=` and `o=`: the one the peer must send RTP to.
    pub address: IpAddr,
    /// The local RTP port (RTCP, when used, is on the next port up).
    pub rtp_port: u16,
    /// The `o=` session id, unique per call so the peer can tell sessions apart.
    pub session_id: u64,
}

/// The outcome of offer/answer: what the RTP leg sends, where, and how to read DTMF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The audio codec, [`RtpCodec::Pcmu`] or [`RtpCodec::Pcma`].
    pub codec: RtpCodec,
    /// The payload type of the audio, which is the offer's and may be dynamic.
    pub payload_type: u8,
    /// The telephone-event payload type, when both sides agreed to RFC 4733 DTMF.
    pub dtmf_payload_type: Option<u8>,
    /// Where to send RTP.
    pub remote: SocketAddr,
    /// The packet time the peer asked for, or [`DEFAULT_PTIME_MS`].
    pub ptime_ms: u32,
}

/// Why a description could not be negotiated. All are the peer's doing; see
/// [`SdpError::sip_status`] for the response they call for.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SdpError {
    /// No RTP/AVP(F) audio stream with a non-zero port.
    #[error("no usable audio stream in the session description")]
    NoAudio,
    /// Audio was offered, but not as PCMU or PCMA.
    #[error("no common audio codec (PCMU or PCMA at 8000 Hz)")]
    NoCommonCodec,
    /// The audio stream has no connection address, or only a host name.
    #[error("no IP connection address for the audio stream")]
    NoAddress,
    /// The body is not UTF-8 or not SDP.
    #[error("malformed session description: {0}")]
    Parse(String),
}

impl SdpError {
    /// The SIP response status for a request whose SDP failed this way: 400 for a body
    /// that is not SDP, 488 (Not Acceptable Here, RFC 3261 §21.4.26) for SDP we cannot
    /// accept.
    pub fn sip_status(&self) -> u16 {
        match self {
            SdpError::Parse(_) => 400,
            SdpError::NoAudio | SdpError::NoCommonCodec | SdpError::NoAddress => 488,
        }
    }
}

/// Parses an SDP body from the network. It checks UTF-8 first because the parser works on
/// text, and it never panics, whatever the bytes.
pub fn parse(body: &[u8]) -> Result<SessionDescription, SdpError> {
    let text = std::str::from_utf8(body).map_err(|e| SdpError::Parse(e.to_string()))?;
    SessionDescription::parse(&BytesStr::from(text)).map_err(|e| SdpError::Parse(e.to_string()))
}

/// Our offer for a new call: one audio stream of PCMU, PCMA (in that order of preference)
/// and telephone-events, 20 ms packets, sending and receiving.
pub fn offer(local: &LocalMedia) -> SessionDescription {
    let mut media = audio_description(local.rtp_port, TransportProtocol::RtpAvp);
    media.media.fmts = vec![
        RtpCodec::Pcmu.payload_type(),
        RtpCodec::Pcma.payload_type(),
        TELEPHONE_EVENT_PAYLOAD_TYPE,
    ];
    media.rtpmap = vec![
        rtpmap(RtpCodec::Pcmu.payload_type(), "PCMU"),
        rtpmap(RtpCodec::Pcma.payload_type(), "PCMA"),
        rtpmap(TELEPHONE_EVENT_PAYLOAD_TYPE, "telephone-event"),
    ];
    media.fmtp = vec![telephone_event_fmtp(TELEPHONE_EVENT_PAYLOAD_TYPE)];
    session(local, vec![media])
}

/// Answers a peer's offer (RFC 3264 §6): the first usable audio stream is accepted with
/// the first PCMU or PCMA format in the offer's order and the offer's telephone-events if
/// any, all under the offer's payload types; every other stream is rejected with port 0,
/// so the answer has as many `m=` lines as the offer. Later audio streams are tried when
/// an earlier one has no common codec.
pub fn answer(
    offer: &SessionDescription,
    local: &LocalMedia,
) -> Result<(SessionDescription, Negotiated), SdpError> {
    let (index, negotiated) = choose(offer, None)?;
    let media = offer
        .media_descriptions
        .iter()
        .enumerate()
        .map(|(i, offered)| {
            if i == index {
                accepted(offered, &negotiated, local.rtp_port)
            } else {
                rejected(offered)
            }
        })
        .collect();
    Ok((session(local, media), negotiated))
}

/// Reads the peer's answer to our [`offer`]. The answer's first format that is G.711 is
/// used, as RFC 3264 §6.1 asks; a telephone-event payload type without `rtpmap` is taken to
/// be the one we offered.
pub fn accept_answer(answer: &SessionDescription) -> Result<Negotiated, SdpError> {
    choose(answer, Some(TELEPHONE_EVENT_PAYLOAD_TYPE)).map(|(_, negotiated)| negotiated)
}

/// The first audio stream of `sd` that negotiates, with its index; otherwise the error of
/// the first usable audio stream, or [`SdpError::NoAudio`].
fn choose(
    sd: &SessionDescription,
    assumed_event: Option<u8>,
) -> Result<(usize, Negotiated), SdpError> {
    let mut first_error = None;
    for (i, media) in sd.media_descriptions.iter().enumerate() {
        if !is_usable_audio(media) {
            continue;
        }
        match negotiate(sd, media, assumed_event) {
            Ok(negotiated) => return Ok((i, negotiated)),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(SdpError::NoAudio))
}

/// Audio over plain RTP (with or without RFC 4585 feedback) that was not rejected.
fn is_usable_audio(media: &MediaDescription) -> bool {
    media.media.media_type == MediaType::Audio
        && matches!(
            media.media.proto,
            TransportProtocol::RtpAvp | TransportProtocol::RtpAvpf
        )
        && media.media.port != 0
}

fn negotiate(
    sd: &SessionDescription,
    media: &MediaDescription,
    assumed_event: Option<u8>,
) -> Result<Negotiated, SdpError> {
    let (payload_type, codec) = media
        .media
        .fmts
        .iter()
        .find_map(|&pt| g711(media, pt).map(|codec| (pt, codec)))
        .ok_or(SdpError::NoCommonCodec)?;
    let connection = media
        .connection
        .as_ref()
        .or(sd.connection.as_ref())
        .ok_or(SdpError::NoAddress)?;
    let ip = match connection.address {
        TaggedAddress::IP4(ip) => IpAddr::V4(ip),
        TaggedAddress::IP6(ip) => IpAddr::V6(ip),
        TaggedAddress::IP4FQDN(_) | TaggedAddress::IP6FQDN(_) => return Err(SdpError::NoAddress),
    };
    Ok(Negotiated {
        codec,
        payload_type,
        dtmf_payload_type: telephone_event(media, assumed_event),
        remote: SocketAddr::new(ip, media.media.port),
        ptime_ms: ptime(sd, media).unwrap_or(DEFAULT_PTIME_MS),
    })
}

/// The G.711 codec a format of `media` stands for: by its `rtpmap` when it has one (any
/// payload type, encoding name in any case, 8000 Hz, mono), else by the static payload
/// types 0 and 8 (RFC 3551), which need none.
fn g711(media: &MediaDescription, pt: u8) -> Option<RtpCodec> {
    match media.rtpmap.iter().find(|m| m.payload == pt) {
        Some(map) => {
            let mono = map.params.as_ref().is_none_or(|p| p.trim() == "1");
            if map.clock_rate != CLOCK_RATE || !mono {
                None
            } else if map.encoding.eq_ignore_ascii_case("PCMU") {
                Some(RtpCodec::Pcmu)
            } else if map.encoding.eq_ignore_ascii_case("PCMA") {
                Some(RtpCodec::Pcma)
            } else {
                None
            }
        }
        None if pt == RtpCodec::Pcmu.payload_type() => Some(RtpCodec::Pcmu),
        None if pt == RtpCodec::Pcma.payload_type() => Some(RtpCodec::Pcma),
        None => None,
    }
}

/// The first listed format mapped to telephone-event/8000, or `assumed` when it is listed
/// without any `rtpmap` (an answerer reusing our payload type tersely).
fn telephone_event(media: &MediaDescription, assumed: Option<u8>) -> Option<u8> {
    media.media.fmts.iter().copied().find(|&pt| {
        match media.rtpmap.iter().find(|m| m.payload == pt) {
            Some(map) => {
                map.clock_rate == CLOCK_RATE && map.encoding.eq_ignore_ascii_case("telephone-event")
            }
            None => Some(pt) == assumed,
        }
    })
}

/// `a=ptime` of the stream, else of the session; a zero or unreadable value counts as
/// absent.
fn ptime(sd: &SessionDescription, media: &MediaDescription) -> Option<u32> {
    let read = |attributes: &[UnknownAttribute]| {
        attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case("ptime"))
            .and_then(|a| a.value.as_ref())
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|&ms| ms > 0)
    };
    read(&media.attributes).or_else(|| read(&sd.attributes))
}

/// Our half of the accepted stream: the chosen codec and the telephone-events under the
/// offer's payload types, the offer's transport, the opposite direction.
fn accepted(offered: &MediaDescription, negotiated: &Negotiated, port: u16) -> MediaDescription {
    let mut media = audio_description(port, offered.media.proto.clone());
    // `negotiate` only yields G.711, so the Opus arms are never taken.
    let name = match negotiated.codec {
        RtpCodec::Pcma => "PCMA",
        RtpCodec::Pcmu | RtpCodec::Opus48 | RtpCodec::Opus16 => "PCMU",
    };
    media.media.fmts = vec![negotiated.payload_type];
    media.rtpmap = vec![rtpmap(negotiated.payload_type, name)];
    if let Some(pt) = negotiated.dtmf_payload_type {
        media.media.fmts.push(pt);
        media.rtpmap.push(rtpmap(pt, "telephone-event"));
        media.fmtp.push(telephone_event_fmtp(pt));
    }
    media.direction = offered.direction.flipped();
    media.mid = offered.mid.clone();
    media
}

/// A refusal of an offered stream (RFC 3264 §6): port 0, keeping its media type, transport
/// and formats so the line stays valid SDP, and its `mid` so bundling peers can match it.
fn rejected(offered: &MediaDescription) -> MediaDescription {
    let mut media = MediaDescription::rejected(offered.media.media_type);
    media.media.proto = offered.media.proto.clone();
    media.media.fmts = offered.media.fmts.clone();
    media.mid = offered.mid.clone();
    media
}

/// An audio stream with no formats yet, sending and receiving 20 ms packets.
fn audio_description(port: u16, proto: TransportProtocol) -> MediaDescription {
    let mut media = MediaDescription::rejected(MediaType::Audio);
    media.media.port = port;
    media.media.proto = proto;
    media.direction = Direction::SendRecv;
    media.attributes = vec![UnknownAttribute {
        name: BytesStr::from_static("ptime"),
        value: Some(BytesStr::from(DEFAULT_PTIME_MS.to_string())),
    }];
    media
}

fn rtpmap(payload: u8, encoding: &'static str) -> RtpMap {
    RtpMap {
        payload,
        encoding: BytesStr::from_static(encoding),
        clock_rate: CLOCK_RATE,
        params: None,
    }
}

fn telephone_event_fmtp(format: u8) -> Fmtp {
    Fmtp {
        format,
        params: BytesStr::from_static(TELEPHONE_EVENTS),
    }
}

/// The session around `media`: `o=` and a session-level `c=` with our address, `t=0 0`.
fn session(local: &LocalMedia, media: Vec<MediaDescription>) -> SessionDescription {
    let address = TaggedAddress::from(local.address);
    let id = BytesStr::from(local.session_id.to_string());
    SessionDescription {
        origin: Origin {
            username: BytesStr::from_static("-"),
            session_id: id.clone(),
            session_version: id,
            address: address.clone(),
        },
        name: BytesStr::from_static(SESSION_NAME),
        connection: Some(Connection {
            address,
            ttl: None,
            num: None,
        }),
        bandwidth: Vec::new(),
        time: Time { start: 0, stop: 0 },
        direction: Direction::SendRecv,
        group: Vec::new(),
        extmap: Vec::new(),
        extmap_allow_mixed: false,
        ice_lite: false,
        ice_options: Default::default(),
        ice_ufrag: None,
        ice_pwd: None,
        setup: None,
        fingerprint: Vec::new(),
        attributes: Vec::new(),
        media_descriptions: media,
    }
}

#[cfg(test)]
mod tests;
