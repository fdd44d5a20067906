//! Real browsers for tests: headless Chromium (Debian's) driven by playwright-core through
//! `tests/browser/join.mjs`, inside a private network namespace that has only loopback.
//!
//! Chromium gathers ICE candidates on the machine's real interfaces and never on loopback,
//! unless it is in a namespace where loopback is all there is. So a browser test re-runs
//! itself (its own test binary, that one test) under `unshare -n`, and everything it starts
//! there, the gateway included, sees only 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::sip_peers::read_wav;

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Set in the re-run test inside the namespace.
const INSIDE: &str = "CHAMADE_TEST_LOOPBACK_NETNS";

/// The repository's root (where `tests/browser` is).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What a browser test needs; the test command installs it all (scripts/test).
fn check_prerequisites() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let missing: Vec<String> = [
        (
            Path::new(&chromium).exists(),
            format!("{chromium} (apt: chromium)"),
        ),
        (which("node"), "node (apt: nodejs)".into()),
        (which("unshare"), "unshare (apt: util-linux)".into()),
        (which("ip"), "ip (apt: iproute2)".into()),
        (which("flite"), "flite (apt: flite)".into()),
        (which("sox"), "sox (apt: sox)".into()),
        (
            root()
                .join("tests/browser/node_modules/playwright-core")
                .exists(),
            "tests/browser/node_modules/playwright-core (npm install in tests/browser)".into(),
        ),
    ]
    .into_iter()
    .filter(|(ok, _)| !ok)
    .map(|(_, what)| what)
    .collect();
    assert!(
        missing.is_empty(),
        "browser tests need {}; scripts/test installs them",
        missing.join(", ")
    );
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True inside the loopback-only namespace: run the test body. Outside, re-runs the test
/// named `name` (its path in the test binary) in such a namespace, asserts that it passed
/// and returns false.
pub fn in_loopback_namespace(name: &str) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        return true;
    }
    check_prerequisites();
    // One browser test at a time: Chromium, its audio and the gateway on two cores are
    // already a full machine, and a starved fake microphone glitches.
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let exe = std::env::current_exe().expect("test binary");
    let script = "ip link set lo up && exec \"$@\"";
    let run = |flags: &[&str]| {
        Command::new("unshare")
            .args(flags)
            .args(["--", "sh", "-c", script, "sh"])
            .arg(&exe)
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(INSIDE, "1")
            .output()
            .expect("unshare")
    };
    // As root a plain network namespace; otherwise one inside a user namespace.
    let mut out = run(&["-n"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() && stderr.contains("unshare failed") {
        out = run(&["-r", "-n"]);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "the test failed inside its network namespace (see above)"
    );
    assert!(
        stdout.contains("1 passed"),
        "the test did not run inside the namespace: {stdout}"
    );
    false
}

/// Spoken `text` (flite), as samples at `rate` Hz.
pub fn speech(text: &str, rate: u32, dir: &Path, stem: &str) -> Vec<i16> {
    let raw = dir.join(format!("{stem}-flite.wav"));
    let out = dir.join(format!("{stem}-{rate}.wav"));
    let ok = Command::new("flite")
        .args(["-t", text, "-o"])
        .arg(&raw)
        .status()
        .expect("flite")
        .success();
    assert!(ok, "flite failed");
    let ok = Command::new("sox")
        .arg(&raw)
        .args(["-r", &rate.to_string(), "-c", "1", "-b", "16"])
        .arg(&out)
        .status()
        .expect("sox")
        .success();
    assert!(ok, "sox failed");
    read_wav(&out).1
}

/// Options of one browser run (see `tests/browser/join.mjs`).
pub struct BrowserRun<'a> {
    /// The call's `join_url`.
    pub url: &'a str,
    /// WAV the fake microphone plays.
    pub mic: &'a Path,
    /// Where the run writes `received.wav`.
    pub out: &'a Path,
    /// Display name.
    pub name: &'a str,
    /// Seconds recorded once connected.
    pub seconds: u32,
    /// Further flags (`--leave-after 0`, `--screenshot p`, …).
    pub extra: Vec<String>,
}

/// A browser run in progress.
pub struct Browser(std::process::Child);

impl BrowserRun<'_> {
    /// Starts Chromium on the join page.
    pub fn start(self) -> Browser {
        std::fs::create_dir_all(self.out).expect("out dir");
        let child = Command::new("node")
            .current_dir(root().join("tests/browser"))
            .arg("join.mjs")
            .args(["--url", self.url, "--name", self.name])
            .arg("--mic")
            .arg(self.mic)
            .arg("--out")
            .arg(self.out)
            .args(["--seconds", &self.seconds.to_string(), "--timeout", "90"])
            .args(&self.extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node join.mjs");
        Browser(child)
    }
}

impl Browser {
    /// Waits for the run's JSON report; panics when the run failed.
    pub fn finish(self) -> Value {
        let out = self.0.wait_with_output().expect("join.mjs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: Value = stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| {
                panic!(
                    "no report from join.mjs: {stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        assert!(
            out.status.success() && report["ok"] == true,
            "browser run failed: {report}"
        );
        report
    }
}

/// The audio a run received (48 kHz).
pub fn received(report: &Value) -> Vec<i16> {
    let path = report["received_wav"].as_str().expect("received_wav");
    let (rate, samples) = read_wav(Path::new(path));
    assert_eq!(rate, 48_000);
    samples
}

/// Where tests keep files worth looking at afterwards (screenshots).
pub fn artifacts() -> PathBuf {
    let dir = root().join("target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}
