//! Negotiation and the async side of a WebRTC leg: answering an offer (as WHIP and WHEP
//! ask, one SDP exchange, no trickle), moving received RTP into the shard's channel and
//! encoded packets out to the peer, and reporting how the connection ends.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chamade_media::opus::MAX_PACKET_BYTES;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use nix::sys::eventfd::{EfdFlags, EventFd};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCIceServer, RTCPeerConnectionState,
    RTCSessionDescription, Registry, SettingEngineBuilder, configure_rtcp_reports,
};

use super::{INBOUND_PACKETS, Inbound, OUTBOUND_PACKETS, Outbound, WebRtcCounters};
use crate::bridge::rtp::{OPUS_PAYLOAD_TYPE, PacketHeader, Payload};

/// How long the answer waits for ICE gathering: host candidates are local and complete at
/// once; this bounds a misconfigured interface or TURN server.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);
/// The Opus parameters we answer with (RFC 7587): in-band FEC on, 10 ms minimum.
const OPUS_FMTP: &str = "minptime=10;useinbandfec=1";
/// Threads of webrtc-rs's reactor pool, which runs every connection's ICE, DTLS and SRTP
/// off the HTTP workers.
const REACTOR_THREADS: usize = 2;

/// A STUN or TURN server, as handed to browsers (the `RTCIceServer` dictionary).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct IceServer {
    /// `stun:` or `turn:` URLs.
    pub urls: Vec<String>,
    /// TURN user name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// TURN password.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credential: String,
}

/// Where WebRTC media is reachable: deployment behind NAT needs the public address and a
/// fixed port range open in the firewall.
#[derive(Debug, Clone)]
pub struct WebRtcSettings {
    /// The address the UDP sockets bind to (one socket per leg).
    pub bind_ip: IpAddr,
    /// Addresses announced instead of `bind_ip` in host candidates (1:1 NAT).
    pub public_ips: Vec<IpAddr>,
    /// First and last UDP port to use; `None` for any free port.
    pub ports: Option<(u16, u16)>,
    /// STUN/TURN servers for clients (the gateway itself needs none with `public_ips`).
    pub ice_servers: Vec<IceServer>,
}

/// Which way audio flows, from the gateway's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A talking participant (WHIP, the browser page).
    SendRecv,
    /// A listener that only receives the room (WHEP).
    SendOnly,
}

/// Why an offer could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// The offer is not SDP we can use (no audio, no Opus, unparsable).
    #[error("unusable offer: {0}")]
    Offer(String),
    /// No UDP port was free in the configured range.
    #[error("no free UDP port in {0}-{1}")]
    NoPort(u16, u16),
    /// The WebRTC stack failed.
    #[error("WebRTC: {0}")]
    Stack(String),
}

/// How a peer connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerEnd {
    /// Closed by the peer (DTLS close, or the connection was torn down).
    Closed,
    /// ICE or DTLS failed, or consent expired.
    Failed,
}

/// A negotiated leg: the answer to send back and the channels the shard side uses.
pub struct Negotiated {
    /// The SDP answer.
    pub answer: String,
    /// The payload type the peer sends Opus under (it chose it in its offer).
    pub payload_type: u8,
    /// Received packets, for [`WebRtcEndpoint`](super::WebRtcEndpoint).
    pub inbound: Receiver<Inbound>,
    /// Signalled after each packet put on `inbound`, so that the shard can wait for
    /// packets on a file descriptor while the leg forwards.
    pub wake: Arc<EventFd>,
    /// Encoded packets to send.
    pub outbound: mpsc::Sender<Outbound>,
    /// The live connection.
    pub handle: PeerHandle,
}

/// The owner's handle on a live connection.
pub struct PeerHandle {
    pc: Arc<dyn PeerConnection>,
    state: watch::Receiver<RTCPeerConnectionState>,
    counters: Arc<WebRtcCounters>,
    local: Option<SocketAddr>,
}

impl PeerHandle {
    /// Waits until the connection has failed or closed. A connection that stays
    /// `disconnected` for `grace` counts as failed (a closed tab without a goodbye).
    pub async fn ended(&mut self, grace: Duration) -> PeerEnd {
        loop {
            let now = *self.state.borrow_and_update();
            match now {
                RTCPeerConnectionState::Closed => return PeerEnd::Closed,
                RTCPeerConnectionState::Failed => return PeerEnd::Failed,
                RTCPeerConnectionState::Disconnected => {
                    match tokio::time::timeout(grace, self.state.changed()).await {
                        Err(_) => return PeerEnd::Failed,
                        Ok(Err(_)) => return PeerEnd::Closed,
                        Ok(Ok(())) => continue,
                    }
                }
                _ => {}
            }
            if self.state.changed().await.is_err() {
                return PeerEnd::Closed;
            }
        }
    }

    /// Whether ICE and DTLS are up.
    pub fn connected(&self) -> bool {
        *self.state.borrow() == RTCPeerConnectionState::Connected
    }

    /// The leg's counters.
    pub fn counters(&self) -> &Arc<WebRtcCounters> {
        &self.counters
    }

    /// The UDP address the leg's socket is bound to, when it could be read.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// Closes the connection (DTLS close_notify, sockets released).
    pub async fn close(&self) {
        if let Err(e) = self.pc.close().await {
            tracing::debug!(error = %e, "closing a peer connection");
        }
    }
}

/// Next port to try in the configured range, shared by every leg of the process.
static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

struct Handler {
    gathered: mpsc::Sender<()>,
    state: watch::Sender<RTCPeerConnectionState>,
    inbound: Sender<Inbound>,
    wake: Arc<EventFd>,
    counters: Arc<WebRtcCounters>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(%state, "WebRTC connection state");
        self.state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if track.kind().await != RtpCodecKind::Audio {
            return;
        }
        let inbound = self.inbound.clone();
        let wake = Arc::clone(&self.wake);
        let counters = Arc::clone(&self.counters);
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                match event {
                    TrackRemoteEvent::OnRtpPacket(packet) => {
                        if packet.payload.len() > MAX_PACKET_BYTES {
                            counters.refused.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let item = Inbound {
                            header: PacketHeader {
                                payload_type: packet.header.payload_type,
                                sequence: packet.header.sequence_number,
                                timestamp: packet.header.timestamp,
                                ssrc: packet.header.ssrc,
                            },
                            payload: Payload::new(&packet.payload),
                        };
                        match inbound.try_send(item) {
                            // The counter only saturates if nobody reads it for 2^64
                            // packets; a failed write loses no packet, only a wake-up.
                            Ok(()) => {
                                let _ = wake.write(1);
                            }
                            Err(TrySendError::Full(_)) => {
                                counters.dropped_in.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(TrySendError::Disconnected(_)) => return,
                        }
                    }
                    TrackRemoteEvent::OnEnded => return,
                    _ => {}
                }
            }
        });
    }
}

/// The Opus codec as we register it: what browsers offer (48 kHz, two channels in SDP,
/// though we send and decode mono; RFC 7587 §7). Public so that test and load clients offer
/// exactly what the gateway answers.
pub fn opus_codec() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: OPUS_FMTP.to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: OPUS_PAYLOAD_TYPE,
    }
}

/// The payload type an SDP body maps to Opus, from its first audio section.
pub(crate) fn opus_payload_type(sdp: &str) -> Option<u8> {
    sdp.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("a=rtpmap:")?;
        let (pt, codec) = rest.split_once(' ')?;
        codec
            .to_ascii_lowercase()
            .starts_with("opus/48000")
            .then(|| pt.parse().ok())
            .flatten()
    })
}

/// Rewrites the host candidates (and connection lines) of `sdp` to name `public_ips`
/// instead of the bound address: behind a 1:1 NAT the ports are the same outside, so a
/// client's checks to the public address reach the bound socket. (webrtc-rs 0.21 keeps a
/// 1:1 NAT setting but does not apply it.) No-op without public IPs.
pub(crate) fn announce(sdp: &str, public_ips: &[IpAddr]) -> String {
    if public_ips.is_empty() {
        return sdp.to_owned();
    }
    let mut out = String::with_capacity(sdp.len() + 128 * public_ips.len());
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let ending = &line[body.len()..];
        if let Some(candidate) = body.strip_prefix("a=candidate:") {
            let fields: Vec<&str> = candidate.split(' ').collect();
            if fields.len() > 7 && fields[6] == "typ" && fields[7] == "host" {
                for ip in public_ips {
                    let ip = ip.to_string();
                    let mut f = fields.clone();
                    f[4] = &ip;
                    out.push_str("a=candidate:");
                    out.push_str(&f.join(" "));
                    out.push_str(ending);
                }
                continue;
            }
        }
        if body.starts_with("c=IN ") {
            let ip = public_ips[0];
            let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
            out.push_str(&format!("c=IN {family} {ip}{ending}"));
            continue;
        }
        out.push_str(line);
    }
    out
}

/// Answers `offer` and starts the connection. The answer carries every local candidate
/// (gathering is awaited), so the client needs no trickle.
pub async fn answer(
    settings: &WebRtcSettings,
    offer: &str,
    direction: Direction,
    ssrc: u32,
) -> Result<Negotiated, AnswerError> {
    if !offer.contains("m=audio") {
        return Err(AnswerError::Offer("the offer has no audio section".into()));
    }
    if opus_payload_type(offer).is_none() {
        return Err(AnswerError::Offer(
            "the offer's audio has no Opus (opus/48000/2)".into(),
        ));
    }
    let description = RTCSessionDescription::offer(offer.to_owned())
        .map_err(|e| AnswerError::Offer(e.to_string()))?;
    let counters = Arc::new(WebRtcCounters::default());
    let (inbound_tx, inbound) = crossbeam_channel::bounded(INBOUND_PACKETS);
    let wake = Arc::new(
        EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
            .map_err(|e| AnswerError::Stack(format!("eventfd: {e}")))?,
    );
    let (gathered_tx, mut gathered) = mpsc::channel(1);
    let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
    let handler = Arc::new(Handler {
        gathered: gathered_tx,
        state: state_tx,
        inbound: inbound_tx,
        wake: Arc::clone(&wake),
        counters: Arc::clone(&counters),
    });
    let stack = |e: webrtc::error::Error| AnswerError::Stack(e.to_string());
    let (pc, local) = build(settings, handler).await?;

    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "chamade".to_owned(),
        "room-mix".to_owned(),
        "room-mix".to_owned(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: opus_codec().rtp_codec,
            ..Default::default()
        }],
    )));
    let negotiate = async {
        pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
            .await
            .map_err(stack)?;
        pc.set_remote_description(description)
            .await
            .map_err(|e| AnswerError::Offer(e.to_string()))?;
        let answer = pc.create_answer(None).await.map_err(stack)?;
        pc.set_local_description(answer).await.map_err(stack)?;
        if tokio::time::timeout(GATHER_TIMEOUT, gathered.recv())
            .await
            .is_err()
        {
            tracing::warn!("ICE gathering did not complete; answering with what was gathered");
        }
        pc.local_description()
            .await
            .map(|d| d.sdp)
            .ok_or_else(|| AnswerError::Stack("no local description".into()))
    };
    let answer = match negotiate.await {
        Ok(answer) => answer,
        Err(e) => {
            let _ = pc.close().await;
            return Err(e);
        }
    };
    let payload_type = opus_payload_type(&answer).unwrap_or(OPUS_PAYLOAD_TYPE);
    let answer = announce(&answer, &settings.public_ips);
    let answer = match direction {
        Direction::SendRecv => answer,
        // WHEP: never ask the client for audio it would send to nobody.
        Direction::SendOnly => answer.replace("a=sendrecv", "a=sendonly"),
    };
    let (outbound, mut to_send) = mpsc::channel::<Outbound>(OUTBOUND_PACKETS);
    let writer_counters = Arc::clone(&counters);
    let writer_state = state.clone();
    tokio::spawn(async move {
        while let Some(packet) = to_send.recv().await {
            // Until DTLS is up there are no SRTP keys: the room's audio of those first
            // ticks is not for this peer yet.
            if *writer_state.borrow() != RTCPeerConnectionState::Connected {
                continue;
            }
            let rtp = rtc::rtp::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    marker: packet.marker,
                    payload_type,
                    sequence_number: packet.sequence,
                    timestamp: packet.timestamp,
                    ssrc,
                    ..Default::default()
                },
                payload: Bytes::copy_from_slice(packet.payload.bytes()),
            };
            if track.write_rtp(rtp).await.is_err() {
                writer_counters.dropped_out.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    Ok(Negotiated {
        answer,
        payload_type: opus_payload_type(offer).unwrap_or(OPUS_PAYLOAD_TYPE),
        inbound,
        wake,
        outbound,
        handle: PeerHandle {
            pc,
            state,
            counters,
            local,
        },
    })
}

/// Builds a peer connection bound to one UDP port: any free one, or the next free one in
/// the configured range.
async fn build(
    settings: &WebRtcSettings,
    handler: Arc<Handler>,
) -> Result<(Arc<dyn PeerConnection>, Option<SocketAddr>), AnswerError> {
    let ports: Vec<u16> = match settings.ports {
        None => vec![0],
        Some((first, last)) => {
            let span = last.saturating_sub(first).saturating_add(1);
            let start = NEXT_PORT.fetch_add(1, Ordering::Relaxed) % span;
            (0..span).map(|i| first + (start + i) % span).collect()
        }
    };
    let mut last_error = None;
    for port in ports {
        let addr = SocketAddr::new(settings.bind_ip, port);
        if port != 0 && std::net::UdpSocket::bind(addr).is_err() {
            continue;
        }
        let mut media_engine = MediaEngine::default();
        media_engine
            .register_codec(opus_codec(), RtpCodecKind::Audio)
            .map_err(|e| AnswerError::Stack(e.to_string()))?;
        // Audio only: sender and receiver reports, no NACK (video), no TWCC (bandwidth
        // estimation for video), whose per-packet work would be spent for nothing.
        let registry = configure_rtcp_reports(Registry::new());
        // No mDNS: a gateway learns a browser's address from its connectivity checks
        // (peer-reflexive), and a multicast socket fails where there is no multicast route.
        let setting = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(settings.bind_ip.is_loopback());
        let config = RTCConfigurationBuilder::new()
            .with_ice_servers(Vec::<RTCIceServer>::new())
            .build();
        let built = PeerConnectionBuilder::new()
            .with_configuration(config)
            .with_media_engine(media_engine)
            .with_setting_engine(setting.build())
            .with_interceptor_registry(registry)
            .with_handler(Arc::clone(&handler) as Arc<dyn PeerConnectionEventHandler>)
            .with_dedicated_reactor_pool_size(REACTOR_THREADS)
            .with_udp_addrs(vec![addr])
            .build()
            .await;
        match built {
            Ok(pc) => {
                let local = (port != 0).then_some(addr);
                return Ok((Arc::new(pc), local));
            }
            Err(e) => last_error = Some(e.to_string()),
        }
    }
    match (settings.ports, last_error) {
        (Some((first, last)), None) => Err(AnswerError::NoPort(first, last)),
        (_, Some(e)) => Err(AnswerError::Stack(e)),
        (None, None) => Err(AnswerError::Stack("no socket".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_ips_replace_host_candidates_and_connection_lines() {
        let sdp = "v=0\r\nc=IN IP4 10.0.0.5\r\nm=audio 40000 UDP/TLS/RTP/SAVPF 111\r\n\
                   a=candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host\r\n\
                   a=candidate:2 1 udp 1694498815 198.51.100.9 40000 typ srflx raddr 10.0.0.5 rport 40000\r\n";
        let ips = [
            "203.0.113.5".parse().unwrap(),
            "2001:db8::5".parse().unwrap(),
        ];
        let out = announce(sdp, &ips);
        assert!(out.contains("c=IN IP4 203.0.113.5\r\n"));
        assert!(out.contains("a=candidate:1 1 udp 2130706431 203.0.113.5 40000 typ host\r\n"));
        assert!(out.contains("a=candidate:1 1 udp 2130706431 2001:db8::5 40000 typ host\r\n"));
        assert!(
            !out.contains("10.0.0.5 40000 typ host"),
            "the private address stays hidden"
        );
        assert!(
            out.contains("198.51.100.9 40000 typ srflx"),
            "other candidates are kept"
        );
        assert_eq!(announce(sdp, &[]), sdp);
    }

    #[test]
    fn finds_the_offered_opus_payload_type() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 109 0\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:109 opus/48000/2\r\n";
        assert_eq!(opus_payload_type(sdp), Some(109));
        assert_eq!(
            opus_payload_type("m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"),
            None
        );
    }
}
