//! Load driver for the agent WebSocket: M web calls, K agent sockets each, every socket
//! streaming real-time PCM at the 20 ms cadence and receiving its mix-minus.
//!
//! ```sh
//! cargo bench --bench load -- --url http://127.0.0.1:8080 --key chmd_… \
//!     --calls 500 --agents 2 --rate 48000 --seconds 60 [--server-pid PID]
//! ```
//!
//! Without `--url` (as under `cargo test --benches`) it prints its usage and exits 0.
//!
//! What it measures, per socket and merged over all of them:
//!
//! - **Bit-exact mode** (K = 2 and the agents' rate equals the room's, so nothing is
//!   resampled): the mix-minus a talking agent receives is the other agent's frame, sample
//!   for sample. Each sent frame carries a header in its first four samples (a magic value,
//!   the sender's index and a 32-bit frame counter) and a quiet 400 Hz tone after it. The
//!   receiver decodes which frame of which sender it got: frames lost (gaps in the other's
//!   counter), duplicated or reordered, silent, foreign (from another call) or corrupted
//!   (tone altered), silent frames between two of the other's frames (a tick at which its
//!   frame had not arrived), and the latency of every frame from the sender's write to the
//!   receiver's read (one process, one monotonic clock), also over the last 5 s alone.
//! - **Marker mode** (any other rate or K): the bytes change on the way, so every 50th frame
//!   of a sender is a loud 1 kHz burst (−0.9 dBFS) and the others a quiet tone (−40 dBFS).
//!   A received frame whose RMS rises above −20 dBFS (after one below) is matched to the
//!   latest burst any other agent of the call sent; the latency is the time between that
//!   burst's write and the frame's read. Its resolution is one frame: the burst is seen in
//!   the first received frame that holds enough of it, and the resamplers' delay (a few
//!   ms each way) moves where in that frame it falls. Senders of one call burst at distinct
//!   phases (1 s / K apart), so the match is right while the latency stays below 1 s / K.
//! - In both modes: frames sent and received, and the inter-arrival jitter of received
//!   binary frames, |gap − 20 ms|.
//!
//! Senders use `tokio::time::interval` at 20 ms with `MissedTickBehavior::Burst`: when the
//! driver falls behind, it sends the frames it owes back to back, so that every socket
//! sends exactly 50 frames a second of audio time and the server's playout is never starved
//! by the driver; how late the driver was is reported as "driver send lateness". Socket
//! start times are spread evenly over one 20 ms period, as independent agents would be.
//!
//! Server figures: with `--server-pid`, CPU (utime + stime from `/proc/PID/stat`) over the
//! streaming window and RSS (`VmRSS` sampled every second, and `VmHWM`); and the mixer
//! shards' counters from `GET /metrics` (deadline misses, ticks, skipped ticks, tick
//! duration), differenced over the window, or "n/a" when the server has no such endpoint.
//!
//! Traffic goes only to `--url`, which must be a loopback address; counts and times are
//! bounded, and a watchdog ends the process if the run overstays its bound.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

// Only the loopback guard and the clock rate are used here.
#[allow(dead_code)]
#[path = "common/procfs.rs"]
mod procfs;
use procfs::{check_loopback, clock_ticks};

const USAGE: &str = "usage: cargo bench --bench load -- --url http://127.0.0.1:PORT --key KEY \
[--calls M] [--agents K] [--rate HZ] [--seconds S] [--server-pid PID] [--warmup S] \
[--drain S] [--setup-concurrency N] [--threads N]";

const FRAME: Duration = Duration::from_millis(20);
const MAGIC: i16 = 0x2F5A;
const HEADER_SAMPLES: usize = 4;
/// Send times kept per socket, indexed by frame counter (20 s of frames).
const LOG_SLOTS: usize = 1_024;
/// Marker mode: one burst every this many frames per sender.
const BURST_EVERY: u32 = 50;
const TONE_AMPLITUDE: f64 = 1_000.0;
const QUIET_AMPLITUDE: f64 = 300.0;
const BURST_AMPLITUDE: f64 = 0.9 * 32_767.0;
/// RMS above which a received frame counts as a burst (−20 dBFS).
const BURST_THRESHOLD: f64 = 0.1 * 32_767.0;
/// The end of the window whose latency is also reported on its own.
const LAST_WINDOW: Duration = Duration::from_secs(5);
/// Jitter above which a socket counts as jittery.
const JITTER_BOUND_US: u64 = 5_000;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

const MAX_CALLS: usize = 5_000;
const MAX_AGENTS: usize = 64;
const MAX_SOCKETS: usize = 10_000;
const MAX_SECONDS: u64 = 600;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--url" || a.starts_with("--url=")) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let opts = match Opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let bound = opts.setup_timeout
        + Duration::from_secs(opts.seconds)
        + opts.drain
        + opts.warmup
        + Duration::from_secs(90);
    std::thread::spawn(move || {
        std::thread::sleep(bound);
        eprintln!("load: the run exceeded its time bound of {bound:?}; stopping");
        std::process::exit(3);
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("load: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::from(1)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Options

struct Opts {
    url: String,
    ws_base: String,
    key: String,
    calls: usize,
    agents: usize,
    rate: u32,
    seconds: u64,
    warmup: Duration,
    drain: Duration,
    server_pid: Option<u32>,
    setup_concurrency: usize,
    setup_timeout: Duration,
    threads: usize,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let mut kv: HashMap<String, String> = HashMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--bench" {
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
            "calls",
            "agents",
            "rate",
            "seconds",
            "server-pid",
            "warmup",
            "drain",
            "setup-concurrency",
            "setup-timeout",
            "threads",
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
        let url = kv.get("url").ok_or("--url is required")?.clone();
        let url = url.trim_end_matches('/').to_string();
        let ws_base = loopback_ws_base(&url)?;
        let key = kv.get("key").ok_or("--key is required")?.clone();
        let calls: usize = num(&kv, "calls", 10)?;
        let agents: usize = num(&kv, "agents", 2)?;
        let rate: u32 = num(&kv, "rate", 48_000)?;
        let seconds: u64 = num(&kv, "seconds", 30)?;
        let warmup: f64 = num(&kv, "warmup", 2.0)?;
        let drain: f64 = num(&kv, "drain", 1.0)?;
        let setup_timeout: u64 = num(&kv, "setup-timeout", 120)?;
        let threads_default = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads: usize = num(&kv, "threads", threads_default)?;
        let setup_concurrency: usize = num(&kv, "setup-concurrency", 16)?;
        let server_pid = kv
            .get("server-pid")
            .map(|v| v.parse::<u32>().map_err(|_| format!("--server-pid: {v}")))
            .transpose()?;
        if !(1..=MAX_CALLS).contains(&calls) {
            return Err(format!("--calls must be 1..={MAX_CALLS}"));
        }
        if !(1..=MAX_AGENTS).contains(&agents) {
            return Err(format!("--agents must be 1..={MAX_AGENTS}"));
        }
        if calls * agents > MAX_SOCKETS {
            return Err(format!("at most {MAX_SOCKETS} sockets"));
        }
        if !(8_000..=48_000).contains(&rate) || !rate.is_multiple_of(50) {
            return Err("--rate must be 8000..=48000 Hz and a multiple of 50".into());
        }
        if !(1..=MAX_SECONDS).contains(&seconds) {
            return Err(format!("--seconds must be 1..={MAX_SECONDS}"));
        }
        if !(0.0..=30.0).contains(&warmup) || warmup >= seconds as f64 {
            return Err("--warmup must be 0..=30 s and shorter than --seconds".into());
        }
        if !(0.1..=10.0).contains(&drain) {
            return Err("--drain must be 0.1..=10 s".into());
        }
        if !(1..=600).contains(&setup_timeout) {
            return Err("--setup-timeout must be 1..=600 s".into());
        }
        if !(1..=64).contains(&threads) || !(1..=256).contains(&setup_concurrency) {
            return Err("--threads must be 1..=64 and --setup-concurrency 1..=256".into());
        }
        Ok(Opts {
            url,
            ws_base,
            key,
            calls,
            agents,
            rate,
            seconds,
            warmup: Duration::from_secs_f64(warmup),
            drain: Duration::from_secs_f64(drain),
            server_pid,
            setup_concurrency,
            setup_timeout: Duration::from_secs(setup_timeout),
            threads,
        })
    }

    fn sockets(&self) -> usize {
        self.calls * self.agents
    }
}

/// `ws://host:port` for an `http://` URL whose host is a loopback address; refuses others.
fn loopback_ws_base(url: &str) -> Result<String, String> {
    check_loopback(url)?;
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("--url {url}: {e}"))?;
    let host = parsed.host_str().ok_or("--url has no host")?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    Ok(format!("ws://{host}:{port}"))
}

// ---------------------------------------------------------------------------------------
// Signals

/// Which way frames are matched.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    BitExact,
    Marker,
}

/// The frames one socket sends, prepared once.
struct Signal {
    frame_samples: usize,
    /// Bit-exact mode: the tone after the header, as bytes.
    body: Vec<u8>,
    /// Marker mode: a quiet frame and a burst frame, as bytes.
    quiet: Vec<u8>,
    burst: Vec<u8>,
}

impl Signal {
    fn new(rate: u32) -> Signal {
        let n = rate as usize / 50;
        let tone = |freq: f64, amp: f64| -> Vec<i16> {
            (0..n)
                .map(|i| {
                    let t = i as f64 / f64::from(rate);
                    (amp * (2.0 * std::f64::consts::PI * freq * t).sin()).round() as i16
                })
                .collect()
        };
        let to_bytes = |s: &[i16]| -> Vec<u8> { s.iter().flat_map(|v| v.to_le_bytes()).collect() };
        let body = tone(400.0, TONE_AMPLITUDE);
        Signal {
            frame_samples: n,
            body: to_bytes(&body[HEADER_SAMPLES..]),
            quiet: to_bytes(&tone(400.0, QUIET_AMPLITUDE)),
            burst: to_bytes(&tone(1_000.0, BURST_AMPLITUDE)),
        }
    }

    fn frame_bytes(&self) -> usize {
        self.frame_samples * 2
    }

    fn bit_exact(&self, sender: u16, seq: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.frame_bytes());
        for s in [
            MAGIC,
            sender as i16,
            (seq & 0xFFFF) as u16 as i16,
            (seq >> 16) as u16 as i16,
        ] {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out.extend_from_slice(&self.body);
        out
    }
}

fn sample_at(bytes: &[u8], i: usize) -> i16 {
    i16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]])
}

fn rms(bytes: &[u8]) -> f64 {
    let n = bytes.len() / 2;
    if n == 0 {
        return 0.0;
    }
    let sum: f64 = bytes
        .chunks_exact(2)
        .map(|c| {
            let v = f64::from(i16::from_le_bytes([c[0], c[1]]));
            v * v
        })
        .sum();
    (sum / n as f64).sqrt()
}

// ---------------------------------------------------------------------------------------
// Histogram: log-linear, 64 sub-buckets per power of two (relative error under 1.6 %).

#[derive(Clone)]
struct Hist {
    counts: Vec<u64>,
    n: u64,
    max: u64,
}

impl Hist {
    const LINEAR: u64 = 128;
    const SUB: u64 = 64;

    fn new() -> Hist {
        Hist {
            counts: vec![0; (Self::LINEAR + 58 * Self::SUB) as usize],
            n: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < Self::LINEAR {
            return v as usize;
        }
        let msb = 63 - u64::from(v.leading_zeros());
        let e = msb - 6;
        (Self::LINEAR + (e - 1) * Self::SUB + ((v >> e) - Self::SUB)) as usize
    }

    /// Midpoint of bucket `i`.
    fn value(i: usize) -> u64 {
        let i = i as u64;
        if i < Self::LINEAR {
            return i;
        }
        let j = i - Self::LINEAR;
        let e = j / Self::SUB + 1;
        let m = j % Self::SUB + Self::SUB;
        (m << e) + (1 << e) / 2
    }

    fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.n += 1;
        self.max = self.max.max(v);
    }

    fn merge(&mut self, other: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.n += other.n;
        self.max = self.max.max(other.max);
    }

    /// Share of samples above `bound` (to the bucket).
    fn share_above(&self, bound: u64) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        let above: u64 = self.counts[Self::index(bound) + 1..].iter().sum();
        above as f64 / self.n as f64
    }

    fn quantile(&self, q: f64) -> Option<u64> {
        if self.n == 0 {
            return None;
        }
        let want = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut cum = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cum += c;
            if cum >= want {
                return Some(Self::value(i).min(self.max));
            }
        }
        Some(self.max)
    }

    /// p50 / p99 / max in milliseconds (values are µs).
    fn summary(&self) -> Option<(f64, f64, f64)> {
        Some((
            self.quantile(0.5)? as f64 / 1e3,
            self.quantile(0.99)? as f64 / 1e3,
            self.max as f64 / 1e3,
        ))
    }

    fn json(&self) -> Value {
        match self.summary() {
            Some((p50, p99, max)) => {
                json!({"n": self.n, "p50_ms": p50, "p99_ms": p99, "max_ms": max})
            }
            None => Value::Null,
        }
    }

    fn line(&self) -> String {
        match self.summary() {
            Some((p50, p99, max)) => format!(
                "p50 {p50:.2} ms   p99 {p99:.2} ms   max {max:.2} ms   (n = {})",
                self.n
            ),
            None => "n/a (no samples)".into(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// What sockets share with the other sockets of their call

/// One socket's sending side, readable by its peers.
struct Shared {
    /// `(seq & 0xFF_FFFF) << 40 | nanos since the start`, at slot `seq % LOG_SLOTS`.
    log: Box<[AtomicU64]>,
    /// Nanos since the start at which the last burst was written, plus one (0: none yet).
    last_burst: AtomicU64,
    bursts: AtomicU64,
    sent: AtomicU64,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            log: (0..LOG_SLOTS).map(|_| AtomicU64::new(u64::MAX)).collect(),
            last_burst: AtomicU64::new(0),
            bursts: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        }
    }

    fn note_sent(&self, seq: u32, at_ns: u64) {
        let tag = (u64::from(seq) & 0xFF_FFFF) << 40 | (at_ns & ((1 << 40) - 1));
        self.log[seq as usize % LOG_SLOTS].store(tag, Ordering::Relaxed);
    }

    fn sent_at(&self, seq: u32) -> Option<u64> {
        let tag = self.log[seq as usize % LOG_SLOTS].load(Ordering::Relaxed);
        (tag != u64::MAX && tag >> 40 == u64::from(seq) & 0xFF_FFFF)
            .then_some(tag & ((1 << 40) - 1))
    }
}

/// Per-socket results.
#[derive(Clone)]
struct SocketStats {
    sent: u64,
    received: u64,
    decoded: u64,
    lost: u64,
    dup_or_reordered: u64,
    silent: u64,
    underruns: u64,
    pending_silent: u64,
    unrecognised: u64,
    foreign: u64,
    corrupted: u64,
    wrong_size: u64,
    undelivered_at_stop: u64,
    latency_unmatched: u64,
    bursts_detected: u64,
    peer_bursts: u64,
    closed_by_server: bool,
    error: Option<String>,
    errors: BTreeMap<String, u64>,
    latency: Hist,
    latency_last: Hist,
    jitter: Hist,
    max_gap_us: u64,
    lateness: Hist,
}

impl SocketStats {
    fn new() -> SocketStats {
        SocketStats {
            sent: 0,
            received: 0,
            decoded: 0,
            lost: 0,
            dup_or_reordered: 0,
            silent: 0,
            underruns: 0,
            pending_silent: 0,
            unrecognised: 0,
            foreign: 0,
            corrupted: 0,
            wrong_size: 0,
            undelivered_at_stop: 0,
            latency_unmatched: 0,
            bursts_detected: 0,
            peer_bursts: 0,
            closed_by_server: false,
            error: None,
            errors: BTreeMap::new(),
            latency: Hist::new(),
            latency_last: Hist::new(),
            jitter: Hist::new(),
            max_gap_us: 0,
            lateness: Hist::new(),
        }
    }
}

/// Everything a socket task needs.
struct Seat {
    call_index: usize,
    agent: usize,
    global: usize,
    call_id: String,
    peers: Arc<Vec<Arc<Shared>>>,
    signal: Arc<Signal>,
    ws_url: String,
    key: Arc<str>,
    rate: u32,
    agents: usize,
    offset: Duration,
    warmup: Duration,
    seconds: Duration,
    drain: Duration,
}

/// Told to every socket once all are ready: the common start, or `None` to give up.
type Start = watch::Receiver<Option<Option<Instant>>>;

/// Connects, declares the rate, waits for the start, then streams and receives.
async fn socket_task(
    seat: Seat,
    connect_gate: Arc<Semaphore>,
    ready: mpsc::Sender<Result<(usize, u32), String>>,
    mut start: Start,
) -> SocketStats {
    let mut st = SocketStats::new();
    let permit = connect_gate.acquire_owned().await;
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, connect(&seat)).await;
    drop(permit);
    let (mut ws, native) = match connected {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            st.error = Some(e.clone());
            let _ = ready.send(Err(e)).await;
            return st;
        }
        Err(_) => {
            let e = "connect and audio_config timed out".to_string();
            st.error = Some(e.clone());
            let _ = ready.send(Err(e)).await;
            return st;
        }
    };
    let _ = ready.send(Ok((seat.global, native))).await;
    drop(ready);

    // Until the start: read (and drop) whatever comes, so nothing backs up.
    let t0 = loop {
        if let Some(v) = *start.borrow_and_update() {
            break v;
        }
        tokio::select! {
            changed = start.changed() => if changed.is_err() { break None },
            msg = ws.next() => match msg {
                Some(Ok(Message::Close(_))) | None => {
                    st.closed_by_server = true;
                    return st;
                }
                Some(Err(e)) => {
                    st.error = Some(e.to_string());
                    return st;
                }
                _ => {}
            },
        }
    };
    let Some(t0) = t0 else {
        let _ = ws.close(None).await;
        return st;
    };

    let mode = if seat.agents == 2 && native == seat.rate {
        Mode::BitExact
    } else {
        Mode::Marker
    };
    let me = &seat.peers[seat.agent];
    let ns = |t: Instant| t.saturating_duration_since(t0).as_nanos() as u64;
    let send_start = t0 + seat.offset;
    let send_stop = send_start + seat.seconds;
    let stats_from = t0 + seat.warmup;
    // Frames written in the last 5 s of the window, to see whether latency grew.
    let last_from = ns(t0 + seat.seconds.saturating_sub(LAST_WINDOW).max(seat.warmup));
    let end_at = t0 + seat.seconds + FRAME + seat.drain;
    let burst_phase = (seat.agent as u32 * BURST_EVERY / seat.agents as u32) % BURST_EVERY;
    let mut next_expected = vec![0u32; seat.agents];
    let mut seq: u32 = 0;
    let mut sending = true;
    let mut last_arrival: Option<Instant> = None;
    let mut was_loud = false;
    let frame_bytes = seat.signal.frame_bytes();
    let first_peer = seat.call_index * seat.agents;

    let mut ticker = tokio::time::interval_at(send_start.into(), FRAME);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let end = tokio::time::sleep_until(end_at.into());
    tokio::pin!(end);

    loop {
        tokio::select! {
            _ = &mut end => break,
            scheduled = ticker.tick(), if sending => {
                let scheduled = scheduled.into_std();
                if scheduled >= send_stop {
                    sending = false;
                    continue;
                }
                let now = Instant::now();
                if scheduled >= stats_from {
                    st.lateness.record(now.saturating_duration_since(scheduled).as_micros() as u64);
                }
                let frame = match mode {
                    Mode::BitExact => seat.signal.bit_exact(seat.global as u16, seq),
                    Mode::Marker if seq % BURST_EVERY == burst_phase => {
                        me.last_burst.store(ns(now) + 1, Ordering::Relaxed);
                        me.bursts.fetch_add(1, Ordering::Relaxed);
                        seat.signal.burst.clone()
                    }
                    Mode::Marker => seat.signal.quiet.clone(),
                };
                me.note_sent(seq, ns(now));
                if let Err(e) = ws.send(Message::binary(frame)).await {
                    st.error = Some(format!("send: {e}"));
                    break;
                }
                seq += 1;
                st.sent += 1;
                me.sent.store(st.sent, Ordering::Relaxed);
            }
            msg = ws.next() => {
                let now = Instant::now();
                let bytes = match msg {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Text(t))) => {
                        if let Ok(v) = serde_json::from_str::<Value>(&t)
                            && v["type"] == "call_error"
                        {
                            let code = v["code"].as_str().unwrap_or("?").to_string();
                            *st.errors.entry(code).or_default() += 1;
                        }
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None => {
                        st.closed_by_server = true;
                        break;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        st.error = Some(format!("receive: {e}"));
                        break;
                    }
                };
                if now < t0 {
                    continue;
                }
                st.received += 1;
                let measured = now >= stats_from;
                if let Some(prev) = last_arrival.replace(now)
                    && measured
                {
                    let gap = now.saturating_duration_since(prev).as_micros() as u64;
                    st.jitter.record(gap.abs_diff(FRAME.as_micros() as u64));
                    st.max_gap_us = st.max_gap_us.max(gap);
                }
                if bytes.len() != frame_bytes {
                    st.wrong_size += 1;
                    continue;
                }
                match mode {
                    Mode::BitExact => {
                        if sample_at(&bytes, 0) != MAGIC {
                            if bytes.iter().all(|&b| b == 0) {
                                st.silent += 1;
                                if st.decoded > 0 {
                                    st.pending_silent += 1;
                                }
                            } else {
                                st.unrecognised += 1;
                            }
                            continue;
                        }
                        let sender = sample_at(&bytes, 1) as u16 as usize;
                        let seq_in = u32::from(sample_at(&bytes, 2) as u16)
                            | u32::from(sample_at(&bytes, 3) as u16) << 16;
                        let Some(peer) = sender
                            .checked_sub(first_peer)
                            .filter(|&p| p < seat.agents && p != seat.agent)
                        else {
                            st.foreign += 1;
                            continue;
                        };
                        if bytes[HEADER_SAMPLES * 2..] != seat.signal.body[..] {
                            st.corrupted += 1;
                        }
                        st.decoded += 1;
                        st.underruns += std::mem::take(&mut st.pending_silent);
                        let expected = next_expected[peer];
                        if seq_in >= expected {
                            st.lost += u64::from(seq_in - expected);
                            next_expected[peer] = seq_in + 1;
                        } else {
                            st.dup_or_reordered += 1;
                        }
                        if measured {
                            match seat.peers[peer].sent_at(seq_in) {
                                Some(at) => {
                                    let us = ns(now).saturating_sub(at) / 1_000;
                                    st.latency.record(us);
                                    if at >= last_from {
                                        st.latency_last.record(us);
                                    }
                                }
                                None => st.latency_unmatched += 1,
                            }
                        }
                    }
                    Mode::Marker => {
                        let loud = rms(&bytes) > BURST_THRESHOLD;
                        if loud && !was_loud {
                            st.bursts_detected += 1;
                            let now_ns = ns(now);
                            let latest = seat
                                .peers
                                .iter()
                                .enumerate()
                                .filter(|(i, _)| *i != seat.agent)
                                .map(|(_, p)| p.last_burst.load(Ordering::Relaxed))
                                .filter_map(|b| b.checked_sub(1))
                                .filter(|&at| at <= now_ns)
                                .max();
                            match latest {
                                Some(at) if measured => {
                                    let us = (now_ns - at) / 1_000;
                                    st.latency.record(us);
                                    if at >= last_from {
                                        st.latency_last.record(us);
                                    }
                                }
                                Some(_) => {}
                                None => st.latency_unmatched += 1,
                            }
                        }
                        was_loud = loud;
                    }
                }
            }
        }
    }
    for (i, peer) in seat.peers.iter().enumerate() {
        if i == seat.agent {
            continue;
        }
        st.peer_bursts += peer.bursts.load(Ordering::Relaxed);
        if mode == Mode::BitExact {
            let sent = peer.sent.load(Ordering::Relaxed);
            st.undelivered_at_stop += sent.saturating_sub(u64::from(next_expected[i]));
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    st
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the socket and declares the rate; returns it with the room's native rate.
async fn connect(seat: &Seat) -> Result<(Ws, u32), String> {
    // The key travels in the query string, as the protocol allows.
    let url = format!("{}/api/call/{}/stream", seat.ws_url, seat.call_id);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
        format!("{url}?api_key={}", seat.key),
        Some(WebSocketConfig::default()),
        true,
    )
    .await
    .map_err(|e| format!("connect {url}: {e}"))?;
    let config = json!({"type": "audio_config", "sample_rate": seat.rate, "receive": true});
    ws.send(Message::text(config.to_string()))
        .await
        .map_err(|e| format!("send audio_config: {e}"))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                match v["type"].as_str() {
                    Some("audio_config") => {
                        if v["sample_rate"].as_u64() != Some(u64::from(seat.rate)) {
                            return Err(format!("audio_config answered {v}"));
                        }
                        let native = v["native_sample_rate"].as_u64().unwrap_or(0) as u32;
                        return Ok((ws, native));
                    }
                    Some("call_error") => return Err(format!("audio_config refused: {v}")),
                    _ => {}
                }
            }
            Some(Ok(Message::Close(c))) => return Err(format!("closed by the server: {c:?}")),
            None => return Err("closed by the server".into()),
            Some(Err(e)) => return Err(format!("read: {e}")),
            Some(Ok(_)) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Server-side figures

#[derive(Clone, Copy, Debug)]
struct ProcSample {
    cpu_ticks: u64,
    rss_kib: u64,
    hwm_kib: u64,
    at: Instant,
}

fn proc_sample(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command name: field 3 (state) is index 0, utime (14) is 11, stime (15) 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        cpu_ticks: utime + stime,
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
        at: Instant::now(),
    })
}

fn cpu_percent(a: &ProcSample, b: &ProcSample, hz: f64) -> f64 {
    let secs = b.at.duration_since(a.at).as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    (b.cpu_ticks.saturating_sub(a.cpu_ticks)) as f64 / hz / secs * 100.0
}

type Metrics = HashMap<String, f64>;

async fn fetch_metrics(client: &reqwest::Client, url: &str) -> Result<Option<Metrics>, String> {
    let resp = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .map_err(|e| format!("GET /metrics: {e}"))?;
    if !resp.status().is_success() {
        return Ok(None);
    }
    let text = resp.text().await.map_err(|e| e.to_string())?;
    let mut m = Metrics::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some((series, value)) = line.rsplit_once(' ')
            && let Ok(v) = value.trim().parse::<f64>()
        {
            m.insert(series.trim().to_string(), v);
        }
    }
    Ok(Some(m))
}

/// Per-shard differences over the window.
fn shard_report(start: &Metrics, end: &Metrics) -> Vec<Value> {
    let prefix = "chamade_shard_ticks_total{shard=\"";
    let mut shards: Vec<String> = end
        .keys()
        .filter_map(|k| k.strip_prefix(prefix))
        .filter_map(|k| k.strip_suffix("\"}"))
        .map(str::to_string)
        .collect();
    shards.sort_by_key(|s| s.parse::<u64>().unwrap_or(u64::MAX));
    let delta = |name: &str, shard: &str| -> Option<u64> {
        let key = format!("{name}{{shard=\"{shard}\"}}");
        Some((end.get(&key)? - start.get(&key).copied().unwrap_or(0.0)).max(0.0) as u64)
    };
    let gauge = |name: &str, shard: &str| {
        end.get(&format!("{name}{{shard=\"{shard}\"}}"))
            .map(|v| *v as u64)
    };
    shards
        .iter()
        .map(|s| {
            // Tick-duration histogram over the window: the bucket holding p50 and p99.
            let bucket_prefix =
                format!("chamade_shard_tick_duration_us_bucket{{shard=\"{s}\",le=\"");
            let mut buckets: Vec<(f64, String, f64)> = end
                .iter()
                .filter_map(|(k, v)| {
                    let le = k.strip_prefix(&bucket_prefix)?.strip_suffix("\"}")?;
                    let bound = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().ok()?
                    };
                    Some((
                        bound,
                        le.to_string(),
                        v - start.get(k).copied().unwrap_or(0.0),
                    ))
                })
                .collect();
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let total = buckets.last().map_or(0.0, |b| b.2);
            let quantile = |q: f64| -> Value {
                if total <= 0.0 {
                    return Value::Null;
                }
                buckets
                    .iter()
                    .find(|b| b.2 >= q * total)
                    .map_or(Value::Null, |b| Value::String(format!("<{}", b.1)))
            };
            json!({
                "shard": s,
                "ticks": delta("chamade_shard_ticks_total", s),
                "deadline_misses": delta("chamade_shard_deadline_misses_total", s),
                "skipped_ticks": delta("chamade_shard_skipped_ticks_total", s),
                "tick_max_us": gauge("chamade_shard_tick_duration_max_us", s),
                "tick_p50_us": quantile(0.5),
                "tick_p99_us": quantile(0.99),
                "participants": gauge("chamade_shard_participants", s),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The run

async fn run(opts: Opts) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let pid = opts.server_pid.map(|p| p.to_string());
    if let Some(p) = &pid
        && proc_sample(p).is_none()
    {
        return Err(format!(
            "--server-pid {p}: no such process readable in /proc"
        ));
    }
    let hz = clock_ticks();
    let n = opts.sockets();
    println!(
        "chamade load: {} calls x {} agents = {n} sockets at {} Hz, {} s (warm-up {:.1} s), driver threads {}",
        opts.calls,
        opts.agents,
        opts.rate,
        opts.seconds,
        opts.warmup.as_secs_f64(),
        opts.threads
    );

    // 1. Calls.
    let setup_began = Instant::now();
    let created: Vec<Result<String, String>> = futures_util::stream::iter(0..opts.calls)
        .map(|_| create_call(&client, &opts))
        .buffered(opts.setup_concurrency)
        .collect()
        .await;
    let (call_ids, failures): (Vec<_>, Vec<_>) = created.into_iter().partition(Result::is_ok);
    let call_ids: Vec<String> = call_ids.into_iter().filter_map(Result::ok).collect();
    if let Some(Err(e)) = failures.first() {
        hang_up_all(&client, &opts, &call_ids).await;
        return Err(format!(
            "{} of {} calls could not be created; first error: {e}",
            failures.len(),
            opts.calls
        ));
    }
    let calls_took = setup_began.elapsed();

    // 2. Sockets: each task connects, declares its rate, then waits for the common start.
    let signal = Arc::new(Signal::new(opts.rate));
    let key: Arc<str> = opts.key.as_str().into();
    let gate = Arc::new(Semaphore::new(opts.setup_concurrency));
    let (ready_tx, mut ready_rx) = mpsc::channel(n.max(1));
    let (start_tx, start_rx) = watch::channel(None);
    let mut tasks = Vec::with_capacity(n);
    for (c, call_id) in call_ids.iter().enumerate() {
        let peers: Arc<Vec<Arc<Shared>>> =
            Arc::new((0..opts.agents).map(|_| Arc::new(Shared::new())).collect());
        for a in 0..opts.agents {
            let global = c * opts.agents + a;
            let seat = Seat {
                call_index: c,
                agent: a,
                global,
                call_id: call_id.clone(),
                peers: peers.clone(),
                signal: signal.clone(),
                ws_url: opts.ws_base.clone(),
                key: key.clone(),
                rate: opts.rate,
                agents: opts.agents,
                offset: FRAME * global as u32 / n as u32,
                warmup: opts.warmup,
                seconds: Duration::from_secs(opts.seconds),
                drain: opts.drain,
            };
            tasks.push(tokio::spawn(socket_task(
                seat,
                gate.clone(),
                ready_tx.clone(),
                start_rx.clone(),
            )));
        }
    }
    drop(ready_tx);
    let mut ready = 0usize;
    let mut failed: Vec<String> = Vec::new();
    let mut native = 0u32;
    let deadline = tokio::time::Instant::now() + opts.setup_timeout;
    while ready + failed.len() < n {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(Ok((_, r)))) => {
                ready += 1;
                native = r;
            }
            Ok(Some(Err(e))) => failed.push(e),
            Ok(None) => break,
            Err(_) => {
                failed.push(format!("setup timed out after {:?}", opts.setup_timeout));
                break;
            }
        }
    }
    let sockets_took = setup_began.elapsed() - calls_took;
    if !failed.is_empty() {
        let _ = start_tx.send(Some(None));
        for t in &tasks {
            t.abort();
        }
        hang_up_all(&client, &opts, &call_ids).await;
        return Err(format!(
            "{} of {n} sockets failed to set up; first error: {}",
            failed.len(),
            failed[0]
        ));
    }
    let mode = if opts.agents == 2 && native == opts.rate {
        Mode::BitExact
    } else {
        Mode::Marker
    };
    println!(
        "setup: {} calls in {:.1} s, {n} sockets ready in {:.1} s; room rate {native} Hz, mode {mode:?}",
        call_ids.len(),
        calls_took.as_secs_f64(),
        sockets_took.as_secs_f64()
    );

    // 3. Start, with the server's counters and CPU around the streaming window.
    let metrics_start = fetch_metrics(&client, &opts.url).await.unwrap_or(None);
    let t0 = Instant::now() + Duration::from_millis(500);
    let _ = start_tx.send(Some(Some(t0)));
    tokio::time::sleep_until(t0.into()).await;
    let server_start = pid.as_deref().and_then(proc_sample);
    let driver_start = proc_sample("self");
    let sampler = pid.clone().map(|p| {
        let stop = t0 + Duration::from_secs(opts.seconds) + opts.drain;
        tokio::spawn(async move {
            let mut max = 0;
            let mut every = tokio::time::interval(Duration::from_secs(1));
            while Instant::now() < stop {
                every.tick().await;
                if let Some(s) = proc_sample(&p) {
                    max = max.max(s.rss_kib);
                }
            }
            max
        })
    });
    tokio::time::sleep_until((t0 + Duration::from_secs(opts.seconds)).into()).await;
    let server_end = pid.as_deref().and_then(proc_sample);
    let driver_end = proc_sample("self");
    let metrics_end = fetch_metrics(&client, &opts.url).await.unwrap_or(None);

    // 4. Collect, hang up.
    let mut results = Vec::with_capacity(n);
    let join_bound = Instant::now() + opts.drain + Duration::from_secs(15);
    for t in tasks {
        let left = join_bound.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, t).await {
            Ok(Ok(s)) => results.push(s),
            Ok(Err(e)) => {
                let mut s = SocketStats::new();
                s.error = Some(format!("task: {e}"));
                results.push(s);
            }
            Err(_) => {
                let mut s = SocketStats::new();
                s.error = Some("did not finish in time".into());
                results.push(s);
            }
        }
    }
    let rss_max = match sampler {
        Some(h) => h.await.ok(),
        None => None,
    };
    hang_up_all(&client, &opts, &call_ids).await;

    report(&Report {
        opts: &opts,
        mode,
        native,
        results: &results,
        server: server_start.zip(server_end),
        rss_max,
        driver: driver_start.zip(driver_end),
        hz,
        shards: metrics_start
            .as_ref()
            .zip(metrics_end.as_ref())
            .map(|(a, b)| shard_report(a, b)),
        setup_s: (calls_took + sockets_took).as_secs_f64(),
    });
    Ok(())
}

async fn create_call(client: &reqwest::Client, opts: &Opts) -> Result<String, String> {
    let resp = client
        .post(format!("{}/api/call", opts.url))
        .header("X-API-Key", &opts.key)
        .json(&json!({"platform": "web", "agent_name": "load"}))
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

async fn hang_up_all(client: &reqwest::Client, opts: &Opts, ids: &[String]) {
    let failed = futures_util::stream::iter(ids)
        .map(|id| async move {
            client
                .delete(format!("{}/api/call/{id}", opts.url))
                .header("X-API-Key", &opts.key)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .buffer_unordered(opts.setup_concurrency)
        .filter(|ok| std::future::ready(!ok))
        .count()
        .await;
    if failed > 0 {
        eprintln!("load: {failed} calls could not be hung up");
    }
}

// ---------------------------------------------------------------------------------------
// Report

struct Report<'a> {
    opts: &'a Opts,
    mode: Mode,
    native: u32,
    results: &'a [SocketStats],
    server: Option<(ProcSample, ProcSample)>,
    rss_max: Option<u64>,
    driver: Option<(ProcSample, ProcSample)>,
    hz: f64,
    shards: Option<Vec<Value>>,
    setup_s: f64,
}

fn report(r: &Report<'_>) {
    let rs = r.results;
    let sum = |f: fn(&SocketStats) -> u64| -> u64 { rs.iter().map(f).sum() };
    let min_max = |f: fn(&SocketStats) -> u64| -> (u64, u64) {
        (
            rs.iter().map(f).min().unwrap_or(0),
            rs.iter().map(f).max().unwrap_or(0),
        )
    };
    let mut latency = Hist::new();
    let mut latency_last = Hist::new();
    let mut jitter = Hist::new();
    let mut lateness = Hist::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for s in rs {
        latency.merge(&s.latency);
        latency_last.merge(&s.latency_last);
        jitter.merge(&s.jitter);
        lateness.merge(&s.lateness);
        for (k, v) in &s.errors {
            *errors.entry(k.clone()).or_default() += v;
        }
    }
    let sent = sum(|s| s.sent);
    let received = sum(|s| s.received);
    let decoded = sum(|s| s.decoded);
    let lost = sum(|s| s.lost);
    let socket_errors: Vec<&String> = rs.iter().filter_map(|s| s.error.as_ref()).collect();
    let closed = rs.iter().filter(|s| s.closed_by_server).count();
    let max_gap = rs.iter().map(|s| s.max_gap_us).max().unwrap_or(0);
    let jittery_sockets = rs
        .iter()
        .filter(|s| s.jitter.quantile(0.99).is_some_and(|v| v > JITTER_BOUND_US))
        .count();
    let jitter_over = jitter.share_above(JITTER_BOUND_US);
    let o = r.opts;
    let exact = r.mode == Mode::BitExact;

    println!();
    println!("== chamade agent WebSocket load ==");
    println!(
        "scenario        {} calls x {} agents = {} sockets; agents at {} Hz in {} Hz rooms; {} s streaming, first {:.1} s not in the latency/jitter figures",
        o.calls,
        o.agents,
        rs.len(),
        o.rate,
        r.native,
        o.seconds,
        o.warmup.as_secs_f64()
    );
    println!(
        "method          {}",
        if exact {
            "bit-exact: every received frame decoded (sender, frame counter)"
        } else {
            "marker: loud burst every 50th frame, detected by RMS (one-frame resolution)"
        }
    );
    println!("setup           {:.1} s", r.setup_s);
    let (smin, smax) = min_max(|s| s.sent);
    let (rmin, rmax) = min_max(|s| s.received);
    println!("frames sent     {sent}  (per socket {smin}..{smax})");
    println!("frames received {received}  (per socket {rmin}..{rmax})");
    if exact {
        let undelivered = sum(|s| s.undelivered_at_stop);
        println!(
            "  decoded       {decoded}; lost {lost} ({:.4} %); duplicated/reordered {}; undelivered at stop {undelivered}",
            if decoded + lost > 0 {
                lost as f64 * 100.0 / (decoded + lost) as f64
            } else {
                0.0
            },
            sum(|s| s.dup_or_reordered),
        );
        println!(
            "  other         silent {} (of which between two audio frames: {}); unrecognised {}; foreign {}; corrupted {}; wrong size {}",
            sum(|s| s.silent),
            sum(|s| s.underruns),
            sum(|s| s.unrecognised),
            sum(|s| s.foreign),
            sum(|s| s.corrupted),
            sum(|s| s.wrong_size)
        );
    } else {
        println!(
            "  markers       {} detected of {} sent by peers; wrong size {}",
            sum(|s| s.bursts_detected),
            sum(|s| s.peer_bursts),
            sum(|s| s.wrong_size)
        );
    }
    println!("latency         {}", latency.line());
    println!(
        "  last {} s     {}",
        LAST_WINDOW.as_secs(),
        latency_last.line()
    );
    println!("jitter          {}", jitter.line());
    println!(
        "  over 5 ms     {:.3} % of gaps; sockets whose own p99 is over 5 ms: {jittery_sockets}",
        jitter_over * 100.0
    );
    println!("longest gap     {:.2} ms", max_gap as f64 / 1e3);
    println!("send lateness   {}", lateness.line());
    if !errors.is_empty() {
        println!("call_error      {errors:?}");
    }
    if !socket_errors.is_empty() || closed > 0 {
        println!(
            "socket problems {} errors, {closed} closed by the server; first: {:?}",
            socket_errors.len(),
            socket_errors.first()
        );
    }
    let server_cpu = r.server.map(|(a, b)| cpu_percent(&a, &b, r.hz));
    let driver_cpu = r.driver.map(|(a, b)| cpu_percent(&a, &b, r.hz));
    match (r.server, server_cpu) {
        (Some((a, b)), Some(cpu)) => println!(
            "server          CPU {cpu:.1} % of one core; RSS {:.1} MiB at start, max {:.1} MiB, peak ever {:.1} MiB",
            a.rss_kib as f64 / 1024.0,
            r.rss_max.unwrap_or(b.rss_kib).max(b.rss_kib) as f64 / 1024.0,
            b.hwm_kib as f64 / 1024.0
        ),
        _ => println!("server          n/a (no --server-pid)"),
    }
    if let Some(cpu) = driver_cpu {
        println!("driver          CPU {cpu:.1} % of one core");
    }
    match &r.shards {
        Some(shards) => {
            for s in shards {
                println!(
                    "shard {}         ticks {}, deadline misses {}, skipped {}, tick p50 {} p99 {} µs, max {} µs (since start), participants {}",
                    s["shard"].as_str().unwrap_or("?"),
                    s["ticks"],
                    s["deadline_misses"],
                    s["skipped_ticks"],
                    s["tick_p50_us"].as_str().unwrap_or("n/a"),
                    s["tick_p99_us"].as_str().unwrap_or("n/a"),
                    s["tick_max_us"],
                    s["participants"]
                );
            }
        }
        None => println!("shards          n/a (no /metrics)"),
    }
    let misses: Option<u64> = r.shards.as_ref().map(|s| {
        s.iter()
            .map(|v| v["deadline_misses"].as_u64().unwrap_or(0))
            .sum()
    });
    let summary = json!({
        "calls": o.calls,
        "agents": o.agents,
        "sockets": rs.len(),
        "rate": o.rate,
        "room_rate": r.native,
        "seconds": o.seconds,
        "mode": if exact { "bit_exact" } else { "marker" },
        "sent": sent,
        "received": received,
        "decoded": if exact { json!(decoded) } else { Value::Null },
        "lost": if exact { json!(lost) } else { Value::Null },
        "dup_or_reordered": if exact { json!(sum(|s| s.dup_or_reordered)) } else { Value::Null },
        "silent": if exact { json!(sum(|s| s.silent)) } else { Value::Null },
        "foreign": if exact { json!(sum(|s| s.foreign)) } else { Value::Null },
        "corrupted": if exact { json!(sum(|s| s.corrupted)) } else { Value::Null },
        "undelivered_at_stop": if exact { json!(sum(|s| s.undelivered_at_stop)) } else { Value::Null },
        "markers_detected": if exact { Value::Null } else { json!(sum(|s| s.bursts_detected)) },
        "markers_sent": if exact { Value::Null } else { json!(sum(|s| s.peer_bursts)) },
        "latency": latency.json(),
        "latency_last_5s": latency_last.json(),
        "jitter": jitter.json(),
        "jitter_over_5ms_share": jitter_over,
        "jittery_sockets": jittery_sockets,
        "underruns": if exact { json!(sum(|s| s.underruns)) } else { Value::Null },
        "max_gap_ms": max_gap as f64 / 1e3,
        "send_lateness": lateness.json(),
        "call_errors": errors,
        "socket_errors": socket_errors.len(),
        "closed_by_server": closed,
        "server_cpu_pct": server_cpu,
        "server_rss_max_mib": r.rss_max.map(|k| k as f64 / 1024.0),
        "driver_cpu_pct": driver_cpu,
        "deadline_misses": misses,
        "shards": r.shards,
    });
    println!("JSON {summary}");
}
