//! Load driver for WebRTC participants: R `web` calls of N webrtc-rs peers each, joined
//! through WHIP (`POST /api/call/{id}/whip`), every peer sending Opus at the 20 ms cadence
//! and receiving its mix-minus over DTLS-SRTP, as browsers do.
//!
//! ```sh
//! cargo bench --bench webrtc_load -- --url http://127.0.0.1:8080 --key chmd_… \
//!     --rooms 1 --per-room 50 --talkers 2 --warmup 5 --duration 20 \
//!     [--server-pid PID] [--out results.jsonl] [--label NAME] [--latency]
//! ```
//!
//! Without `--url` (as under `cargo test --benches`) it prints its usage and exits 0.
//!
//! It follows `rtp_load` (same CPU accounting, same report shape), with WebRTC legs:
//!
//! - **Joining.** Each peer is a webrtc-rs peer connection bound to 127.0.0.1 (loopback
//!   candidates allowed, mDNS off) offering one Opus track (PT 111). The offer is posted
//!   once ICE gathering has completed (no trickle); a join counts when the connection is
//!   up (ICE + DTLS). Peers join 8 at a time, each within 10 s, or the run stops.
//! - **Sending.** One thread sends, on an absolute 20 ms grid, one RTP packet per peer
//!   per tick (it sleeps to 0.3 ms before each deadline and spins the rest, then hands
//!   every peer's packet to its connection). Payloads are Opus frames encoded once at
//!   start, never in the loop: *talkers* (the first `--talkers` peers of each room) cycle
//!   2 s of a speech-like signal (a tone with its second harmonic, 220–750 Hz depending on
//!   the peer, amplitude-modulated at 3–5 Hz between −39 and −28 dBFS, plus a little
//!   noise); the others send encoded digital silence, as a muted browser that keeps
//!   sending does. Lateness of the ticks is reported as *send lateness*.
//! - **Receiving.** Every peer counts the packets it receives through `TrackRemote::poll`
//!   (no decoding) and the time between consecutive ones, taken in the poll task (so the
//!   driver's own scheduling is part of the figure). Over the window: packets received
//!   against 50 a second per peer, the worst peer's share, sequence gaps, and inter-arrival
//!   p1/p50/p99/max over all peers.
//! - **Mouth-to-ear to the agent** (`--latency`). An agent WebSocket joins room 0
//!   (48 kHz, TCP_NODELAY, on its own thread). Peer 0 of room 0 then sends, instead of its
//!   usual stream, digital silence with one full-scale-ish 1 kHz frame (−4 dBFS) once a
//!   second. The agent estimates the 1 kHz amplitude of each PCM frame it receives
//!   (Goertzel, so that the talkers' tones, all away from 1 kHz, do not count) and takes
//!   the first frame above −18 dBFS after each marker; the latency is that frame's read
//!   minus the marker's hand-off to the peer connection (one process, one monotonic clock).
//!   It includes the codec's look-ahead, the gateway's input jitter buffer and its 20 ms
//!   mixing tick, so tens of ms are expected.
//! - **CPU.** The server's (`--server-pid`): utime + stime from `/proc/PID/stat` over the
//!   window, in % of one core, and in µs per participant-frame (CPU seconds over
//!   participants × 20 ms frames; participants are the peers, the agent not counted); also
//!   split by thread name (`/proc/PID/task/*/schedstat`), with RSS and thread count at the
//!   end of the window. The driver's own CPU over the same window. The shards' counters
//!   from `GET /metrics`, differenced over the window. Every core's busy time from
//!   `/proc/stat` shows whether anything else ran on the machine.
//!
//! Output: a human summary, then `JSON {…}`, and the same JSON line appended to `--out`.
//! At the end the WHIP sessions are deleted and the calls hung up. Traffic goes only to
//! `--url`, which must be a loopback address, and to 127.0.0.1; counts and times are
//! bounded, and a watchdog ends the process if the run overstays its bound.

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chamade_media::opus::{MAX_PACKET_BYTES, OpusConfig, OpusEncoder};
use chamade_media::{Frame, SampleRate};
use futures_util::StreamExt;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tungstenite::Message;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

#[path = "common/procfs.rs"]
mod procfs;
#[path = "common/stats.rs"]
mod stats;
use procfs::{
    check_loopback, clock_ticks, cores_busy, proc_cpu_ticks, proc_status, proc_threads,
    thread_groups, wait_until,
};
use stats::{Noise, pct, sorted};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
    Registry, SettingEngineBuilder, register_default_interceptors,
};

const USAGE: &str = "usage: cargo bench --bench webrtc_load -- --url http://127.0.0.1:PORT \
--key KEY [--rooms R] [--per-room N] [--talkers T|all] [--warmup S] [--duration S] \
[--server-pid PID] [--out FILE] [--label NAME] [--latency]
  --url         the gateway's base URL; loopback only (http://127.0.0.1:PORT)
  --key         an API key (X-API-Key for the calls, Bearer for WHIP)
  --rooms       web calls to create, 1..=500 (default 1)
  --per-room    WebRTC peers joined to each call, 1..=256 (default 10)
  --talkers     peers per call sending a speech-like signal, 0..=per-room or `all`
                (default 2); the others send encoded digital silence
  --warmup      seconds of sending before the window, 0..=60 (default 5)
  --duration    the measurement window in seconds, 1..=300 (default 20)
  --server-pid  the gateway's process, for its CPU, RSS and threads
  --out         append the JSON line of results to this file
  --label       the scenario's name in the results
  --latency     an agent WebSocket in room 0 times a marker sent by peer 0 of room 0";

const FRAME: Duration = Duration::from_millis(20);
const FRAME_US: f64 = 20_000.0;
const RATE: SampleRate = SampleRate::HZ_48000;
const PAYLOAD_TYPE: u8 = 111;
/// RTP timestamp units per 20 ms Opus packet (Opus counts at 48 kHz).
const TIMESTAMP_STEP: u32 = 960;
const FRAMES_PER_SECOND: usize = 50;
/// The marker goes out at this frame of every second.
const MARKER_PHASE: usize = 25;
const MARKER_HZ: f64 = 1_000.0;
/// Peak of the marker frame (−4 dBFS).
const MARKER_AMPLITUDE: f64 = 20_000.0;
/// 1 kHz amplitude of an agent frame that counts as the marker (−18 dBFS).
const MARKER_DETECT: f64 = 4_000.0;
/// The talkers' base amplitude (−30 dBFS), modulated between 0.35 and 1.0 of it (plus a
/// second harmonic at 0.3): always well above the gateway's silence threshold (~−54 dBFS).
const TALK_AMPLITUDE: f64 = 1_000.0;
/// Fundamentals of the talkers' variants; neither they nor their second harmonics come
/// within 200 Hz of the marker's 1 kHz.
const TALK_HZ: [f64; 8] = [220.0, 275.0, 330.0, 385.0, 600.0, 650.0, 700.0, 750.0];
/// Syllable rate of each variant (integer Hz, so that a 2 s cycle wraps without a click).
const SYLLABLE_HZ: [f64; 8] = [4.0, 3.0, 5.0, 4.0, 3.0, 5.0, 4.0, 3.0];
/// 2 s of each talker variant.
const TALK_FRAMES: usize = 100;
const SILENT_FRAMES: usize = 10;
/// The sender sleeps to this long before a deadline and spins the rest.
const JOIN_CONCURRENCY: usize = 8;
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const AGENT_READ_TIMEOUT: Duration = Duration::from_millis(200);
const MAX_ROOMS: usize = 500;
/// The server's `MAX_ROOM_PARTICIPANTS`.
const MAX_PER_ROOM: usize = 256;
/// Each peer holds a UDP socket and a driver task on each side; the driver's single core is
/// the practical limit well before this.
const MAX_PARTICIPANTS: usize = 2_000;
const MAX_DURATION_S: f64 = 300.0;
const MAX_WARMUP_S: f64 = 60.0;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--url" || a.starts_with("--url=")) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let opts = match Opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("webrtc_load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let participants = opts.rooms * opts.per_room;
    // Joins take well under a second each, 8 at a time; teardown about the same.
    let bound = Duration::from_secs(120 + participants as u64)
        + opts.warmup
        + opts.duration
        + Duration::from_secs(60);
    std::thread::spawn(move || {
        std::thread::sleep(bound);
        eprintln!("webrtc_load: the run exceeded its time bound of {bound:?}; stopping");
        std::process::exit(3);
    });
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("webrtc_load: tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(run(&opts, rt.handle().clone()));
    // Whatever is left (peer connections' tasks) ends with the runtime, without waiting.
    rt.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("webrtc_load: {e}");
            ExitCode::from(1)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Options

struct Opts {
    url: String,
    key: String,
    rooms: usize,
    per_room: usize,
    talkers: usize,
    warmup: Duration,
    duration: Duration,
    server_pid: Option<u32>,
    out: Option<String>,
    label: String,
    latency: bool,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let mut kv: HashMap<String, String> = HashMap::new();
        let mut latency = false;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--bench" {
                continue;
            }
            if a == "--latency" {
                latency = true;
                continue;
            }
            let Some(name) = a.strip_prefix("--") else {
                return Err(format!("unexpected argument {a:?}"));
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => {
                    let v = it.next().ok_or(format!("--{name} needs a value"))?;
                    (name.to_string(), v.clone())
                }
            };
            if kv.insert(name.clone(), value).is_some() {
                return Err(format!("--{name} given twice"));
            }
        }
        let known = [
            "url",
            "key",
            "rooms",
            "per-room",
            "talkers",
            "warmup",
            "duration",
            "server-pid",
            "out",
            "label",
        ];
        if let Some(k) = kv.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(format!("unknown option --{k}"));
        }
        fn num<T: std::str::FromStr>(
            kv: &HashMap<String, String>,
            k: &str,
            default: T,
        ) -> Result<T, String> {
            kv.get(k).map_or(Ok(default), |v| {
                v.parse().map_err(|_| format!("--{k}: not a number: {v}"))
            })
        }
        let url = kv.get("url").ok_or("--url is required")?;
        let url = url.trim_end_matches('/').to_string();
        check_loopback(&url)?;
        let key = kv.get("key").ok_or("--key is required")?.clone();
        if key.is_empty() || key.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("--key must be a non-empty API key without spaces".into());
        }
        let rooms: usize = num(&kv, "rooms", 1)?;
        let per_room: usize = num(&kv, "per-room", 10)?;
        let talkers = match kv.get("talkers").map(String::as_str) {
            None => 2.min(per_room),
            Some("all") => per_room,
            Some(t) => t
                .parse::<usize>()
                .map_err(|_| format!("--talkers must be a number or `all`, not {t}"))?,
        };
        let warmup: f64 = num(&kv, "warmup", 5.0)?;
        let duration: f64 = num(&kv, "duration", 20.0)?;
        let server_pid = kv
            .get("server-pid")
            .map(|v| {
                v.parse::<u32>()
                    .map_err(|_| format!("--server-pid: not a process id: {v}"))
            })
            .transpose()?;
        if !(1..=MAX_ROOMS).contains(&rooms) {
            return Err(format!("--rooms must be 1..={MAX_ROOMS}"));
        }
        if !(1..=MAX_PER_ROOM).contains(&per_room) {
            return Err(format!("--per-room must be 1..={MAX_PER_ROOM}"));
        }
        if rooms * per_room > MAX_PARTICIPANTS {
            return Err(format!(
                "at most {MAX_PARTICIPANTS} peers in all (--rooms x --per-room)"
            ));
        }
        if talkers > per_room {
            return Err(format!(
                "--talkers must be 0..=per-room ({per_room}) or `all`"
            ));
        }
        if !(0.0..=MAX_WARMUP_S).contains(&warmup) {
            return Err(format!("--warmup must be 0..={MAX_WARMUP_S} s"));
        }
        if !(1.0..=MAX_DURATION_S).contains(&duration) {
            return Err(format!("--duration must be 1..={MAX_DURATION_S} s"));
        }
        let label = kv
            .get("label")
            .cloned()
            .unwrap_or_else(|| format!("webrtc-{rooms}room-{per_room}-{talkers}talk"));
        Ok(Opts {
            url,
            key,
            rooms,
            per_room,
            talkers,
            warmup: Duration::from_secs_f64(warmup),
            duration: Duration::from_secs_f64(duration),
            server_pid,
            out: kv.get("out").cloned(),
            label,
            latency,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Payloads

/// The pre-encoded streams the peers cycle through.
struct Payloads {
    /// One stream per talker variant, `TALK_FRAMES` each.
    talk: Vec<Arc<[Bytes]>>,
    silence: Arc<[Bytes]>,
    /// One second: silence with the marker at `MARKER_PHASE`.
    marker: Arc<[Bytes]>,
}

/// Encodes `frames` (48 kHz, 960 samples each) with one fresh encoder, in order.
fn encode_stream(frames: &[Vec<i16>]) -> Result<Arc<[Bytes]>, String> {
    let mut encoder =
        OpusEncoder::new(RATE, OpusConfig::default()).map_err(|e| format!("Opus encoder: {e}"))?;
    let mut out = vec![0u8; MAX_PACKET_BYTES];
    let mut packets = Vec::with_capacity(frames.len());
    for f in frames {
        let frame = Frame::from_samples(RATE, f).map_err(|e| format!("frame: {e}"))?;
        let n = encoder
            .encode(&frame, &mut out)
            .map_err(|e| format!("Opus encode: {e}"))?;
        packets.push(Bytes::copy_from_slice(&out[..n]));
    }
    Ok(packets.into())
}

fn payloads() -> Result<Payloads, String> {
    let n = RATE.frame_samples();
    let hz = f64::from(RATE.hz());
    let tau = 2.0 * std::f64::consts::PI;
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    let mut talk = Vec::with_capacity(TALK_HZ.len());
    for (v, (&f0, &syl)) in TALK_HZ.iter().zip(&SYLLABLE_HZ).enumerate() {
        let frames: Vec<Vec<i16>> = (0..TALK_FRAMES)
            .map(|k| {
                (0..n)
                    .map(|i| {
                        let t = (k * n + i) as f64 / hz;
                        let envelope = 0.35 + 0.65 * (std::f64::consts::PI * syl * t).sin().abs();
                        let voice =
                            (tau * f0 * t).sin() + 0.3 * (tau * 2.0 * f0 * t + v as f64).sin();
                        let x = TALK_AMPLITUDE * (envelope * voice + 0.03 * noise.next_unit());
                        x.round().clamp(-32_768.0, 32_767.0) as i16
                    })
                    .collect()
            })
            .collect();
        talk.push(encode_stream(&frames)?);
    }
    let silence = encode_stream(&vec![vec![0i16; n]; SILENT_FRAMES])?;
    let marker_frames: Vec<Vec<i16>> = (0..FRAMES_PER_SECOND)
        .map(|k| {
            if k == MARKER_PHASE {
                (0..n)
                    .map(|i| {
                        let x = MARKER_AMPLITUDE * (tau * MARKER_HZ * i as f64 / hz).sin();
                        x.round() as i16
                    })
                    .collect()
            } else {
                vec![0i16; n]
            }
        })
        .collect();
    let marker = encode_stream(&marker_frames)?;
    Ok(Payloads {
        talk,
        silence,
        marker,
    })
}

/// The amplitude of the `freq` component of `samples` (Goertzel).
fn tone_amplitude(samples: &[i16], freq: f64, rate: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * freq / rate).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0);
    2.0 * power.sqrt() / samples.len() as f64
}

// ---------------------------------------------------------------------------------------
// Peers

/// What a peer received, updated by its track's poll task.
#[derive(Default)]
struct RxStats {
    total: u64,
    /// Packets received while recording.
    window: u64,
    last_at: Option<Instant>,
    last_seq: Option<u16>,
    /// Inter-arrival times within the window, µs.
    iat_us: Vec<u32>,
    /// Sequence numbers skipped within the window.
    gaps_lost: u64,
}

struct Handler {
    gathered: mpsc::Sender<()>,
    state: watch::Sender<RTCPeerConnectionState>,
    rx: Arc<Mutex<RxStats>>,
    record: Arc<AtomicBool>,
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
        let rx = Arc::clone(&self.rx);
        let record = Arc::clone(&self.record);
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                let TrackRemoteEvent::OnRtpPacket(p) = event else {
                    continue;
                };
                let now = Instant::now();
                let recording = record.load(Ordering::Relaxed);
                let Ok(mut s) = rx.lock() else { break };
                s.total += 1;
                let seq = p.header.sequence_number;
                if recording {
                    s.window += 1;
                    if let Some(last) = s.last_at {
                        let us = now.saturating_duration_since(last).as_micros();
                        s.iat_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                    if let Some(prev) = s.last_seq {
                        let gap = seq.wrapping_sub(prev);
                        if (2..1_000).contains(&gap) {
                            s.gaps_lost += u64::from(gap - 1);
                        }
                    }
                }
                s.last_at = Some(now);
                s.last_seq = Some(seq);
            }
        });
    }
}

/// A joined peer.
struct Peer {
    room: usize,
    idx: usize,
    pc: Arc<dyn PeerConnection>,
    track: Arc<TrackLocalStaticRTP>,
    state: watch::Receiver<RTCPeerConnectionState>,
    rx: Arc<Mutex<RxStats>>,
    ssrc: u32,
    /// The session path from `Location`, for the DELETE.
    location: String,
}

/// Builds a peer connection, posts its offer to the call's WHIP endpoint and waits until
/// ICE and DTLS are up. On failure after the answer, the session is deleted again.
async fn join_peer(
    client: &reqwest::Client,
    opts: &Opts,
    call_id: &str,
    room: usize,
    idx: usize,
    record: Arc<AtomicBool>,
) -> Result<Peer, String> {
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let mut media_engine = MediaEngine::default();
    media_engine
        .register_codec(
            chamade_actors::bridge::webrtc::opus_codec(),
            RtpCodecKind::Audio,
        )
        .map_err(|e| format!("register Opus: {e}"))?;
    let registry = register_default_interceptors(Registry::new(), &mut media_engine)
        .map_err(|e| format!("interceptors: {e}"))?;
    let (gathered_tx, mut gathered) = mpsc::channel(1);
    let (state_tx, mut state) = watch::channel(RTCPeerConnectionState::New);
    let rx: Arc<Mutex<RxStats>> = Arc::default();
    let handler = Arc::new(Handler {
        gathered: gathered_tx,
        state: state_tx,
        rx: Arc::clone(&rx),
        record,
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
        .map_err(|e| format!("peer connection: {e}"))?;
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    let ssrc = 0x5eed_0000u32.wrapping_add((room * MAX_PER_ROOM + idx) as u32);
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        format!("load-{room}-{idx}"),
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
    let offered = async {
        pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
            .await
            .map_err(|e| format!("add track: {e}"))?;
        let offer = pc
            .create_offer(None)
            .await
            .map_err(|e| format!("offer: {e}"))?;
        pc.set_local_description(offer)
            .await
            .map_err(|e| format!("local description: {e}"))?;
        if tokio::time::timeout_at(deadline, gathered.recv())
            .await
            .is_err()
        {
            return Err(format!(
                "ICE gathering did not complete within {JOIN_TIMEOUT:?}"
            ));
        }
        pc.local_description()
            .await
            .map(|d| d.sdp)
            .ok_or_else(|| "no local description after gathering".to_string())
    }
    .await;
    let offer = match offered {
        Ok(o) => o,
        Err(e) => {
            let _ = pc.close().await;
            return Err(e);
        }
    };
    let path = format!("/api/call/{call_id}/whip?name=load-{room}-{idx}");
    let posted = async {
        let resp = client
            .post(format!("{}{path}", opts.url))
            .header("Content-Type", "application/sdp")
            .header("Authorization", format!("Bearer {}", opts.key))
            .body(offer)
            .timeout(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .send()
            .await
            .map_err(|e| format!("POST {path}: {e}"))?;
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.text().await.unwrap_or_default();
        if status.as_u16() != 201 {
            return Err(format!("POST {path}: {status}: {}", body.trim()));
        }
        let location = location.ok_or_else(|| format!("POST {path}: 201 without Location"))?;
        Ok((location, body))
    }
    .await;
    let (location, answer) = match posted {
        Ok(v) => v,
        Err(e) => {
            let _ = pc.close().await;
            return Err(e);
        }
    };
    let connected = async {
        let answer = RTCSessionDescription::answer(answer)
            .map_err(|e| format!("the answer is not valid SDP: {e}"))?;
        pc.set_remote_description(answer)
            .await
            .map_err(|e| format!("remote description: {e}"))?;
        loop {
            let s = *state.borrow_and_update();
            match s {
                RTCPeerConnectionState::Connected => return Ok(()),
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                    return Err(format!("the connection went {s:?}"));
                }
                _ => {}
            }
            match tokio::time::timeout_at(deadline, state.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err("the connection's state is gone".into()),
                Err(_) => {
                    return Err(format!(
                        "not connected within {JOIN_TIMEOUT:?} (state {s:?})"
                    ));
                }
            }
        }
    }
    .await;
    let peer = Peer {
        room,
        idx,
        pc,
        track,
        state,
        rx,
        ssrc,
        location,
    };
    if let Err(e) = connected {
        leave_peer(client, opts, &peer).await;
        return Err(e);
    }
    Ok(peer)
}

/// DELETEs the peer's WHIP session, then closes its connection.
async fn leave_peer(client: &reqwest::Client, opts: &Opts, peer: &Peer) -> bool {
    let ok = client
        .delete(format!("{}{}", opts.url, peer.location))
        .header("Authorization", format!("Bearer {}", opts.key))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    let _ = peer.pc.close().await;
    ok
}

// ---------------------------------------------------------------------------------------
// Sending

/// A peer as the sender thread sees it.
struct TxPeer {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    seq: u16,
    ts: u32,
    frames: Arc<[Bytes]>,
    frame: usize,
    /// Sends the marker stream: its hand-off times are recorded.
    marker: bool,
}

#[derive(Default)]
struct SendStats {
    /// Microseconds each recorded tick started after its deadline.
    late_us: Vec<f64>,
    /// Microseconds each recorded tick took to hand every packet over.
    tick_us: Vec<f64>,
    /// Packets handed over while recording.
    sent: u64,
    send_errors: u64,
    /// When each recorded marker was handed over.
    markers: Vec<Instant>,
}

fn sender_thread(
    handle: tokio::runtime::Handle,
    mut peers: Vec<TxPeer>,
    record: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> SendStats {
    let mut st = SendStats::default();
    let t0 = Instant::now() + Duration::from_millis(20);
    let mut k: u32 = 0;
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let deadline = t0 + FRAME * k;
        wait_until(deadline);
        let start = Instant::now();
        let recording = record.load(Ordering::Relaxed);
        handle.block_on(async {
            for p in &mut peers {
                p.seq = p.seq.wrapping_add(1);
                p.ts = p.ts.wrapping_add(TIMESTAMP_STEP);
                let payload = p.frames[p.frame].clone();
                let is_marker = p.marker && p.frame == MARKER_PHASE;
                p.frame = (p.frame + 1) % p.frames.len();
                let packet = rtc::rtp::Packet {
                    header: rtc::rtp::header::Header {
                        version: 2,
                        marker: first,
                        payload_type: PAYLOAD_TYPE,
                        sequence_number: p.seq,
                        timestamp: p.ts,
                        ssrc: p.ssrc,
                        ..Default::default()
                    },
                    payload,
                };
                if recording && is_marker {
                    st.markers.push(Instant::now());
                }
                match p.track.write_rtp(packet).await {
                    Ok(()) if recording => st.sent += 1,
                    Ok(()) => {}
                    Err(_) => st.send_errors += 1,
                }
            }
        });
        first = false;
        if recording {
            st.late_us
                .push(start.saturating_duration_since(deadline).as_secs_f64() * 1e6);
            st.tick_us.push(start.elapsed().as_secs_f64() * 1e6);
        }
        // A tick that overran skips the deadlines it missed rather than bursting.
        let behind =
            (Instant::now().saturating_duration_since(t0).as_nanos() / FRAME.as_nanos()) as u32;
        k = (k + 1).max(behind);
    }
    st
}

// ---------------------------------------------------------------------------------------
// The agent (--latency)

#[derive(Default)]
struct AgentResult {
    /// Binary frames received, with their read time and 1 kHz amplitude.
    frames: Vec<(Instant, f64)>,
    texts: u64,
    error: Option<String>,
}

/// Connects the agent socket of `call_id` and declares 48 kHz with `receive`.
fn agent_connect(opts: &Opts, call_id: &str) -> Result<tungstenite::WebSocket<TcpStream>, String> {
    let parsed = reqwest::Url::parse(&opts.url).map_err(|e| format!("--url: {e}"))?;
    let host = parsed.host_str().ok_or("--url has no host")?.to_string();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let addr: SocketAddr = (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()
        .map_err(|e| format!("agent socket: {host}:{port}: {e}"))?
        .find(|a| a.ip().is_loopback())
        .ok_or_else(|| format!("agent socket: {host} has no loopback address"))?;
    let tcp = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)
        .map_err(|e| format!("agent socket: connect {addr}: {e}"))?;
    tcp.set_nodelay(true)
        .map_err(|e| format!("agent socket: TCP_NODELAY: {e}"))?;
    tcp.set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(|e| format!("agent socket: read timeout: {e}"))?;
    let ws_url = format!(
        "ws://{}/api/call/{call_id}/stream?api_key={}",
        parsed.authority(),
        opts.key
    );
    let (mut ws, _) = tungstenite::client(ws_url.as_str(), tcp)
        .map_err(|e| format!("agent socket: handshake: {e}"))?;
    let config = json!({"type": "audio_config", "sample_rate": 48_000, "receive": true});
    ws.send(Message::text(config.to_string()))
        .map_err(|e| format!("agent socket: send audio_config: {e}"))?;
    // Wait for the acknowledgement, so that the agent is seated before sending starts.
    let until = Instant::now() + REQUEST_TIMEOUT;
    while Instant::now() < until {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                match v["type"].as_str() {
                    Some("audio_config") => {
                        if v["sample_rate"].as_u64() != Some(48_000) {
                            return Err(format!("agent socket: audio_config answered {v}"));
                        }
                        ws.get_ref()
                            .set_read_timeout(Some(AGENT_READ_TIMEOUT))
                            .map_err(|e| format!("agent socket: read timeout: {e}"))?;
                        return Ok(ws);
                    }
                    Some("call_error" | "error") => {
                        return Err(format!("agent socket: audio_config refused: {v}"));
                    }
                    _ => {}
                }
            }
            Ok(Message::Close(c)) => {
                return Err(format!("agent socket: closed by the server: {c:?}"));
            }
            Ok(_) => {}
            Err(e) => return Err(format!("agent socket: read: {e}")),
        }
    }
    Err("agent socket: no audio_config acknowledgement".into())
}

fn agent_thread(mut ws: tungstenite::WebSocket<TcpStream>, stop: Arc<AtomicBool>) -> AgentResult {
    let mut res = AgentResult::default();
    let rate = f64::from(RATE.hz());
    let mut samples: Vec<i16> = Vec::with_capacity(RATE.frame_samples());
    while !stop.load(Ordering::Relaxed) {
        match ws.read() {
            Ok(Message::Binary(b)) => {
                let at = Instant::now();
                samples.clear();
                samples.extend(b.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])));
                let amp = tone_amplitude(&samples, MARKER_HZ, rate);
                res.frames.push((at, amp));
            }
            Ok(Message::Text(_)) => res.texts += 1,
            Ok(Message::Close(_)) => {
                res.error = Some("closed by the server".into());
                break;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                res.error = Some(format!("read: {e}"));
                break;
            }
        }
    }
    let _ = ws.close(None);
    let _ = ws.flush();
    res
}

// ---------------------------------------------------------------------------------------
// Server-side figures (as in rtp_load)

/// The shard counters of `GET /metrics`, summed over shards.
async fn shard_counters(client: &reqwest::Client, url: &str) -> Option<HashMap<String, f64>> {
    let resp = client.get(format!("{url}/metrics")).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    Some(stats::shard_counters(&resp.text().await.ok()?))
}

// ---------------------------------------------------------------------------------------
// The run

async fn create_call(client: &reqwest::Client, opts: &Opts) -> Result<String, String> {
    let resp = client
        .post(format!("{}/api/call", opts.url))
        .header("X-API-Key", &opts.key)
        .json(&json!({"platform": "web", "agent_name": "webrtc-load"}))
        .send()
        .await
        .map_err(|e| format!("POST /api/call: {e}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(format!("POST /api/call: {status}: {body}"));
    }
    body["call_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("POST /api/call: no call_id in {body}"))
}

/// DELETEs the WHIP sessions and closes the peers, a few at a time, then hangs up.
async fn tear_down(client: &reqwest::Client, opts: &Opts, peers: &[Peer], calls: &[String]) {
    let left: Vec<bool> = futures_util::stream::iter(peers)
        .map(|p| leave_peer(client, opts, p))
        .buffer_unordered(JOIN_CONCURRENCY)
        .collect()
        .await;
    let failed = left.iter().filter(|ok| !**ok).count();
    if failed > 0 {
        eprintln!("webrtc_load: {failed} WHIP sessions could not be deleted");
    }
    let mut failed = 0;
    for id in calls {
        let ok = client
            .delete(format!("{}/api/call/{id}", opts.url))
            .header("X-API-Key", &opts.key)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if !ok {
            failed += 1;
        }
    }
    if failed > 0 {
        eprintln!("webrtc_load: {failed} calls could not be hung up");
    }
}

/// Creates the calls and joins every peer, `JOIN_CONCURRENCY` at a time; stops at the
/// first failure (what was made is left in `calls` and `peers` for the teardown).
async fn set_up(
    client: &reqwest::Client,
    opts: &Opts,
    record: &Arc<AtomicBool>,
    calls: &mut Vec<String>,
    peers: &mut Vec<Peer>,
    join_ms: &mut Vec<f64>,
) -> Result<(), String> {
    for _ in 0..opts.rooms {
        calls.push(create_call(client, opts).await?);
    }
    let n = opts.rooms * opts.per_room;
    let seats: Vec<(usize, usize)> = (0..opts.rooms)
        .flat_map(|r| (0..opts.per_room).map(move |i| (r, i)))
        .collect();
    let calls_ref: &[String] = calls;
    let mut joins = futures_util::stream::iter(seats)
        .map(|(r, i)| {
            let record = Arc::clone(record);
            async move {
                let began = Instant::now();
                let res = join_peer(client, opts, &calls_ref[r], r, i, record).await;
                (r, i, began.elapsed(), res)
            }
        })
        .buffer_unordered(JOIN_CONCURRENCY);
    let began = Instant::now();
    let mut failure = None;
    while let Some((r, i, took, res)) = joins.next().await {
        match res {
            Ok(p) => {
                join_ms.push(took.as_secs_f64() * 1e3);
                peers.push(p);
                let done = peers.len();
                if done == n || done.is_multiple_of(25) {
                    eprintln!(
                        "webrtc_load: {done}/{n} peers connected ({:.1} s)",
                        began.elapsed().as_secs_f64()
                    );
                }
            }
            Err(e) => {
                failure = Some(format!("peer {i} of room {r}: {e}"));
                break;
            }
        }
    }
    // Joins still in flight are dropped here, their connections with them; the calls'
    // hang-up ends their sessions on the server.
    drop(joins);
    match failure {
        Some(e) => Err(e),
        None => {
            peers.sort_by_key(|p| (p.room, p.idx));
            Ok(())
        }
    }
}

async fn run(opts: &Opts, handle: tokio::runtime::Handle) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let pid = opts.server_pid.map(|p| p.to_string());
    if let Some(p) = &pid
        && proc_cpu_ticks(p).is_none()
    {
        return Err(format!(
            "--server-pid {p}: no such process readable in /proc"
        ));
    }
    let hz = clock_ticks();
    let n = opts.rooms * opts.per_room;
    println!(
        "chamade WebRTC load: {} rooms x {} = {n} peers, {} talking per room{}, warm-up {:.1} s, window {:.1} s",
        opts.rooms,
        opts.per_room,
        opts.talkers,
        if opts.latency { ", agent latency" } else { "" },
        opts.warmup.as_secs_f64(),
        opts.duration.as_secs_f64()
    );
    let payloads = payloads()?;

    // 1. Calls and peers.
    let record = Arc::new(AtomicBool::new(false));
    let setup_began = Instant::now();
    let mut calls = Vec::new();
    let mut peers = Vec::new();
    let mut join_ms = Vec::new();
    if let Err(e) = set_up(&client, opts, &record, &mut calls, &mut peers, &mut join_ms).await {
        tear_down(&client, opts, &peers, &calls).await;
        return Err(e);
    }
    let setup_s = setup_began.elapsed().as_secs_f64();
    println!(
        "setup: {} calls and {n} peers in {setup_s:.1} s",
        calls.len()
    );

    // 2. The agent, then the media.
    let stop = Arc::new(AtomicBool::new(false));
    let agent: Option<JoinHandle<AgentResult>> = if opts.latency {
        let ws = match agent_connect(opts, &calls[0]) {
            Ok(ws) => ws,
            Err(e) => {
                tear_down(&client, opts, &peers, &calls).await;
                return Err(e);
            }
        };
        let stop = Arc::clone(&stop);
        Some(std::thread::spawn(move || agent_thread(ws, stop)))
    } else {
        None
    };
    let tx_peers: Vec<TxPeer> = peers
        .iter()
        .map(|p| {
            let marker = opts.latency && p.room == 0 && p.idx == 0;
            let frames = if marker {
                Arc::clone(&payloads.marker)
            } else if p.idx < opts.talkers {
                Arc::clone(&payloads.talk[(p.room * 3 + p.idx) % payloads.talk.len()])
            } else {
                Arc::clone(&payloads.silence)
            };
            // Talkers start at different points of their cycle.
            let frame = if marker {
                0
            } else {
                (p.room * 37 + p.idx * 13) % frames.len()
            };
            TxPeer {
                track: Arc::clone(&p.track),
                ssrc: p.ssrc,
                seq: (p.ssrc as u16).wrapping_mul(7),
                ts: p.ssrc.wrapping_mul(2_654_435_761),
                frames,
                frame,
                marker,
            }
        })
        .collect();
    let sender = {
        let (record, stop) = (Arc::clone(&record), Arc::clone(&stop));
        let handle = handle.clone();
        std::thread::spawn(move || sender_thread(handle, tx_peers, record, stop))
    };
    tokio::time::sleep(opts.warmup).await;

    // 3. The window.
    let metrics_start = shard_counters(&client, &opts.url).await;
    let threads_start = pid.as_deref().map(proc_threads);
    let cpu_start = pid.as_deref().and_then(proc_cpu_ticks);
    let driver_start = proc_cpu_ticks("self");
    let cores_start = cores_busy();
    let w0 = Instant::now();
    record.store(true, Ordering::Relaxed);
    tokio::time::sleep(opts.duration).await;
    record.store(false, Ordering::Relaxed);
    let wall = w0.elapsed().as_secs_f64();
    let cores_end = cores_busy();
    let cpu_end = pid.as_deref().and_then(proc_cpu_ticks);
    let driver_end = proc_cpu_ticks("self");
    let threads_end = pid.as_deref().map(proc_threads);
    let server_threads = pid.as_deref().and_then(|p| proc_status(p, "Threads"));
    let server_rss_kib = pid.as_deref().and_then(|p| proc_status(p, "VmRSS"));
    let metrics_end = shard_counters(&client, &opts.url).await;
    let not_connected = peers
        .iter()
        .filter(|p| *p.state.borrow() != RTCPeerConnectionState::Connected)
        .count();
    // Let the last markers reach the agent before stopping it.
    if opts.latency {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let send = tokio::task::spawn_blocking(move || sender.join())
        .await
        .ok()
        .and_then(Result::ok);
    let agent_res = match agent {
        Some(h) => tokio::task::spawn_blocking(move || h.join())
            .await
            .ok()
            .and_then(Result::ok),
        None => None,
    };
    tear_down(&client, opts, &peers, &calls).await;
    let send = send.ok_or("the sender thread panicked")?;
    if opts.latency && agent_res.is_none() {
        return Err("the agent thread panicked".into());
    }

    // 4. Figures.
    let cpu_pct = cpu_start
        .zip(cpu_end)
        .map(|(a, b)| b.saturating_sub(a) as f64 / hz / wall * 100.0);
    let driver_pct = driver_start
        .zip(driver_end)
        .map(|(a, b)| b.saturating_sub(a) as f64 / hz / wall * 100.0);
    let groups = threads_start
        .as_ref()
        .zip(threads_end.as_ref())
        .map(|(a, b)| thread_groups(a, b, wall));
    let schedstat_pct = groups.as_ref().map(|g| g.values().sum::<f64>());
    let machine: Vec<f64> = cores_start
        .iter()
        .zip(&cores_end)
        .map(|(a, b)| {
            let total = b.1.saturating_sub(a.1).max(1) as f64;
            (b.0.saturating_sub(a.0) as f64 / total * 1_000.0).round() / 10.0
        })
        .collect();
    let shards = metrics_start.zip(metrics_end).map(|(a, b)| {
        let d = |k: &str| b.get(k).copied().unwrap_or(0.0) - a.get(k).copied().unwrap_or(0.0);
        json!({
            "ticks": d("chamade_shard_ticks_total"),
            "deadline_misses": d("chamade_shard_deadline_misses_total"),
            "skipped_ticks": d("chamade_shard_skipped_ticks_total"),
            "rejected_commands": d("chamade_shard_rejected_commands_total"),
            "tick_max_us_since_start": b.get("chamade_shard_tick_duration_max_us"),
            "rooms": b.get("chamade_shard_rooms"),
            "participants": b.get("chamade_shard_participants"),
        })
    });

    let frames_in_window = wall / FRAME.as_secs_f64();
    let expected = (frames_in_window * n as f64).round() as u64;
    let mut received = 0u64;
    let mut received_total = 0u64;
    let mut gaps_lost = 0u64;
    let mut iat_ms: Vec<f64> = Vec::new();
    let mut worst_share: Option<f64> = None;
    let mut silent_peers = 0usize;
    for p in &peers {
        let Ok(s) = p.rx.lock() else { continue };
        received += s.window;
        received_total += s.total;
        gaps_lost += s.gaps_lost;
        if s.window == 0 {
            silent_peers += 1;
        }
        let share = s.window as f64 / frames_in_window;
        worst_share = Some(worst_share.map_or(share, |w: f64| w.min(share)));
        iat_ms.extend(s.iat_us.iter().map(|&us| f64::from(us) / 1e3));
    }
    let over_25 = (!iat_ms.is_empty())
        .then(|| iat_ms.iter().filter(|&&x| x > 25.0).count() as f64 / iat_ms.len() as f64);
    let iat_n = iat_ms.len();
    let iat = sorted(&iat_ms);

    let (lats, agent_frames, agent_error) = match &agent_res {
        Some(a) => {
            let mut lats = Vec::new();
            for &m in &send.markers {
                if let Some(&(at, _)) = a
                    .frames
                    .iter()
                    .find(|&&(at, amp)| at >= m && amp >= MARKER_DETECT)
                    && at - m < Duration::from_secs(1)
                {
                    lats.push((at - m).as_secs_f64() * 1e3);
                }
            }
            (sorted(&lats), Some(a.frames.len()), a.error.clone())
        }
        None => (Vec::new(), None, None),
    };
    let late = sorted(&send.late_us);
    let tick_us = sorted(&send.tick_us);
    let us_per_part_frame = cpu_pct.map(|c| c / 100.0 * FRAME_US / n as f64);
    let r3 = |v: Option<f64>| v.map(|x| (x * 1e3).round() / 1e3);
    let r1 = |v: Option<f64>| v.map(|x| (x * 10.0).round() / 10.0);
    let join = sorted(&join_ms);
    let agent_latency = opts.latency.then(|| {
        json!({
            "markers": send.markers.len(),
            "n": lats.len(),
            "p50": r3(pct(&lats, 50.0)),
            "p99": r3(pct(&lats, 99.0)),
            "min": r3(lats.first().copied()),
            "max": r3(lats.last().copied()),
            "agent_frames": agent_frames,
            "agent_error": agent_error,
        })
    });
    let iat_json = json!({
        "n": iat_n,
        "p1": r3(pct(&iat, 1.0)),
        "p50": r3(pct(&iat, 50.0)),
        "p99": r3(pct(&iat, 99.0)),
        "max": r3(iat.last().copied()),
        "share_gt_25ms": over_25.map(|x| (x * 1e4).round() / 1e4),
    });
    let res = json!({
        "label": opts.label,
        "server": "chamade",
        "leg": "webrtc",
        "codec": "opus48k",
        "rooms": opts.rooms,
        "per_room": opts.per_room,
        "talkers_per_room": opts.talkers,
        "participants": n,
        "latency_probe": opts.latency,
        "setup_s": r1(Some(setup_s)),
        "join_ms": {
            "p50": r1(pct(&join, 50.0)),
            "p99": r1(pct(&join, 99.0)),
            "max": r1(join.last().copied()),
        },
        "window_s": r3(Some(wall)),
        "server_cpu_pct_of_one_core": r1(cpu_pct),
        "server_cpu_us_per_participant_per_frame": r1(us_per_part_frame),
        "server_cpu_pct_schedstat": r1(schedstat_pct),
        "server_cpu_by_thread": groups.map(|g| g.into_iter().map(|(k, v)| (k, json!((v * 10.0).round() / 10.0))).collect::<serde_json::Map<_, _>>()),
        "server_threads": server_threads,
        "server_rss_mb": server_rss_kib.map(|k| (k as f64 / 1024.0 * 10.0).round() / 10.0),
        "shards": shards,
        "driver_cpu_pct": r1(driver_pct),
        "machine_busy_pct_by_core": machine,
        "packets_sent": send.sent,
        "send_errors": send.send_errors,
        "packets_received": received,
        "packets_expected": expected,
        "received_share": (expected > 0).then(|| (received as f64 / expected as f64 * 1e4).round() / 1e4),
        "received_share_worst_peer": r3(worst_share),
        "peers_without_packets": silent_peers,
        "peers_not_connected_at_end": not_connected,
        "packets_received_whole_run": received_total,
        "seq_gaps_lost": gaps_lost,
        "iat_ms": iat_json,
        "agent_latency_ms": agent_latency,
        "sender_late_us_p50": r1(pct(&late, 50.0)),
        "sender_late_us_p99": r1(pct(&late, 99.0)),
        "sender_late_us_max": r1(late.last().copied()),
        "sender_tick_us_p50": r1(pct(&tick_us, 50.0)),
        "sender_tick_us_max": r1(tick_us.last().copied()),
    });
    report(&res);
    if let Some(path) = &opts.out {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("--out {path}: {e}"))?;
        writeln!(f, "{res}").map_err(|e| format!("--out {path}: {e}"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Report

fn report(r: &Value) {
    let f = |v: &Value| match v.as_f64() {
        Some(x) => format!("{x}"),
        None => "n/a".into(),
    };
    let iat = &r["iat_ms"];
    println!();
    println!("== chamade WebRTC load ==");
    println!(
        "scenario        {}: {} rooms x {} = {} peers, {} talking per room, Opus 48 kHz",
        r["label"].as_str().unwrap_or(""),
        r["rooms"],
        r["per_room"],
        r["participants"],
        r["talkers_per_room"],
    );
    println!(
        "setup           {} s (join p50 {} p99 {} max {} ms); window {} s",
        f(&r["setup_s"]),
        f(&r["join_ms"]["p50"]),
        f(&r["join_ms"]["p99"]),
        f(&r["join_ms"]["max"]),
        f(&r["window_s"])
    );
    println!(
        "server          CPU {} % of one core = {} µs per participant per frame; {} threads; RSS {} MiB",
        f(&r["server_cpu_pct_of_one_core"]),
        f(&r["server_cpu_us_per_participant_per_frame"]),
        f(&r["server_threads"]),
        f(&r["server_rss_mb"])
    );
    if let Some(groups) = r["server_cpu_by_thread"].as_object() {
        let mut g: Vec<(&String, f64)> = groups
            .iter()
            .map(|(k, v)| (k, v.as_f64().unwrap_or(0.0)))
            .filter(|(_, v)| *v >= 0.05)
            .collect();
        g.sort_by(|a, b| b.1.total_cmp(&a.1));
        let line: Vec<String> = g.iter().map(|(k, v)| format!("{k} {v:.1} %")).collect();
        println!(
            "  by thread     {} (schedstat total {} %)",
            line.join(", "),
            f(&r["server_cpu_pct_schedstat"])
        );
    }
    if r["shards"].is_object() {
        let s = &r["shards"];
        println!(
            "shards          ticks {}, deadline misses {}, skipped {}, rejected commands {}, longest tick since start {} µs",
            f(&s["ticks"]),
            f(&s["deadline_misses"]),
            f(&s["skipped_ticks"]),
            f(&s["rejected_commands"]),
            f(&s["tick_max_us_since_start"])
        );
    }
    println!(
        "packets         sent {} (errors {}); received {} of {} expected = {}; worst peer {}; peers with none {}; sequence gaps {}; not connected at end {}",
        r["packets_sent"],
        r["send_errors"],
        r["packets_received"],
        r["packets_expected"],
        f(&r["received_share"]),
        f(&r["received_share_worst_peer"]),
        r["peers_without_packets"],
        r["seq_gaps_lost"],
        r["peers_not_connected_at_end"],
    );
    println!(
        "inter-arrival   p1 {} p50 {} p99 {} max {} ms; over 25 ms {} (at the peers' poll tasks)",
        f(&iat["p1"]),
        f(&iat["p50"]),
        f(&iat["p99"]),
        f(&iat["max"]),
        f(&iat["share_gt_25ms"]),
    );
    if r["agent_latency_ms"].is_object() {
        let lat = &r["agent_latency_ms"];
        println!(
            "latency         peer 0 → agent p50 {} p99 {} (min {} max {}) ms; {} of {} markers seen; {} agent frames{}",
            f(&lat["p50"]),
            f(&lat["p99"]),
            f(&lat["min"]),
            f(&lat["max"]),
            lat["n"],
            lat["markers"],
            lat["agent_frames"],
            lat["agent_error"]
                .as_str()
                .map(|e| format!("; agent socket: {e}"))
                .unwrap_or_default()
        );
    }
    println!(
        "driver          CPU {} % of one core; send lateness p50 {} p99 {} max {} µs; one tick's hand-off p50 {} max {} µs",
        f(&r["driver_cpu_pct"]),
        f(&r["sender_late_us_p50"]),
        f(&r["sender_late_us_p99"]),
        f(&r["sender_late_us_max"]),
        f(&r["sender_tick_us_p50"]),
        f(&r["sender_tick_us_max"]),
    );
    if let Some(cores) = r["machine_busy_pct_by_core"].as_array() {
        let line: Vec<String> = cores
            .iter()
            .enumerate()
            .map(|(i, v)| format!("core {i} {} %", f(v)))
            .collect();
        println!(
            "machine         busy over the window (all processes, /proc/stat): {}",
            line.join(", ")
        );
    }
    println!("JSON {r}");
}
