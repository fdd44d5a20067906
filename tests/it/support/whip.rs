//! A WHIP client outside the browser, on webrtc-rs: it offers one Opus audio track, posts
//! the offer, plays a signal into the call and records what the call sends back.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chamade_media::opus::{OpusConfig, OpusDecoder, OpusEncoder};
use chamade_media::{Frame, SampleRate};
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
    Registry, SettingEngineBuilder, register_default_interceptors,
};

/// What the call sent, decoded at 48 kHz.
pub type Recording = Arc<Mutex<Vec<i16>>>;

/// A connected WHIP client.
pub struct WhipClient {
    pc: Arc<dyn PeerConnection>,
    track: Arc<TrackLocalStaticRTP>,
    state: watch::Receiver<RTCPeerConnectionState>,
    /// Decoded audio from the call.
    pub received: Recording,
    /// The session URL from `Location`.
    pub location: String,
    /// The answer's status.
    pub status: u16,
    /// The SDP answer.
    pub answer: String,
    ssrc: u32,
}

struct Handler {
    gathered: mpsc::Sender<()>,
    state: watch::Sender<RTCPeerConnectionState>,
    received: Recording,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let received = Arc::clone(&self.received);
        tokio::spawn(async move {
            let mut decoder = OpusDecoder::new(SampleRate::HZ_48000).expect("decoder");
            let mut frame = Frame::silence(SampleRate::HZ_48000);
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = event
                    && decoder.decode(&p.payload, &mut frame).is_ok()
                    && let Ok(mut r) = received.lock()
                {
                    r.extend_from_slice(frame.samples());
                }
            }
        });
    }
}

impl WhipClient {
    /// Offers audio to `url` (a WHIP or WHEP endpoint) with `Authorization: Bearer
    /// {bearer}`; connects when the answer is 201, else returns the status and body.
    pub async fn join(url: &str, bearer: &str) -> Result<WhipClient, String> {
        let mut media_engine = MediaEngine::default();
        media_engine
            .register_codec(
                chamade_actors::bridge::webrtc::opus_codec(),
                RtpCodecKind::Audio,
            )
            .expect("codec");
        let registry =
            register_default_interceptors(Registry::new(), &mut media_engine).expect("registry");
        let (gathered_tx, mut gathered) = mpsc::channel(1);
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let received: Recording = Arc::default();
        let handler = Arc::new(Handler {
            gathered: gathered_tx,
            state: state_tx,
            received: Arc::clone(&received),
        });
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media_engine)
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                    .with_include_loopback_candidate(true)
                    .build(),
            )
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(vec!["127.0.0.1:0"])
            .build()
            .await
            .expect("peer connection");
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let ssrc = 0x5eed_0001;
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "whip-test".to_owned(),
            "mic".to_owned(),
            "mic".to_owned(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: chamade_actors::bridge::webrtc::opus_codec().rtp_codec,
                ..Default::default()
            }],
        )));
        pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
            .await
            .expect("track");
        let offer = pc.create_offer(None).await.expect("offer");
        pc.set_local_description(offer).await.expect("local");
        let _ = tokio::time::timeout(Duration::from_secs(5), gathered.recv()).await;
        let offer = pc.local_description().await.expect("offer sdp").sdp;
        let response = reqwest::Client::new()
            .post(url)
            .header("Content-Type", "application/sdp")
            .header("Authorization", format!("Bearer {bearer}"))
            .body(offer)
            .send()
            .await
            .expect("WHIP post");
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response.text().await.unwrap_or_default();
        if status != 201 {
            let _ = pc.close().await;
            return Err(format!("HTTP {status}: {body}"));
        }
        pc.set_remote_description(RTCSessionDescription::answer(body.clone()).expect("answer sdp"))
            .await
            .expect("remote");
        Ok(WhipClient {
            pc,
            track,
            state,
            received,
            location,
            status,
            answer: body,
            ssrc,
        })
    }

    /// Waits until ICE and DTLS are up.
    pub async fn connected(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if *self.state.borrow_and_update() == RTCPeerConnectionState::Connected {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero()
                || tokio::time::timeout(left, self.state.changed())
                    .await
                    .is_err()
            {
                return false;
            }
        }
    }

    /// The connection's state now.
    pub fn state(&self) -> RTCPeerConnectionState {
        *self.state.borrow()
    }

    /// Plays `signal` (48 kHz) into the call as Opus, paced at 20 ms a packet.
    pub async fn play(&self, signal: &[i16]) {
        let mut encoder =
            OpusEncoder::new(SampleRate::HZ_48000, OpusConfig::default()).expect("encoder");
        let mut payload = [0u8; 1275];
        let start = Instant::now();
        for (i, chunk) in signal.chunks_exact(960).enumerate() {
            let frame = Frame::from_samples(SampleRate::HZ_48000, chunk).expect("frame");
            let n = encoder.encode(&frame, &mut payload).expect("encode");
            let packet = rtc::rtp::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    marker: i == 0,
                    payload_type: 111,
                    sequence_number: i as u16,
                    timestamp: (i as u32).wrapping_mul(960),
                    ssrc: self.ssrc,
                    ..Default::default()
                },
                payload: Bytes::copy_from_slice(&payload[..n]),
            };
            let _ = self.track.write_rtp(packet).await;
            let due = start + Duration::from_millis(20 * (i as u64 + 1));
            tokio::time::sleep_until(due.into()).await;
        }
    }

    /// Closes the connection without a DELETE (a client that vanishes).
    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}
