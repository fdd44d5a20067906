//! Load driver for plain RTP legs: R rooms of N participants, each a UDP socket on
//! 127.0.0.1 joined to a `web` call with `POST /api/call/{id}/rtp`, all streaming real-time
//! RTP at the 20 ms cadence; a few of them read back the room's mix-minus.
//!
//! ```sh
//! cargo bench --bench rtp_load -- --url http://127.0.0.1:8080 --key chmd_… \
//!     --rooms 1 --per-room 100 --codec pcmu --warmup 5 --duration 20 \
//!     [--probes 2] [--server-pid PID] [--out results.jsonl] [--label NAME] [--self-check] \
//!     [--room-rate 8000]
//! ```
//!
//! Without `--url` (as under `cargo test --benches`) it prints its usage and exits 0.
//!
//! It measures what the Janus AudioBridge driver of the media anchors (`ab_bench.py`)
//! measures, the same way, so that the two can be read side by side:
//!
//! - **Sending.** One thread sends, on an absolute 20 ms schedule, one RTP packet per
//!   participant from that participant's own socket: PCMU (PT 0, 160 bytes of μ-law) or
//!   Opus at 48 kHz (PT 111, 20 ms frames pre-encoded with `chamade_media`'s encoder). The
//!   content is a quiet tone plus noise (amplitude ~60, 8 variants), so that sums never
//!   clip. The thread sleeps to 0.3 ms before each deadline and spins the rest, so that its
//!   own lateness stays well under a millisecond; it is reported as *send lateness*.
//! - **Output timing** at `--probes` participants per room (1..=probes), read on their own
//!   threads with kernel receive timestamps (`SO_TIMESTAMPNS`): inter-arrival p1/p50/p99/max,
//!   the share above 25 ms and outside 19–21 ms, RFC 3550 jitter, sequence gaps, and
//!   packets received against those expected over the window (20 ms each per probe).
//! - **Mouth-to-ear through the mixer.** Participant 0 of room 0 sends a full-scale 1 kHz
//!   20 ms burst once a second; participant 1 of room 0 decodes its mix and timestamps the
//!   first packet whose peak is at least 8,000. With `--self-check` participant 0 also reads
//!   its own mix, which must not hold its own burst.
//! - **CPU.** The server's (`--server-pid`): utime + stime from `/proc/PID/stat` over the
//!   window, in % of one core, also split by thread name from `/proc/PID/task/*/schedstat`;
//!   and the driver's own. The shards' tick counters from `GET /metrics` (deadline misses,
//!   skipped ticks, rejected commands) are differenced over the window. Every core's busy
//!   time from `/proc/stat` over the window shows whether anything else ran on the machine.
//!
//! `--per-room 0` creates the rooms (calls) with nobody in them and measures only the
//! server's CPU: the cost of idle rooms.
//!
//! Output: a human summary, then `JSON {…}`, and the same JSON line appended to `--out`.
//! Traffic goes only to `--url`, which must be a loopback address, and to 127.0.0.1; counts
//! and times are bounded, and a watchdog ends the process if the run overstays its bound.

use std::collections::{BTreeMap, HashMap};
use std::io::{IoSliceMut, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chamade_media::g711::ulaw;
use chamade_media::opus::{MAX_PACKET_BYTES, OpusConfig, OpusDecoder, OpusEncoder};
use chamade_media::{Frame, SampleRate};
use nix::errno::Errno;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use serde_json::{Value, json};
use socket2::{Domain, Protocol, Socket, Type};

#[path = "common/procfs.rs"]
mod procfs;
#[path = "common/stats.rs"]
mod stats;
use procfs::{
    check_loopback, clock_ticks, cores_busy, proc_cpu_ticks, proc_status, proc_threads,
    thread_groups, wait_until,
};
use stats::{Noise, pct, sorted};

const USAGE: &str = "usage: cargo bench --bench rtp_load -- --url http://127.0.0.1:PORT --key KEY \
[--rooms R] [--per-room N] [--codec pcmu|opus] [--warmup S] [--duration S] [--probes P] \
[--server-pid PID] [--out FILE] [--label NAME] [--room-rate HZ] [--self-check]";

const FRAME: Duration = Duration::from_millis(20);
const FRAME_US: f64 = 20_000.0;
/// The burst goes out at this frame of every second (as in `ab_bench.py`).
const BURST_PHASE: u64 = 25;
const FRAMES_PER_SECOND: u64 = 50;
/// Peak of a decoded frame that counts as the burst.
const BURST_PEAK: i32 = 8_000;
const BURST_AMPLITUDE: f64 = 20_000.0;
const QUIET_AMPLITUDE: f64 = 60.0;
const VARIANTS: usize = 8;
const FRAMES_PER_VARIANT: usize = 50;
/// The sender sleeps to this long before a deadline and spins the rest.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const PROBE_READ_TIMEOUT: Duration = Duration::from_millis(200);
const MAX_ROOMS: usize = 1_000;
/// The server's `MAX_ROOM_PARTICIPANTS`.
const MAX_PER_ROOM: usize = 256;
/// Two sockets a participant (the driver's and the server's) stay well inside the usual
/// 20,000-descriptor limit.
const MAX_PARTICIPANTS: usize = 4_000;
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
            eprintln!("rtp_load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let participants = opts.rooms * opts.per_room;
    let bound = Duration::from_secs(120 + participants as u64 / 2)
        + opts.warmup
        + opts.duration
        + Duration::from_secs(60);
    std::thread::spawn(move || {
        std::thread::sleep(bound);
        eprintln!("rtp_load: the run exceeded its time bound of {bound:?}; stopping");
        std::process::exit(3);
    });
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtp_load: {e}");
            ExitCode::from(1)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Options

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Codec {
    Pcmu,
    Opus,
}

impl Codec {
    /// The name `POST /api/call/{id}/rtp` takes.
    fn api_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Opus => "opus",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Codec::Pcmu => "pcmu8k",
            Codec::Opus => "opus48k",
        }
    }

    fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Opus => 111,
        }
    }

    fn rate(self) -> SampleRate {
        match self {
            Codec::Pcmu => SampleRate::HZ_8000,
            Codec::Opus => SampleRate::HZ_48000,
        }
    }

    /// RTP timestamp units per packet, and the RTP clock (Opus counts at 48 kHz).
    fn timestamp_step(self) -> u32 {
        match self {
            Codec::Pcmu => 160,
            Codec::Opus => 960,
        }
    }

    fn rtp_clock(self) -> f64 {
        match self {
            Codec::Pcmu => 8_000.0,
            Codec::Opus => 48_000.0,
        }
    }
}

struct Opts {
    url: String,
    key: String,
    rooms: usize,
    per_room: usize,
    codec: Codec,
    warmup: Duration,
    duration: Duration,
    probes: usize,
    server_pid: Option<u32>,
    out: Option<String>,
    label: String,
    self_check: bool,
    /// The rooms' mixing rate (`sample_rate` of `POST /api/call`); `None`: 48 kHz.
    room_rate: Option<u32>,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let mut kv: HashMap<String, String> = HashMap::new();
        let mut self_check = false;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--bench" {
                continue;
            }
            if a == "--self-check" {
                self_check = true;
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
            kv.insert(name, value);
        }
        let known = [
            "url",
            "key",
            "rooms",
            "per-room",
            "codec",
            "warmup",
            "duration",
            "probes",
            "server-pid",
            "out",
            "label",
            "room-rate",
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
        let rooms: usize = num(&kv, "rooms", 1)?;
        let per_room: usize = num(&kv, "per-room", 10)?;
        let codec = match kv.get("codec").map(|c| c.to_ascii_lowercase()).as_deref() {
            None | Some("pcmu") => Codec::Pcmu,
            Some("opus") => Codec::Opus,
            Some(other) => return Err(format!("--codec must be pcmu or opus, not {other}")),
        };
        let warmup: f64 = num(&kv, "warmup", 5.0)?;
        let duration: f64 = num(&kv, "duration", 20.0)?;
        let probes: usize = num(&kv, "probes", 2)?;
        let server_pid = kv
            .get("server-pid")
            .map(|v| v.parse::<u32>().map_err(|_| format!("--server-pid: {v}")))
            .transpose()?;
        let room_rate = kv
            .get("room-rate")
            .map(|v| v.parse::<u32>().map_err(|_| format!("--room-rate: {v}")))
            .transpose()?;
        if rooms > MAX_ROOMS {
            return Err(format!("--rooms must be 0..={MAX_ROOMS}"));
        }
        if per_room > MAX_PER_ROOM {
            return Err(format!("--per-room must be 0..={MAX_PER_ROOM}"));
        }
        if rooms * per_room > MAX_PARTICIPANTS {
            return Err(format!("at most {MAX_PARTICIPANTS} participants"));
        }
        if per_room > 0 && per_room < 2 {
            return Err("--per-room must be 0 (idle rooms) or at least 2".into());
        }
        if per_room > 0 && !(1..per_room).contains(&probes) {
            return Err("--probes must be 1..per-room".into());
        }
        if !(0.0..=MAX_WARMUP_S).contains(&warmup) {
            return Err(format!("--warmup must be 0..={MAX_WARMUP_S} s"));
        }
        if !(1.0..=MAX_DURATION_S).contains(&duration) {
            return Err(format!("--duration must be 1..={MAX_DURATION_S} s"));
        }
        let label = kv.get("label").cloned().unwrap_or_else(|| {
            if per_room == 0 {
                format!("idle-{rooms}rooms")
            } else {
                format!("{}-{rooms}room-{per_room}", codec.label())
            }
        });
        Ok(Opts {
            room_rate,
            url,
            key,
            rooms,
            per_room,
            codec,
            warmup: Duration::from_secs_f64(warmup),
            duration: Duration::from_secs_f64(duration),
            probes,
            server_pid,
            out: kv.get("out").cloned(),
            label,
            self_check,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Payloads

/// `frames` consecutive 20 ms frames of a tone at `freq` with noise of a quarter of `amp`.
fn tone_frames(
    rate: SampleRate,
    freq: f64,
    amp: f64,
    frames: usize,
    noise: &mut Noise,
) -> Vec<Vec<i16>> {
    let n = rate.frame_samples();
    let hz = f64::from(rate.hz());
    (0..frames)
        .map(|k| {
            (0..n)
                .map(|i| {
                    let t = (k * n + i) as f64 / hz;
                    let v = amp * (2.0 * std::f64::consts::PI * freq * t).sin()
                        + noise.next_unit() * amp / 4.0;
                    v.round().clamp(-32_768.0, 32_767.0) as i16
                })
                .collect()
        })
        .collect()
}

/// The payloads every participant cycles through, and the burst.
struct Payloads {
    variants: Vec<Vec<Vec<u8>>>,
    burst: Vec<u8>,
}

fn payloads(codec: Codec) -> Result<Payloads, String> {
    let rate = codec.rate();
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    let pcm: Vec<Vec<Vec<i16>>> = (0..VARIANTS)
        .map(|v| {
            let freq = 200.0 + 97.0 * v as f64;
            tone_frames(rate, freq, QUIET_AMPLITUDE, FRAMES_PER_VARIANT, &mut noise)
        })
        .collect();
    let burst_pcm = tone_frames(rate, 1_000.0, BURST_AMPLITUDE, 1, &mut noise).remove(0);
    match codec {
        Codec::Pcmu => {
            let enc = |s: &[i16]| -> Result<Vec<u8>, String> {
                let mut out = vec![0u8; s.len()];
                ulaw::encode(s, &mut out).map_err(|e| e.to_string())?;
                Ok(out)
            };
            Ok(Payloads {
                variants: pcm
                    .iter()
                    .map(|frames| frames.iter().map(|f| enc(f)).collect())
                    .collect::<Result<_, _>>()?,
                burst: enc(&burst_pcm)?,
            })
        }
        Codec::Opus => {
            let mut encoder =
                OpusEncoder::new(rate, OpusConfig::default()).map_err(|e| e.to_string())?;
            let mut enc = |s: &[i16]| -> Result<Vec<u8>, String> {
                let frame = Frame::from_samples(rate, s).map_err(|e| e.to_string())?;
                let mut out = vec![0u8; MAX_PACKET_BYTES];
                let n = encoder
                    .encode(&frame, &mut out)
                    .map_err(|e| e.to_string())?;
                out.truncate(n);
                Ok(out)
            };
            let mut variants = Vec::with_capacity(VARIANTS);
            for frames in &pcm {
                variants.push(frames.iter().map(|f| enc(f)).collect::<Result<_, _>>()?);
            }
            let burst = enc(&burst_pcm)?;
            Ok(Payloads { variants, burst })
        }
    }
}

/// Decodes received payloads to find their peak.
enum PeakDecoder {
    Pcmu(Vec<i16>),
    Opus(Box<OpusDecoder>, Box<Frame>),
}

impl PeakDecoder {
    fn new(codec: Codec) -> Result<PeakDecoder, String> {
        Ok(match codec {
            Codec::Pcmu => PeakDecoder::Pcmu(vec![0; 2_048]),
            Codec::Opus => PeakDecoder::Opus(
                Box::new(OpusDecoder::new(codec.rate()).map_err(|e| e.to_string())?),
                Box::new(Frame::silence(codec.rate())),
            ),
        })
    }

    fn peak(&mut self, payload: &[u8]) -> i32 {
        let samples: &[i16] = match self {
            PeakDecoder::Pcmu(buf) => {
                let n = payload.len().min(buf.len());
                match ulaw::decode(&payload[..n], buf) {
                    Ok(n) => &buf[..n],
                    Err(_) => return 0,
                }
            }
            PeakDecoder::Opus(dec, frame) => match dec.decode(payload, frame) {
                Ok(_) => frame.samples(),
                Err(_) => return 0,
            },
        };
        samples
            .iter()
            .map(|&s| i32::from(s).abs())
            .max()
            .unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------------------
// Participants

struct Part {
    room: usize,
    idx: usize,
    sock: UdpSocket,
    ssrc: u32,
    seq: u16,
    ts: u32,
    variant: usize,
    frame: usize,
    /// Read back on its own thread.
    probe: bool,
    /// Sends the burst once a second.
    burst: bool,
}

/// One received packet at a probe.
#[derive(Clone, Copy)]
struct Arrival {
    /// Kernel receive time, CLOCK_REALTIME nanoseconds.
    at_ns: i64,
    seq: u16,
    rtp_ts: u32,
    /// Peak of the decoded payload, or -1 when it was not decoded.
    peak: i32,
}

struct ProbeResult {
    room: usize,
    idx: usize,
    arrivals: Vec<Arrival>,
    without_kernel_ts: u64,
}

fn udp_socket(probe: bool) -> Result<UdpSocket, String> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| format!("socket: {e}"))?;
    s.set_send_buffer_size(1 << 16)
        .map_err(|e| format!("SO_SNDBUF: {e}"))?;
    // The others' overflow is dropped by the kernel; the server sends regardless.
    s.set_recv_buffer_size(if probe { 1 << 18 } else { 4_096 })
        .map_err(|e| format!("SO_RCVBUF: {e}"))?;
    s.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0).into())
        .map_err(|e| format!("bind: {e}"))?;
    let s: UdpSocket = s.into();
    if probe {
        setsockopt(&s, sockopt::ReceiveTimestampns, &true)
            .map_err(|e| format!("SO_TIMESTAMPNS: {e}"))?;
        s.set_read_timeout(Some(PROBE_READ_TIMEOUT))
            .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    }
    Ok(s)
}

fn realtime_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// A probe's loop: every datagram with its kernel timestamp, while `record` is set.
fn probe_thread(
    sock: UdpSocket,
    room: usize,
    idx: usize,
    mut decoder: Option<PeakDecoder>,
    record: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> ProbeResult {
    let fd = sock.as_raw_fd();
    let mut buf = [0u8; 2_048];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let mut arrivals = Vec::with_capacity(16_384);
    let mut without_kernel_ts = 0;
    while !stop.load(Ordering::Relaxed) {
        let (n, kernel_ts) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(fd, &mut iov, Some(cmsg.as_mut_slice()), MsgFlags::empty()) {
                Ok(msg) => {
                    let mut ts = None;
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmTimestampns(t) = c {
                                ts = Some(t.tv_sec() * 1_000_000_000 + t.tv_nsec());
                            }
                        }
                    }
                    (msg.bytes, ts)
                }
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(_) => break,
            }
        };
        if n < 12 {
            continue;
        }
        // Decode every packet, recorded or not, so that an Opus decoder keeps its state.
        let peak = decoder.as_mut().map_or(-1, |d| d.peak(&buf[12..n]));
        if !record.load(Ordering::Relaxed) {
            continue;
        }
        let at_ns = match kernel_ts {
            Some(t) => t,
            None => {
                without_kernel_ts += 1;
                realtime_ns()
            }
        };
        arrivals.push(Arrival {
            at_ns,
            seq: u16::from_be_bytes([buf[2], buf[3]]),
            rtp_ts: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            peak,
        });
    }
    ProbeResult {
        room,
        idx,
        arrivals,
        without_kernel_ts,
    }
}

/// What the sender thread saw.
#[derive(Default)]
struct SendStats {
    /// Microseconds each recorded tick started after its deadline.
    late_us: Vec<f64>,
    /// Microseconds each recorded tick took to send every packet.
    burst_us: Vec<f64>,
    frames: u64,
    send_errors: u64,
    /// CLOCK_REALTIME nanoseconds just before each recorded burst left.
    bursts: Vec<i64>,
}

fn sender_thread(
    mut parts: Vec<Part>,
    payloads: Payloads,
    codec: Codec,
    end_after: Duration,
    record: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> (SendStats, Vec<Part>) {
    let mut st = SendStats::default();
    let pt = codec.payload_type();
    let step = codec.timestamp_step();
    let mut packet = vec![0u8; 12 + MAX_PACKET_BYTES];
    let t0 = Instant::now() + Duration::from_millis(50);
    let end = t0 + end_after;
    let mut k: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let deadline = t0 + FRAME * k as u32;
        if deadline > end {
            break;
        }
        wait_until(deadline);
        let start = Instant::now();
        let recording = record.load(Ordering::Relaxed);
        let do_burst = k % FRAMES_PER_SECOND == BURST_PHASE;
        for p in &mut parts {
            p.seq = p.seq.wrapping_add(1);
            p.ts = p.ts.wrapping_add(step);
            packet[0] = 0x80;
            packet[1] = pt;
            packet[2..4].copy_from_slice(&p.seq.to_be_bytes());
            packet[4..8].copy_from_slice(&p.ts.to_be_bytes());
            packet[8..12].copy_from_slice(&p.ssrc.to_be_bytes());
            let payload: &[u8] = if p.burst && do_burst {
                if recording {
                    st.bursts.push(realtime_ns());
                }
                &payloads.burst
            } else {
                let v = &payloads.variants[p.variant][p.frame];
                p.frame = (p.frame + 1) % FRAMES_PER_VARIANT;
                v
            };
            packet[12..12 + payload.len()].copy_from_slice(payload);
            if p.sock.send(&packet[..12 + payload.len()]).is_err() {
                st.send_errors += 1;
            }
        }
        if recording {
            st.late_us
                .push(start.saturating_duration_since(deadline).as_secs_f64() * 1e6);
            st.burst_us.push(start.elapsed().as_secs_f64() * 1e6);
        }
        st.frames += 1;
        k += 1;
    }
    (st, parts)
}

// ---------------------------------------------------------------------------------------
// Server-side figures

/// The threads that used the most CPU over the window: `name/tid` and % of one core.
fn busiest_threads(
    start: &HashMap<String, (String, u64)>,
    end: &HashMap<String, (String, u64)>,
    secs: f64,
) -> Vec<(String, f64)> {
    let mut all: Vec<(String, f64)> = end
        .iter()
        .map(|(tid, (name, ns))| {
            let before = start.get(tid).map_or(0, |s| s.1);
            (
                format!("{name}/{tid}"),
                ns.saturating_sub(before) as f64 / 1e9 / secs * 100.0,
            )
        })
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1));
    all.truncate(5);
    all
}

/// The shard counters of `GET /metrics`, summed over shards.
fn shard_counters(client: &reqwest::blocking::Client, url: &str) -> Option<HashMap<String, f64>> {
    let resp = client.get(format!("{url}/metrics")).send().ok()?;
    if !resp.status().is_success() {
        return None;
    }
    Some(stats::shard_counters(&resp.text().ok()?))
}

// ---------------------------------------------------------------------------------------
// The run

fn post(
    client: &reqwest::blocking::Client,
    opts: &Opts,
    path: &str,
    body: &Value,
) -> Result<Value, String> {
    let resp = client
        .post(format!("{}{path}", opts.url))
        .header("X-API-Key", &opts.key)
        .json(body)
        .send()
        .map_err(|e| format!("POST {path}: {e}"))?;
    let status = resp.status();
    let body: Value = resp.json().unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(format!("POST {path}: {status}: {body}"));
    }
    Ok(body)
}

fn hang_up_all(client: &reqwest::blocking::Client, opts: &Opts, calls: &[String]) {
    let failed = calls
        .iter()
        .filter(|id| {
            !client
                .delete(format!("{}/api/call/{id}", opts.url))
                .header("X-API-Key", &opts.key)
                .send()
                .is_ok_and(|r| r.status().is_success())
        })
        .count();
    if failed > 0 {
        eprintln!("rtp_load: {failed} calls could not be hung up");
    }
}

/// Creates the calls and joins every participant; hangs up what it made if anything fails.
fn set_up(
    client: &reqwest::blocking::Client,
    opts: &Opts,
    calls: &mut Vec<String>,
) -> Result<(Vec<Part>, Vec<f64>), String> {
    for _ in 0..opts.rooms {
        let call = post(
            client,
            opts,
            "/api/call",
            &match opts.room_rate {
                Some(hz) => json!({"platform": "web", "agent_name": "rtp-load", "sample_rate": hz}),
                None => json!({"platform": "web", "agent_name": "rtp-load"}),
            },
        )?;
        let id = call["call_id"]
            .as_str()
            .ok_or_else(|| format!("POST /api/call: no call_id in {call}"))?;
        calls.push(id.to_string());
    }
    let mut parts = Vec::with_capacity(opts.rooms * opts.per_room);
    let mut join_ms = Vec::with_capacity(opts.rooms * opts.per_room);
    let mut seed = Noise(realtime_ns() as u64 | 1);
    let mut random = || (seed.next_unit().abs() * f64::from(u32::MAX)) as u32;
    for (r, call) in calls.iter().enumerate() {
        for i in 0..opts.per_room {
            let probe = (1..=opts.probes).contains(&i) || (opts.self_check && r == 0 && i == 0);
            let sock = udp_socket(probe)?;
            let port = sock.local_addr().map_err(|e| e.to_string())?.port();
            let began = Instant::now();
            let leg = post(
                client,
                opts,
                &format!("/api/call/{call}/rtp"),
                &json!({"address": "127.0.0.1", "port": port, "codec": opts.codec.api_name()}),
            )?;
            join_ms.push(began.elapsed().as_secs_f64() * 1e3);
            let theirs = leg["local_port"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| format!("no local_port in {leg}"))?;
            let addr: IpAddr = leg["local_address"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| format!("no local_address in {leg}"))?;
            if !addr.is_loopback() {
                return Err(format!("the leg listens on {addr}, not on loopback"));
            }
            sock.connect(SocketAddr::new(addr, theirs))
                .map_err(|e| format!("connect: {e}"))?;
            parts.push(Part {
                room: r,
                idx: i,
                sock,
                ssrc: random(),
                seq: random() as u16,
                ts: random(),
                variant: (r * 7 + i) % VARIANTS,
                frame: random() as usize % FRAMES_PER_VARIANT,
                probe,
                burst: r == 0 && i == 0,
            });
        }
    }
    Ok((parts, join_ms))
}

fn run(opts: &Opts) -> Result<(), String> {
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
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
        "chamade RTP load: {} rooms x {} = {n} participants, {:?}, warm-up {:.1} s, window {:.1} s",
        opts.rooms,
        opts.per_room,
        opts.codec,
        opts.warmup.as_secs_f64(),
        opts.duration.as_secs_f64()
    );
    let payloads = payloads(opts.codec)?;

    // 1. Rooms and legs.
    let setup_began = Instant::now();
    let mut calls = Vec::new();
    let (parts, join_ms) = match set_up(&client, opts, &mut calls) {
        Ok(v) => v,
        Err(e) => {
            hang_up_all(&client, opts, &calls);
            return Err(e);
        }
    };
    let setup_s = setup_began.elapsed().as_secs_f64();
    println!(
        "setup: {} calls and {n} legs in {setup_s:.1} s",
        calls.len()
    );

    // 2. Media: one sender, one thread per probe.
    let record = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut probes: Vec<JoinHandle<ProbeResult>> = Vec::new();
    for p in parts.iter().filter(|p| p.probe) {
        let sock = p.sock.try_clone().map_err(|e| e.to_string())?;
        let decodes = p.room == 0 && (p.idx == 1 || p.idx == 0);
        let decoder = if decodes {
            Some(PeakDecoder::new(opts.codec)?)
        } else {
            None
        };
        let (room, idx) = (p.room, p.idx);
        let (record, stop) = (record.clone(), stop.clone());
        probes.push(std::thread::spawn(move || {
            probe_thread(sock, room, idx, decoder, record, stop)
        }));
    }
    let sender = (n > 0).then(|| {
        let (record, stop) = (record.clone(), stop.clone());
        let codec = opts.codec;
        let end_after = opts.warmup + opts.duration + Duration::from_secs(2);
        let parts = parts;
        std::thread::spawn(move || sender_thread(parts, payloads, codec, end_after, record, stop))
    });
    std::thread::sleep(opts.warmup);

    // 3. The window.
    let metrics_start = shard_counters(&client, &opts.url);
    let threads_start = pid.as_deref().map(proc_threads);
    let cpu_start = pid.as_deref().and_then(proc_cpu_ticks);
    let driver_start = proc_cpu_ticks("self");
    let cores_start = cores_busy();
    let w0 = Instant::now();
    record.store(true, Ordering::Relaxed);
    std::thread::sleep(opts.duration);
    record.store(false, Ordering::Relaxed);
    let wall = w0.elapsed().as_secs_f64();
    let cores_end = cores_busy();
    let cpu_end = pid.as_deref().and_then(proc_cpu_ticks);
    let driver_end = proc_cpu_ticks("self");
    let threads_end = pid.as_deref().map(proc_threads);
    let metrics_end = shard_counters(&client, &opts.url);
    let server_threads = pid.as_deref().and_then(|p| proc_status(p, "Threads"));
    let server_rss_kib = pid.as_deref().and_then(|p| proc_status(p, "VmRSS"));
    stop.store(true, Ordering::Relaxed);
    let send = sender.map(|h| h.join());
    let probe_results: Vec<ProbeResult> =
        probes.into_iter().filter_map(|h| h.join().ok()).collect();
    // The sockets close here, after the calls are gone.
    let (send_stats, parts) = match send {
        Some(Ok((s, p))) => (s, p),
        Some(Err(_)) => {
            hang_up_all(&client, opts, &calls);
            return Err("the sender thread panicked".into());
        }
        None => (SendStats::default(), Vec::new()),
    };
    hang_up_all(&client, opts, &calls);
    drop(parts);

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
    let machine: Vec<f64> = cores_start
        .iter()
        .zip(&cores_end)
        .map(|(a, b)| {
            let total = b.1.saturating_sub(a.1).max(1) as f64;
            (b.0.saturating_sub(a.0) as f64 / total * 1_000.0).round() / 10.0
        })
        .collect();
    let busiest = threads_start
        .as_ref()
        .zip(threads_end.as_ref())
        .map(|(a, b)| busiest_threads(a, b, wall));
    let schedstat_pct = groups.as_ref().map(|g| g.values().sum::<f64>());
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

    let mut iat_ms: Vec<f64> = Vec::new();
    let mut lost = 0u64;
    let mut got = 0u64;
    let mut rfc_jitter = Vec::new();
    let mut without_kernel_ts = 0;
    let mut lat_arrivals: Vec<Arrival> = Vec::new();
    let mut self_peak: Option<i32> = None;
    let mut listener_peak: Option<i32> = None;
    let mut timestamp_steps: BTreeMap<u32, u64> = BTreeMap::new();
    for pr in &probe_results {
        let mut arr = pr.arrivals.clone();
        arr.sort_by_key(|a| a.at_ns);
        without_kernel_ts += pr.without_kernel_ts;
        if pr.room == 0 && pr.idx == 0 {
            // The burst sender's own mix: counted apart, not in the timing figures.
            self_peak = arr.iter().map(|a| a.peak).max();
            continue;
        }
        got += arr.len() as u64;
        let mut j = 0.0;
        for w in arr.windows(2) {
            let (a, b) = (w[0], w[1]);
            iat_ms.push((b.at_ns - a.at_ns) as f64 / 1e6);
            let gap = b.seq.wrapping_sub(a.seq);
            if (2..1_000).contains(&gap) {
                lost += u64::from(gap - 1);
            }
            let step = b.rtp_ts.wrapping_sub(a.rtp_ts);
            *timestamp_steps.entry(step).or_default() += 1;
            let d =
                (b.at_ns - a.at_ns) as f64 / 1e6 - f64::from(step) / opts.codec.rtp_clock() * 1e3;
            j += (d.abs() - j) / 16.0;
        }
        rfc_jitter.push(j);
        if pr.room == 0 && pr.idx == 1 {
            listener_peak = arr.iter().map(|a| a.peak).max();
            lat_arrivals = arr;
        }
    }
    let timing_probes = probe_results
        .iter()
        .filter(|p| !(p.room == 0 && p.idx == 0))
        .count();
    let expected = (wall / FRAME.as_secs_f64() * timing_probes as f64) as u64;
    let mut lats: Vec<f64> = Vec::new();
    for &bs in &send_stats.bursts {
        if let Some(a) = lat_arrivals
            .iter()
            .find(|a| a.at_ns >= bs && a.peak >= BURST_PEAK)
            && a.at_ns - bs < 1_000_000_000
        {
            lats.push((a.at_ns - bs) as f64 / 1e6);
        }
    }
    let mut sorted_iat = iat_ms.clone();
    sorted_iat.sort_by(f64::total_cmp);
    lats.sort_by(f64::total_cmp);
    let mut late = send_stats.late_us.clone();
    late.sort_by(f64::total_cmp);
    let mut burst_us = send_stats.burst_us.clone();
    burst_us.sort_by(f64::total_cmp);
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let iat_mean = mean(&iat_ms);
    let iat_stdev = iat_mean.map(|m| {
        (iat_ms.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / iat_ms.len() as f64).sqrt()
    });
    let share = |f: &dyn Fn(f64) -> bool| -> Option<f64> {
        (!iat_ms.is_empty())
            .then(|| iat_ms.iter().filter(|&&x| f(x)).count() as f64 / iat_ms.len() as f64)
    };
    let us_per_part_frame = cpu_pct
        .filter(|_| n > 0)
        .map(|c| c / 100.0 * FRAME_US / n as f64);
    let r3 = |v: Option<f64>| v.map(|x| (x * 1e3).round() / 1e3);
    let r1 = |v: Option<f64>| v.map(|x| (x * 10.0).round() / 10.0);
    let mix_minus = (opts.self_check && n > 0).then(|| {
        json!({
            "burst_sender_p0_max_peak": self_peak,
            "listener_p1_max_peak": listener_peak,
            "p0_hears_own_burst": self_peak.is_some_and(|p| p >= BURST_PEAK),
        })
    });
    let res = json!({
        "label": opts.label,
        "server": "chamade",
        "codec": match opts.codec { Codec::Pcmu => "pcmu", Codec::Opus => "opus" },
        "rate": opts.codec.rate().hz(),
        "room_rate": opts.room_rate.unwrap_or(48_000),
        "rooms": opts.rooms,
        "per_room": opts.per_room,
        "participants": n,
        "setup_s": r1(Some(setup_s)),
        "join_ms_p50": r3(pct(&sorted(&join_ms), 50.0)),
        "window_s": r3(Some(wall)),
        "server_cpu_pct_of_one_core": r1(cpu_pct),
        "server_cpu_pct_schedstat": r1(schedstat_pct),
        "server_cpu_busiest_threads": busiest.map(|b| b.into_iter().map(|(k, v)| (k, json!((v * 10.0).round() / 10.0))).collect::<serde_json::Map<_, _>>()),
        "server_cpu_by_thread": groups.map(|g| g.into_iter().map(|(k, v)| (k, json!((v * 10.0).round() / 10.0))).collect::<serde_json::Map<_, _>>()),
        "server_cpu_us_per_participant_per_frame": r1(us_per_part_frame),
        "server_threads": server_threads,
        "server_rss_mb": server_rss_kib.map(|k| (k as f64 / 1024.0 * 10.0).round() / 10.0),
        "shards": shards,
        "driver_cpu_pct": r1(driver_pct),
        "machine_busy_pct_by_core": machine,
        "probe_packets": got,
        "probe_expected": expected,
        "probe_seq_gaps_lost": lost,
        "probe_without_kernel_timestamp": without_kernel_ts,
        "rtp_timestamp_steps": timestamp_steps.iter().take(8).map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "iat_ms": {
            "n": iat_ms.len(),
            "mean": r3(iat_mean),
            "stdev": r3(iat_stdev),
            "p1": r3(pct(&sorted_iat, 1.0)),
            "p50": r3(pct(&sorted_iat, 50.0)),
            "p99": r3(pct(&sorted_iat, 99.0)),
            "max": r3(sorted_iat.last().copied()),
            "share_gt_25ms": share(&|x| x > 25.0),
            "share_outside_19_21ms": share(&|x| !(19.0..=21.0).contains(&x)),
        },
        "rfc3550_jitter_ms_mean": r3(mean(&rfc_jitter)),
        "mixer_latency_ms": {
            "n": lats.len(),
            "bursts": send_stats.bursts.len(),
            "p50": r3(pct(&lats, 50.0)),
            "p99": r3(pct(&lats, 99.0)),
            "min": r3(lats.first().copied()),
            "max": r3(lats.last().copied()),
        },
        "mix_minus_check": mix_minus,
        "sender_late_us_p50": r1(pct(&late, 50.0)),
        "sender_late_us_p99": r1(pct(&late, 99.0)),
        "sender_late_us_max": r1(late.last().copied()),
        "sender_burst_us_p50": r1(pct(&burst_us, 50.0)),
        "sender_send_errors": send_stats.send_errors,
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
    let lat = &r["mixer_latency_ms"];
    println!();
    println!("== chamade plain-RTP load ==");
    println!(
        "scenario        {}: {} rooms x {} = {} participants, {} at {} Hz in {} Hz rooms",
        r["label"].as_str().unwrap_or(""),
        r["rooms"],
        r["per_room"],
        r["participants"],
        r["codec"].as_str().unwrap_or(""),
        r["rate"],
        r["room_rate"]
    );
    println!(
        "setup           {} s (join p50 {} ms); window {} s",
        f(&r["setup_s"]),
        f(&r["join_ms_p50"]),
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
    if let Some(busy) = r["server_cpu_busiest_threads"].as_object() {
        let mut busy: Vec<(&String, f64)> = busy
            .iter()
            .map(|(k, v)| (k, v.as_f64().unwrap_or(0.0)))
            .collect();
        busy.sort_by(|a, b| b.1.total_cmp(&a.1));
        let line: Vec<String> = busy.iter().map(|(k, v)| format!("{k} {v:.1} %")).collect();
        println!("  busiest       {}", line.join(", "));
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
    if r["participants"].as_u64().unwrap_or(0) > 0 {
        println!(
            "probe packets   {} received of {} expected; sequence gaps {}",
            r["probe_packets"], r["probe_expected"], r["probe_seq_gaps_lost"]
        );
        println!(
            "inter-arrival   p1 {} p50 {} p99 {} max {} ms; over 25 ms {}; outside 19-21 ms {}; RFC 3550 jitter {} ms",
            f(&iat["p1"]),
            f(&iat["p50"]),
            f(&iat["p99"]),
            f(&iat["max"]),
            f(&iat["share_gt_25ms"]),
            f(&iat["share_outside_19_21ms"]),
            f(&r["rfc3550_jitter_ms_mean"])
        );
        println!(
            "latency         mouth-to-ear through the mixer p50 {} p99 {} (min {} max {}) ms; {} of {} bursts seen",
            f(&lat["p50"]),
            f(&lat["p99"]),
            f(&lat["min"]),
            f(&lat["max"]),
            lat["n"],
            lat["bursts"]
        );
        if r["mix_minus_check"].is_object() {
            let m = &r["mix_minus_check"];
            println!(
                "mix-minus       burst sender's own max peak {}, listener's {}; hears itself: {}",
                m["burst_sender_p0_max_peak"], m["listener_p1_max_peak"], m["p0_hears_own_burst"]
            );
        }
        println!(
            "driver          CPU {} % of one core; send lateness p50 {} p99 {} max {} µs; one tick's sends {} µs",
            f(&r["driver_cpu_pct"]),
            f(&r["sender_late_us_p50"]),
            f(&r["sender_late_us_p99"]),
            f(&r["sender_late_us_max"]),
            f(&r["sender_burst_us_p50"])
        );
    }
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
