//! People in a real browser: headless Chromium opens the call's `join_url`, its fake
//! microphone plays a WAV, and the page's received audio is captured with WebAudio. The
//! agent is on the call WebSocket. Each test runs inside a loopback-only network namespace
//! (see `support::browser`).

use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use chamade_media::SampleRate;
use chamade_media::analysis::{samples_from_le, samples_to_le, sine, tone_amplitude};
use serde_json::{Value, json};
use tungstenite::Message;

use crate::support::browser::{BrowserRun, artifacts, in_loopback_namespace, received, speech};
use crate::support::sip_peers::{best_match, write_wav};
use crate::support::ws::{self, Ws};
use crate::support::{Backend, TempDir, TestServer, json as body};

const RATE: u32 = 48_000;

fn web_call(s: &TestServer, key: &str) -> (String, String) {
    let call = body(s.post("/api/call", key, &json!({"platform": "web"})), 200);
    (
        call["call_id"].as_str().expect("id").to_string(),
        call["join_url"].as_str().expect("join_url").to_string(),
    )
}

fn agent(s: &TestServer, id: &str, key: &str) -> Ws {
    let mut ws = ws::connect(s, id, key);
    ws::send_json(
        &mut ws,
        json!({"type": "audio_config", "sample_rate": RATE, "receive": true}),
    );
    ws
}

/// What the agent's socket delivered while a test ran.
#[derive(Default)]
struct Heard {
    audio: Vec<i16>,
    events: Vec<Value>,
}

impl Heard {
    fn saw(&self, pred: impl Fn(&Value) -> bool) -> bool {
        self.events.iter().any(pred)
    }
}

/// Reads the agent's socket until `done` says so (or 60 s pass), sending `speak` once a
/// browser has joined.
fn listen(
    mut ws: Ws,
    speak: Vec<i16>,
    done: impl Fn(&Heard) -> bool + Send + 'static,
) -> thread::JoinHandle<Heard> {
    thread::spawn(move || {
        let mut heard = Heard::default();
        let mut spoken = false;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(&heard) && Instant::now() < deadline {
            match ws.read() {
                Ok(Message::Binary(b)) => heard.audio.extend(samples_from_le(&b)),
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).expect("event");
                    let browser_in = v["type"] == "participant_joined" && v["kind"] == "browser";
                    heard.events.push(v);
                    if browser_in && !spoken {
                        // A second of room tone first: the browser's playout is settling.
                        let mut pcm = vec![0i16; RATE as usize];
                        pcm.extend_from_slice(&speak);
                        // In half-second frames: a frame may carry at most 1 MB.
                        for chunk in pcm.chunks(RATE as usize / 2) {
                            ws.send(Message::binary(samples_to_le(chunk)))
                                .expect("speak");
                        }
                        spoken = true;
                    }
                }
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        heard
    })
}

#[test]
fn a_browser_and_the_agent_hear_each_other_and_the_page_shows_the_call() {
    if !in_loopback_namespace(
        "browser::a_browser_and_the_agent_hear_each_other_and_the_page_shows_the_call",
    ) {
        return;
    }
    let dir = TempDir::new();
    let s = TestServer::start(Backend::Sqlite);
    let (_, key) = s.signup("browser@example.org");
    let (id, url) = web_call(&s, &key);

    // The browser says one phrase, the agent another.
    let said_by_browser = speech(
        "please call me back tomorrow morning at nine",
        RATE,
        &dir.0,
        "browser",
    );
    let said_by_agent = speech(
        "the quick brown fox jumps over the lazy dog",
        RATE,
        &dir.0,
        "agent",
    );
    // The fake microphone starts at getUserMedia, before the media path is up: a lead-in.
    let mut mic = vec![0i16; 3 * RATE as usize / 2];
    mic.extend_from_slice(&said_by_browser);
    mic.extend(std::iter::repeat_n(0, RATE as usize));
    let mic_path = dir.0.join("mic.wav");
    write_wav(&mic_path, RATE, &mic);

    let ws = agent(&s, &id, &key);
    let agent_side = listen(ws, said_by_agent.clone(), |h| {
        h.saw(|v| v["type"] == "participant_left" && v["name"] == "Alice")
    });
    let shot = artifacts().join("browser-call.png");
    let _ = std::fs::remove_file(&shot);
    let report = BrowserRun {
        url: &url,
        mic: &mic_path,
        out: &dir.0.join("alice"),
        name: "Alice",
        seconds: 9,
        extra: vec![
            "--screenshot".into(),
            shot.display().to_string(),
            "--leave-after".into(),
            "0".into(),
            "--wait-ended".into(),
            "5".into(),
            "--chat".into(),
            "hello from the page".into(),
        ],
    }
    .start()
    .finish();
    let heard = agent_side.join().expect("agent");

    // The page listed the people in the call while it ran, and its screenshot was kept.
    let people: Vec<(String, String)> = report["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or("").into(),
                p["kind"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(
        people.contains(&("Alice".into(), "browser".into())),
        "{people:?}"
    );
    assert!(
        people.contains(&("AI Agent".into(), "agent".into())),
        "{people:?}"
    );
    let png = std::fs::metadata(&shot).expect("screenshot kept");
    assert!(png.len() > 10_000, "a real screenshot: {} bytes", png.len());
    assert_eq!(report["stats"]["codec"], "audio/opus");
    assert_eq!(report["delete_status"], 200, "Leave sent the WHIP DELETE");
    assert_eq!(report["state"], "left");

    // The agent heard the browser's speech (through Chromium's capture, Opus both ways and
    // the mixer), and saw it join and leave with its name.
    assert!(heard.saw(|v| v["type"] == "participant_joined" && v["name"] == "Alice"));
    assert!(
        heard.saw(|v| v["type"] == "call_chat"
            && v["sender"] == "Alice"
            && v["text"] == "hello from the page"),
        "the page's chat reaches the agent"
    );
    assert!(heard.saw(|v| v["type"] == "participant_left" && v["name"] == "Alice"));
    if let Ok(dump) = std::env::var("CHAMADE_TEST_DUMP") {
        write_wav(
            &Path::new(&dump).join("agent-heard.wav"),
            RATE,
            &heard.audio,
        );
        write_wav(
            &Path::new(&dump).join("browser-said.wav"),
            RATE,
            &said_by_browser,
        );
        write_wav(
            &Path::new(&dump).join("agent-said.wav"),
            RATE,
            &said_by_agent,
        );
        std::fs::copy(
            report["received_wav"].as_str().unwrap_or(""),
            Path::new(&dump).join("page-heard.wav"),
        )
        .ok();
    }
    let (corr, lag) = best_match(&said_by_browser, &heard.audio);
    println!("browser → agent: correlation {corr:.3} at lag {lag}");
    assert!(
        corr >= 0.8,
        "the agent hears the browser's speech: {corr:.3}"
    );

    // The page heard the agent's speech.
    let page = received(&report);
    let (corr, lag) = best_match(&said_by_agent, &page);
    println!("agent → browser: correlation {corr:.3} at lag {lag}");
    assert!(corr >= 0.6, "the page hears the agent's speech: {corr:.3}");
    let (own, _) = best_match(&said_by_browser, &page);
    assert!(own < 0.3, "the page does not hear its own voice: {own:.3}");
}

/// The amplitude of `hz` in the loudest one-second stretch of `audio` (48 kHz).
fn loudest_second(audio: &[i16], hz: f64) -> f64 {
    // Whole seconds only: on a short tail the tones' spectra overlap, and another tone
    // would read as this one.
    let whole = audio.len() - audio.len() % RATE as usize;
    let seconds = if whole == 0 { audio } else { &audio[..whole] };
    seconds
        .chunks(RATE as usize)
        .map(|second| tone_amplitude(second, SampleRate::HZ_48000, hz))
        .fold(0.0, f64::max)
}

/// The agent's tone: no harmonic or intermodulation product of the browsers' 440 and 660 Hz
/// (880 = 2 × 440 and 2 × 660 − 440 would be).
const AGENT_HZ: f64 = 1250.0;

fn tone_wav(dir: &Path, name: &str, hz: f64) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.wav"));
    write_wav(
        &path,
        RATE,
        &sine(SampleRate::HZ_48000, hz, -12.0, 20 * RATE as usize),
    );
    path
}

#[test]
fn two_browsers_hear_each_other_and_the_agent_but_not_themselves() {
    if !in_loopback_namespace(
        "browser::two_browsers_hear_each_other_and_the_agent_but_not_themselves",
    ) {
        return;
    }
    let dir = TempDir::new();
    let s = TestServer::start(Backend::Sqlite);
    let (_, key) = s.signup("browsers@example.org");
    let (id, url) = web_call(&s, &key);
    let (a_mic, b_mic) = (tone_wav(&dir.0, "a", 440.0), tone_wav(&dir.0, "b", 660.0));

    let ws = agent(&s, &id, &key);
    let agent_tone = sine(SampleRate::HZ_48000, AGENT_HZ, -12.0, 25 * RATE as usize);
    let (bob_gone_tx, bob_gone) = mpsc::channel();
    let agent_side = listen(ws, agent_tone, move |h| {
        let gone = h.saw(|v| v["type"] == "participant_left" && v["name"] == "Bob");
        if gone {
            let _ = bob_gone_tx.send(());
        }
        gone
    });

    // Bob closes his tab when done; Carol stays until the agent hangs up.
    let bob = BrowserRun {
        url: &url,
        mic: &b_mic,
        out: &dir.0.join("bob"),
        name: "Bob",
        seconds: 6,
        extra: vec!["--close-after".into(), "0".into()],
    }
    .start();
    let carol = BrowserRun {
        url: &url,
        mic: &a_mic,
        out: &dir.0.join("carol"),
        name: "Carol",
        seconds: 6,
        extra: vec!["--wait-ended".into(), "30".into()],
    }
    .start();
    let bob = bob.finish();
    bob_gone
        .recv_timeout(Duration::from_secs(30))
        .expect("closing the tab takes Bob out of the call");
    let heard = agent_side.join().expect("agent");
    // The agent hangs up: Carol's page shows that the call ended.
    body(s.delete(&format!("/api/call/{id}"), &key), 200);
    let carol = carol.finish();
    assert_eq!(
        carol["ended"], true,
        "Carol's page saw the end: {}",
        carol["status"]
    );
    assert_eq!(carol["status"], "Call ended");

    // The loudest second of each tone: the peers joined at different moments, and on a
    // loaded machine Chromium's playout may have gaps, which an average would count.
    let level = |audio: &[i16], hz: f64| loudest_second(audio, hz);
    let (bob_audio, carol_audio) = (received(&bob), received(&carol));
    for (who, audio, own, other) in [
        ("Bob", &bob_audio, 660.0, 440.0),
        ("Carol", &carol_audio, 440.0, 660.0),
    ] {
        let (o, a, me) = (
            level(audio, other),
            level(audio, AGENT_HZ),
            level(audio, own),
        );
        println!("{who}: other {o:.4}, agent {a:.4}, own {me:.4}");
        assert!(o > 0.03, "{who} hears the other browser: {o:.4}");
        assert!(a > 0.03, "{who} hears the agent: {a:.4}");
        // Its own tone would come back at its full level (about 0.25); what is there is
        // Opus's coding noise of the two others, which a loaded machine raises.
        assert!(
            me < 0.025 && me < o / 3.0,
            "{who} does not hear itself: {me:.4}"
        );
    }
    let whole = |hz: f64| loudest_second(&heard.audio, hz);
    let (a440, a660, a_agent) = (whole(440.0), whole(660.0), whole(AGENT_HZ));
    println!("agent: 440 {a440:.4}, 660 {a660:.4}, own {a_agent:.4}");
    assert!(a440 > 0.03 && a660 > 0.03, "the agent hears both browsers");
    assert!(
        a_agent < 0.003,
        "the agent does not hear itself: {a_agent:.4}"
    );
}

#[test]
fn browser_mouth_to_agent_latency_is_measured_with_markers() {
    if !in_loopback_namespace("browser::browser_mouth_to_agent_latency_is_measured_with_markers") {
        return;
    }
    const MARKERS: usize = 10;
    let dir = TempDir::new();
    let s = TestServer::start(Backend::Sqlite);
    let (_, key) = s.signup("latency@example.org");
    let (id, url) = web_call(&s, &key);
    let mut ws = agent(&s, &id, &key);
    // The agent notes when each frame arrives (wall clock, as the page's markers are).
    let agent_side = thread::spawn(move || {
        let mut onsets: Vec<f64> = Vec::new();
        let mut quiet_samples = usize::MAX / 2;
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline && onsets.len() < MARKERS {
            let Ok(message) = ws.read() else { break };
            let Message::Binary(b) = message else {
                continue;
            };
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
            for sample in samples_from_le(&b) {
                if sample.unsigned_abs() > 3_000 {
                    if quiet_samples > RATE as usize / 2 {
                        onsets.push(now_ms);
                    }
                    quiet_samples = 0;
                } else {
                    quiet_samples += 1;
                }
            }
        }
        onsets
    });
    let mic = tone_wav(&dir.0, "unused", 440.0);
    let report = BrowserRun {
        url: &url,
        mic: &mic,
        out: &dir.0.join("markers"),
        name: "Marker",
        seconds: MARKERS as u32 + 2,
        extra: vec!["--markers".into(), MARKERS.to_string()],
    }
    .start()
    .finish();
    let sent: Vec<f64> = report["markers_epoch_ms"]
        .as_array()
        .expect("markers")
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert_eq!(sent.len(), MARKERS);
    let arrived = agent_side.join().expect("agent");
    // Each arrival belongs to the latest marker sent before it.
    let mut latencies: Vec<f64> = arrived
        .iter()
        .filter_map(|&a| sent.iter().rev().find(|&&m| m <= a).map(|&m| a - m))
        .collect();
    latencies.sort_by(f64::total_cmp);
    println!("browser mouth → agent socket, ms: {latencies:?}");
    assert!(
        latencies.len() >= MARKERS - 1,
        "the agent heard {} of {MARKERS} markers",
        latencies.len()
    );
    assert!(
        latencies.iter().all(|&l| (0.0..1000.0).contains(&l)),
        "a marker took a second or more: {latencies:?}"
    );
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let summary = json!({
        "markers_sent": MARKERS,
        "markers_heard": latencies.len(),
        "p50_ms": pick(0.5),
        "p99_ms": pick(0.99),
        "min_ms": latencies[0],
        "max_ms": latencies[latencies.len() - 1],
    });
    println!("browser mouth → agent socket: {summary}");
    std::fs::write(
        artifacts().join("browser-latency.json"),
        summary.to_string(),
    )
    .expect("artifact");
}
