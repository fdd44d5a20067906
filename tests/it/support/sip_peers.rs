//! Real third-party SIP peers for the tests: a kamailio trunk and baresip phones.
//!
//! [`Kamailio`] is a registrar and stateful proxy for the realm `trunk.test` (users
//! `gw/gwpass`, `alice/alicepass`, `bob/bobpass`; DIDs `+15550100`→gw, `+15550200`→alice,
//! `+15550300`→bob), from `tests/fixtures/kamailio/`. [`Baresip`] is a headless phone driven
//! over its `ctrl_tcp` interface: it plays a WAV file into calls and records what it receives.
//! Every instance has its own temp folder and its own ports on 127.0.0.1, so tests can run in
//! parallel; RTP flows directly between the endpoints, the trunk only carries the signalling.
//!
//! The programs come from the system packages (`scripts/install-deps kamailio baresip sox`).
//! A missing program fails the test: these tests never skip.
//!
//! Also here: WAV files ([`write_wav`], [`read_wav`]), a speech-like test signal
//! ([`test_signal`]) and the alignment of a recording with its source ([`best_match`]).

// Not every helper is used by every test module.
#![allow(dead_code)]

use std::collections::{BTreeSet, VecDeque};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::TempDir;

const INSTALL_HINT: &str = "run scripts/install-deps kamailio baresip sox";

/// How long [`Kamailio::start`] and [`Baresip::start`] wait for the program to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Baresip::command`] waits for the response to a command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Life limit given to baresip (`-t`), in seconds, in case a test leaks it.
const BARESIP_LIFETIME_SECS: u32 = 120;

/// The realm and domain of the trunk.
pub const REALM: &str = "trunk.test";

// ---------------------------------------------------------------------------------------------
// kamailio

/// How a [`Kamailio`] trunk authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KamailioOpts {
    /// Challenges carry `qop="auth"` (clients must answer with `nc` and `cnonce`).
    pub qop: bool,
    /// INVITE, MESSAGE, SUBSCRIBE and REFER get a 407 challenge, and the authentication user
    /// must equal the From user. Off: they are routed without authentication.
    pub invite_auth: bool,
}

impl Default for KamailioOpts {
    fn default() -> Self {
        KamailioOpts {
            qop: false,
            invite_auth: true,
        }
    }
}

/// A kamailio trunk (registrar + proxy) on its own port of 127.0.0.1, stopped on drop.
pub struct Kamailio {
    child: Option<Child>,
    port: u16,
    ctl: PathBuf,
    log_path: PathBuf,
    kamcmd: PathBuf,
    _dir: TempDir,
}

impl Kamailio {
    /// Starts a trunk and waits until it answers a SIP OPTIONS (at most 10 s).
    ///
    /// Panics when kamailio is not installed or does not come up, with the tail of its log.
    pub fn start(opts: KamailioOpts) -> Kamailio {
        let program = find_program("kamailio")
            .unwrap_or_else(|| panic!("kamailio is not installed; {INSTALL_HINT}"));
        let kamcmd = find_program("kamcmd").unwrap_or_else(|| {
            panic!("kamcmd (package kamailio) is not installed; {INSTALL_HINT}")
        });
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kamailio");
        // A port can be taken by another process between the check and kamailio's bind:
        // then kamailio exits at once and a new port is tried.
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = TempDir::new();
            let db = dir.0.join("db");
            copy_dir(&fixtures.join("db"), &db);
            let port = reserve_ports(1);
            let log_path = dir.0.join("kamailio.log");
            let log = File::create(&log_path).expect("create kamailio.log");
            let mut cmd = Command::new(&program);
            cmd.arg("-f")
                .arg(fixtures.join("kamailio.cfg"))
                // -DD: stay in the foreground (children are still forked); -E: log to stderr.
                .args(["-DD", "-E", "-m", "32", "-M", "8"])
                .arg("-Y")
                .arg(&dir.0)
                .arg("-w")
                .arg(&dir.0)
                .arg("-P")
                .arg(dir.0.join("kamailio.pid"))
                .arg("-A")
                .arg(format!("DBURL=\"text://{}\"", db.display()))
                .arg("-A")
                .arg(format!("SIP_PORT={port}"));
            if opts.qop {
                cmd.args(["-A", "WITH_QOP"]);
            }
            if !opts.invite_auth {
                cmd.args(["-A", "NO_INVITE_AUTH"]);
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
            let mut kamailio = Kamailio {
                child: Some(child),
                port,
                ctl: dir.0.join("kamailio_ctl"),
                log_path,
                kamcmd: kamcmd.clone(),
                _dir: dir,
            };
            match kamailio.wait_ready() {
                Ok(()) => return kamailio,
                Err(exited) => {
                    last_log = tail(&kamailio.log(), 40);
                    kamailio.stop();
                    if !(exited && last_log.contains("in use")) {
                        break;
                    }
                }
            }
        }
        panic!("kamailio did not start; its log ends with:\n{last_log}");
    }

    /// Waits for an answer to OPTIONS and for the control socket. `Err(true)` when kamailio
    /// exited, `Err(false)` on timeout.
    fn wait_ready(&mut self) -> Result<(), bool> {
        let probe = UdpSocket::bind(("127.0.0.1", 0)).expect("bind probe socket");
        probe
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("set timeout");
        let local = probe.local_addr().expect("probe address").port();
        let deadline = Instant::now() + START_TIMEOUT;
        let mut answered = false;
        let mut n = 0;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && child.try_wait().expect("try_wait").is_some()
            {
                return Err(true);
            }
            if !answered {
                n += 1;
                let options = format!(
                    "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n\
                     Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-probe-{n};rport\r\n\
                     Max-Forwards: 70\r\n\
                     From: <sip:probe@127.0.0.1>;tag=probe{n}\r\n\
                     To: <sip:127.0.0.1:{port}>\r\n\
                     Call-ID: probe-{n}-{local}@127.0.0.1\r\n\
                     CSeq: {n} OPTIONS\r\n\
                     Content-Length: 0\r\n\r\n",
                    port = self.port
                );
                let _ = probe.send_to(options.as_bytes(), ("127.0.0.1", self.port));
                let mut buf = [0u8; 2048];
                if let Ok((len, _)) = probe.recv_from(&mut buf) {
                    answered = buf[..len].starts_with(b"SIP/2.0 ");
                }
            } else if self.ctl.exists() {
                return Ok(());
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Err(false)
    }

    /// The SIP port (UDP and TCP) on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether `user` has a registered contact (an `AoR: user` line in `kamcmd ul.dump`).
    pub fn registered(&self, user: &str) -> bool {
        let out = Command::new(&self.kamcmd)
            .arg("-s")
            .arg(format!("unix:{}", self.ctl.display()))
            .arg("ul.dump")
            .stdin(Stdio::null())
            .output()
            .expect("run kamcmd");
        // kamcmd exits 0 whatever the result: read its output.
        let wanted = format!("AoR: {user}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == wanted)
    }

    /// Polls [`Kamailio::registered`] until it holds or `timeout` passes.
    pub fn wait_registered(&self, user: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.registered(user) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything kamailio logged so far (its stderr: one `REQ`/`REPLY` line per message, the
    /// challenges, `REGISTERED` and `routing` lines from the script).
    pub fn log(&self) -> String {
        read_lossy(&self.log_path)
    }

    /// Stops kamailio: SIGTERM, then SIGKILL (with its children) if it is still running
    /// after 5 s. Does nothing when already stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(5));
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// baresip

/// What a [`Baresip`] phone sends into its calls.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A WAV file: mono, 16-bit, at the codec's rate (8000 Hz for G.711). When it ends,
    /// baresip hangs up the call.
    Wav(PathBuf),
    /// This many seconds of silence (then baresip hangs up the call).
    Silence(u32),
}

/// How a [`Baresip`] phone answers incoming calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// At once.
    Auto,
    /// When told to, with [`Baresip::accept`].
    Manual,
}

/// The account and behaviour of a [`Baresip`] phone.
#[derive(Debug, Clone, PartialEq)]
pub struct BaresipOpts {
    /// SIP user in the realm `trunk.test`, also the authentication user.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Port of the trunk on 127.0.0.1, used as the outbound proxy for every request.
    pub proxy_port: u16,
    /// Audio sent into calls.
    pub source: Source,
    /// Answer mode for incoming calls.
    pub answer: Answer,
    /// Register with the trunk (every 600 s); off: no REGISTER is sent.
    pub register: bool,
}

impl BaresipOpts {
    /// `user` with the trunk's password convention (`<user>pass`), 60 s of silence,
    /// auto-answer, registering.
    pub fn new(user: &str, proxy_port: u16) -> BaresipOpts {
        BaresipOpts {
            user: user.to_string(),
            password: format!("{user}pass"),
            proxy_port,
            source: Source::Silence(60),
            answer: Answer::Auto,
            register: true,
        }
    }
}

/// A headless baresip phone (PCMU only) controlled over `ctrl_tcp`, killed on drop.
///
/// Each call is recorded by the `sndfile` module into the phone's folder: `dump-*-dec.wav` is
/// the audio received, `dump-*-enc.wav` the audio sent.
///
/// Events (JSON objects with `"event": true` and `type`, `class`, `accountaor`,
/// `direction`, `peeruri`, `id`, `param`) arrive on the control connection; the ones seen
/// while waiting for a command's response or another event are kept for
/// [`Baresip::wait_event`]. What baresip 1.0.0 emits:
///
/// - caller: `CALL_LOCAL_SDP`, `CALL_RINGING`, `CALL_REMOTE_SDP`, `CALL_ESTABLISHED`,
///   `CALL_RTPESTAB` (first RTP received), `CALL_RTCP`, `CALL_CLOSED` (`param` is the
///   reason, such as "Connection reset by peer");
/// - callee: `CALL_INCOMING` only with [`Answer::Manual`] (an auto-answered call starts with
///   `CALL_REMOTE_SDP`), then `CALL_LOCAL_SDP`, `CALL_ESTABLISHED`, ...;
/// - a received DTMF digit: `CALL_DTMF_START` with the digit in `param`, then
///   `CALL_DTMF_END` (no `param`);
/// - `REGISTER_OK` and `REGISTER_FAIL`, usually before the control connection is up.
pub struct Baresip {
    child: Option<Child>,
    ctrl: TcpStream,
    buf: Vec<u8>,
    pending: VecDeque<Value>,
    seen: Vec<Value>,
    next_token: u64,
    sip_port: u16,
    rec_dir: PathBuf,
    log_path: PathBuf,
    _dir: TempDir,
}

impl Baresip {
    /// Writes the configuration, starts baresip and connects to its control port (at most
    /// 10 s). Does not wait for the registration: see [`Kamailio::wait_registered`].
    ///
    /// Panics when baresip is not installed or does not come up, with the tail of its log.
    pub fn start(opts: BaresipOpts) -> Baresip {
        let program = find_program("baresip")
            .unwrap_or_else(|| panic!("baresip is not installed; {INSTALL_HINT}"));
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = TempDir::new();
            let rec_dir = dir.0.join("rec");
            std::fs::create_dir_all(&rec_dir).expect("create recording folder");
            let source = match &opts.source {
                Source::Wav(path) => path.clone(),
                Source::Silence(secs) => {
                    let path = dir.0.join(format!("silence-{secs}s-8k.wav"));
                    write_wav(&path, 8000, &vec![0; 8000 * *secs as usize]);
                    path
                }
            };
            // SIP binds UDP and TCP on the port, and TLS on the next one.
            let sip_port = reserve_ports(2);
            let ctrl_port = reserve_ports(1);
            let (rtp_min, rtp_max) = reserve_rtp_range(10);
            std::fs::write(
                dir.0.join("config"),
                baresip_config(sip_port, ctrl_port, rtp_min, rtp_max, &source, &rec_dir),
            )
            .expect("write baresip config");
            let answermode = match opts.answer {
                Answer::Auto => "auto",
                Answer::Manual => "manual",
            };
            let regint = if opts.register { 600 } else { 0 };
            std::fs::write(
                dir.0.join("accounts"),
                format!(
                    "<sip:{user}@{REALM}>;auth_pass={password};\
                     outbound=\"sip:127.0.0.1:{proxy}\";answermode={answermode};\
                     audio_codecs=pcmu;regint={regint}\n",
                    user = opts.user,
                    password = opts.password,
                    proxy = opts.proxy_port,
                ),
            )
            .expect("write baresip accounts");
            std::fs::write(dir.0.join("contacts"), "").expect("write baresip contacts");
            let log_path = dir.0.join("baresip.log");
            let log = File::create(&log_path).expect("create baresip.log");
            let mut child = Command::new(&program)
                .arg("-f")
                .arg(&dir.0)
                .arg("-t")
                .arg(BARESIP_LIFETIME_SECS.to_string())
                .current_dir(&dir.0)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
            match connect_ctrl(&mut child, ctrl_port) {
                Ok(ctrl) => {
                    return Baresip {
                        child: Some(child),
                        ctrl,
                        buf: Vec::new(),
                        pending: VecDeque::new(),
                        seen: Vec::new(),
                        next_token: 1,
                        sip_port,
                        rec_dir,
                        log_path,
                        _dir: dir,
                    };
                }
                Err(exited) => {
                    terminate(&mut child, Duration::from_secs(1));
                    last_log = tail(&read_lossy(&log_path), 40);
                    if !(exited && last_log.contains("in use")) {
                        break;
                    }
                }
            }
        }
        panic!("baresip did not start; its log ends with:\n{last_log}");
    }

    /// The phone's SIP port (UDP and TCP) on 127.0.0.1.
    pub fn sip_port(&self) -> u16 {
        self.sip_port
    }

    /// Sends a `ctrl_tcp` command (a menu command such as `dial`, `hangup`, `accept`,
    /// `sndcode`, `listcalls`, `help`) and returns its response, for example
    /// `{"response":true,"ok":true,"data":"...","token":"3"}`. Events that arrive meanwhile
    /// are kept for [`Baresip::wait_event`].
    ///
    /// Panics when no response comes within 10 s.
    pub fn command(&mut self, command: &str, params: &str) -> Value {
        let token = self.next_token.to_string();
        self.next_token += 1;
        let msg = json!({"command": command, "params": params, "token": token}).to_string();
        self.ctrl
            .write_all(format!("{}:{msg},", msg.len()).as_bytes())
            .unwrap_or_else(|e| panic!("send {command} to baresip: {e}"));
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            match self.read_message(deadline) {
                Some(m) if m["event"] == true => self.keep_event(m),
                Some(m) if m["token"] == token.as_str() => return m,
                // A response to an earlier command that timed out.
                Some(_) => {}
                None => panic!(
                    "baresip did not answer {command} {params} within {COMMAND_TIMEOUT:?}; \
                     its log ends with:\n{}",
                    tail(&self.log(), 40)
                ),
            }
        }
    }

    /// Runs a command and panics with its response when baresip reports a failure.
    fn command_ok(&mut self, command: &str, params: &str) -> Value {
        let r = self.command(command, params);
        assert_eq!(r["ok"], true, "baresip refused {command} {params}: {r}");
        r
    }

    /// Calls `uri` (for example `sip:+15550300@trunk.test`) through the trunk.
    pub fn dial(&mut self, uri: &str) {
        self.command_ok("dial", uri);
    }

    /// Hangs up the current call (baresip answers `ok` even when there is none: wait for
    /// `CALL_CLOSED`).
    pub fn hangup(&mut self) {
        self.command_ok("hangup", "");
    }

    /// Answers the incoming call (with [`Answer::Manual`]).
    pub fn accept(&mut self) {
        self.command_ok("accept", "");
    }

    /// Sends `digits` (0-9, *, #, A-D) as RFC 4733 telephone events in the current call
    /// (menu command `sndcode`, which queues every digit as its own event, then releases the
    /// last one: the remote sees each digit separately).
    ///
    /// Like `hangup`, baresip answers `ok` even when there is no call.
    pub fn send_dtmf(&mut self, digits: &str) {
        self.command_ok("sndcode", digits);
    }

    /// The first event of type `kind` not yet returned by an earlier call, waiting up to
    /// `timeout` for it; `None` on timeout. Other events are kept.
    pub fn wait_event(&mut self, kind: &str, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.pending.iter().position(|e| e["type"] == kind) {
                return self.pending.remove(i);
            }
            let m = self.read_message(deadline)?;
            if m["event"] == true {
                self.keep_event(m);
            }
        }
    }

    /// Every event received so far, in order (events are read while a command or
    /// [`Baresip::wait_event`] waits).
    pub fn events_seen(&self) -> Vec<Value> {
        self.seen.clone()
    }

    /// The newest recording of received audio (`dump-*-dec.wav`), if any. Complete once the
    /// call has closed.
    pub fn received_recording(&self) -> Option<PathBuf> {
        let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&self.rec_dir)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("dump-") && n.ends_with("-dec.wav"))
            })
            .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
            .collect();
        found.sort();
        found.pop().map(|(_, p)| p)
    }

    /// Everything baresip printed so far (stdout and stderr).
    pub fn log(&self) -> String {
        read_lossy(&self.log_path)
    }

    /// Stops baresip: SIGTERM, then SIGKILL if it is still running after 2 s. Does nothing
    /// when already stopped.
    pub fn stop(&mut self) {
        let _ = self.ctrl.shutdown(Shutdown::Both);
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(2));
        }
    }

    fn keep_event(&mut self, event: Value) {
        self.seen.push(event.clone());
        self.pending.push_back(event);
    }

    /// The next netstring JSON message from the control connection, `None` at the deadline
    /// or when the connection closes.
    fn read_message(&mut self, deadline: Instant) -> Option<Value> {
        loop {
            if let Some((payload, used)) = parse_netstring(&self.buf) {
                let text = String::from_utf8_lossy(payload).into_owned();
                self.buf.drain(..used);
                match serde_json::from_str(&text) {
                    Ok(v) => return Some(v),
                    Err(e) => panic!("baresip sent invalid JSON ({e}): {text}"),
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.ctrl
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("set read timeout");
            let mut chunk = [0u8; 8192];
            match self.ctrl.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The baresip configuration file, after the recipe verified with baresip 1.0.0.
fn baresip_config(
    sip_port: u16,
    ctrl_port: u16,
    rtp_min: u16,
    rtp_max: u16,
    source: &Path,
    rec_dir: &Path,
) -> String {
    format!(
        "\
module_path\t\t/usr/lib/baresip/modules
# binds SIP to 127.0.0.1 and puts 127.0.0.1 into the SDP (the name \"lo\" does not work)
net_interface\t\t127.0.0.1
poll_method\t\tepoll
sip_listen\t\t127.0.0.1:{sip_port}
call_local_timeout\t30
call_max_calls\t\t4
audio_buffer\t\t20-160
# no sound card: the aubridge device \"nil\" is a sink nobody reads
audio_player\t\taubridge,nil
audio_alert\t\taubridge,nil
audio_source\t\taufile,{source}
audio_level\t\tno
ausrc_format\t\ts16
auplay_format\t\ts16
auenc_format\t\ts16
audec_format\t\ts16
rtp_ports\t\t{rtp_min}-{rtp_max}
rtcp_mux\t\tno
jitter_buffer_delay\t5-10
rtp_stats\t\tyes
module\t\t\tg711.so
module\t\t\tsndfile.so
module\t\t\taufile.so
module\t\t\taubridge.so
module_tmp\t\taccount.so
module_app\t\tmenu.so
# no status line every 100 ms in the log
statmode_default\toff
module_app\t\tctrl_tcp.so
ctrl_tcp_listen\t\t127.0.0.1:{ctrl_port}
snd_path\t\t{rec}
",
        source = source.display(),
        rec = rec_dir.display(),
    )
}

/// Connects to baresip's control port. `Err(true)` when baresip exited, `Err(false)` on
/// timeout.
fn connect_ctrl(child: &mut Child, port: u16) -> Result<TcpStream, bool> {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if child.try_wait().expect("try_wait").is_some() {
            return Err(true);
        }
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            return Ok(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(false)
}

/// Splits the first complete netstring (`<len>:<payload>,`) off `buf`: the payload and the
/// number of bytes it took.
fn parse_netstring(buf: &[u8]) -> Option<(&[u8], usize)> {
    let colon = buf.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&buf[..colon])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "bad netstring from baresip: {}",
                String::from_utf8_lossy(buf)
            )
        });
    let end = colon + 1 + len;
    if buf.len() <= end {
        return None;
    }
    assert_eq!(buf[end], b',', "netstring from baresip without its comma");
    Some((&buf[colon + 1..end], end + 1))
}

// ---------------------------------------------------------------------------------------------
// processes, ports, files

/// `name` on the PATH or in the sbin folders (kamailio lives in /usr/sbin, which is not on
/// every user's PATH).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Sends `signal` (a name such as `TERM`) to the process `pid`.
fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The children of `pid`, their children, and so on.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.filter_map(|t| t.ok()) {
            let children = read_lossy(&task.path().join("children"));
            for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                out.push(c);
                todo.push(c);
            }
        }
    }
    out
}

/// SIGTERM, up to `grace` to exit, then SIGKILL for the process and its descendants.
fn terminate(child: &mut Child, grace: Duration) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    send_signal(child.id(), "TERM");
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let rest = descendants(child.id());
    let _ = child.kill();
    let _ = child.wait();
    for pid in rest {
        send_signal(pid, "KILL");
    }
}

/// Ports handed out in this process, so that parallel tests never get the same one.
static RESERVED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Whether `port` can be bound on 127.0.0.1 over TCP and, when `udp`, over UDP.
fn port_free(port: u16, udp: bool) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
        && (!udp || UdpSocket::bind(("127.0.0.1", port)).is_ok())
}

/// `count` consecutive ports, free for UDP and TCP on 127.0.0.1 and not handed out before
/// in this process; returns the first.
fn reserve_ports(count: u16) -> u16 {
    let mut reserved = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let udp = UdpSocket::bind(("127.0.0.1", 0)).expect("bind an UDP socket");
        let base = udp.local_addr().expect("local address").port();
        if u32::from(base) + u32::from(count) > 65536 {
            continue;
        }
        let ports = base..base + count;
        if ports
            .clone()
            .all(|p| !reserved.contains(&p) && port_free(p, p != base))
        {
            reserved.extend(ports);
            return base;
        }
    }
    panic!("no {count} consecutive free ports on 127.0.0.1");
}

/// A range of `len` UDP ports for RTP, below the kernel's ephemeral range (so that ports
/// bound to 0 elsewhere do not land in it), free now and not handed out before in this
/// process.
fn reserve_rtp_range(len: u16) -> (u16, u16) {
    const LOW: u16 = 20000;
    const SLOTS: u16 = 1200; // 20000..32000 in steps of 10
    let mut reserved = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
    let start = (uuid::Uuid::new_v4().as_u128() % u128::from(SLOTS)) as u16;
    for i in 0..SLOTS {
        let base = LOW + ((start + i) % SLOTS) * 10;
        let ports = base..base + len;
        if ports
            .clone()
            .all(|p| !reserved.contains(&p) && UdpSocket::bind(("127.0.0.1", p)).is_ok())
        {
            reserved.extend(ports);
            return (base, base + len - 1);
        }
    }
    panic!("no free RTP port range between 20000 and 32000");
}

/// Copies the files of `from` into a new folder `to` (writable copies).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {from:?}: {e}")) {
        let entry = entry.expect("folder entry");
        let dest = to.join(entry.file_name());
        std::fs::write(&dest, std::fs::read(entry.path()).expect("read fixture"))
            .expect("write fixture copy");
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// audio

/// Writes `samples` as a mono 16-bit PCM WAV file at `rate` Hz.
pub fn write_wav(path: &Path, rate: u32, samples: &[i16]) {
    let data_len = u32::try_from(samples.len() * 2).expect("WAV data under 4 GiB");
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes()); // bytes per second
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, out).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
}

/// Reads a mono 16-bit PCM WAV file: its rate and samples. Chunks other than `fmt ` and
/// `data` are skipped; a `data` size that overruns the file (a recording whose header was
/// not finalised) is cut to what the file holds.
///
/// Panics on anything else (stereo, other sample formats, not a WAV file).
pub fn read_wav(path: &Path) -> (u32, Vec<i16>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
    assert!(
        bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "{path:?} is not a WAV file"
    );
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at =
        |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let mut rate = None;
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32_at(pos + 4) as usize;
        let body = pos + 8;
        let end = body.saturating_add(size).min(bytes.len());
        if id == b"fmt " {
            assert!(end - body >= 16, "{path:?}: short fmt chunk");
            let format = u16_at(body);
            let channels = u16_at(body + 2);
            let bits = u16_at(body + 14);
            // 0xFFFE: WAVE_FORMAT_EXTENSIBLE, whose sub-format is PCM for 16-bit files.
            assert!(
                (format == 1 || format == 0xFFFE) && channels == 1 && bits == 16,
                "{path:?}: not mono 16-bit PCM (format {format}, {channels} channels, {bits} bits)"
            );
            rate = Some(u32_at(body + 4));
        } else if id == b"data" {
            let rate = rate.unwrap_or_else(|| panic!("{path:?}: data before fmt"));
            let samples = bytes[body..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return (rate, samples);
        }
        // Chunks are padded to an even size.
        pos = body.saturating_add(size).saturating_add(size & 1);
    }
    panic!("{path:?} has no data chunk");
}

/// A speech-like, non-periodic test signal at `rate` Hz: 0.3 s of silence, then `seconds` of
/// tone bursts.
///
/// Each burst lasts 80–200 ms and glides between two pseudo-random frequencies in
/// 300–3000 Hz, with a 10 ms raised-cosine attack and release and a peak of 0.2–0.5 of full
/// scale; bursts are separated by 20–60 ms of silence. The same `seed` gives the same
/// signal; different seeds give signals that do not correlate. Its autocorrelation has a
/// single sharp peak, so [`best_match`] finds the delay of a recording unambiguously, and it
/// stays within G.711's band.
pub fn test_signal(rate: u32, seconds: f32, seed: u64) -> Vec<i16> {
    let mut rng = SplitMix64(seed);
    let rate_f = f64::from(rate);
    let lead = (0.3 * rate_f).round() as usize;
    let total = lead + (f64::from(seconds) * rate_f).round() as usize;
    let mut out = vec![0i16; lead];
    let ramp = (0.010 * rate_f).round() as usize;
    while out.len() < total {
        let len = ((rng.uniform(0.080, 0.200) * rate_f) as usize).min(total - out.len());
        let (f0, f1) = (rng.uniform(300.0, 3000.0), rng.uniform(300.0, 3000.0));
        let peak = rng.uniform(0.2, 0.5) * 32767.0;
        let mut phase = rng.uniform(0.0, std::f64::consts::TAU);
        for n in 0..len {
            let t = n as f64 / len as f64;
            let f = f0 + (f1 - f0) * t;
            phase += std::f64::consts::TAU * f / rate_f;
            let edge = n.min(len - 1 - n);
            let env = if edge < ramp {
                0.5 - 0.5 * (std::f64::consts::PI * edge as f64 / ramp as f64).cos()
            } else {
                1.0
            };
            out.push((peak * env * phase.sin()).round() as i16);
        }
        let gap = ((rng.uniform(0.020, 0.060) * rate_f) as usize).min(total - out.len());
        out.extend(std::iter::repeat_n(0, gap));
    }
    out
}

/// A small deterministic generator (SplitMix64), so that signals depend only on their seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Samples per frame of the coarse (envelope) search of [`best_match`].
const ENVELOPE_FRAME: usize = 32;

/// Where `reference` best lines up in `recording`: the normalised correlation there (1.0 =
/// identical up to gain) and the lag, the index in `recording` of the reference's first
/// sample. The lag is negative when the recording misses the start of the reference.
///
/// The correlation is computed over the samples where both overlap, and only lags at which
/// at least half of the shorter signal overlaps are considered, so a short accidental
/// overlap cannot score high. The search is coarse to fine: the 4 ms energy envelopes
/// (at 8 kHz) are cross-correlated over every lag, then the sample correlation is computed
/// for every lag within two frames of the best envelope matches.
/// `chamade_media::analysis::best_correlation` only searches non-negative lags, one sample
/// at a time, which is too slow over seconds of lag.
pub fn best_match(reference: &[i16], recording: &[i16]) -> (f64, isize) {
    let min_overlap = reference.len().min(recording.len()) / 2;
    if min_overlap == 0 {
        return (0.0, 0);
    }
    let env_ref = envelope(reference);
    let env_rec = envelope(recording);
    let min_frames = (min_overlap / ENVELOPE_FRAME).max(1) as isize;
    let mut coarse: Vec<(f64, isize)> = Vec::new();
    let lo = -(env_ref.len() as isize) + min_frames;
    let hi = env_rec.len() as isize - min_frames;
    for lag in lo..=hi {
        coarse.push((correlation_at(&env_ref, &env_rec, lag), lag));
    }
    coarse.sort_by(|a, b| b.0.total_cmp(&a.0));
    let frame = ENVELOPE_FRAME as isize;
    let mut best = (f64::MIN, 0isize);
    for &(_, lag) in coarse.iter().take(5) {
        let centre = lag * frame;
        for fine in centre - 2 * frame..=centre + 2 * frame {
            let overlap = overlap_len(reference.len(), recording.len(), fine);
            if overlap < min_overlap {
                continue;
            }
            let c = correlation_at_i16(reference, recording, fine);
            if c > best.0 {
                best = (c, fine);
            }
        }
    }
    if best.0 == f64::MIN { (0.0, 0) } else { best }
}

/// Mean absolute value per [`ENVELOPE_FRAME`] samples.
fn envelope(samples: &[i16]) -> Vec<f64> {
    samples
        .chunks(ENVELOPE_FRAME)
        .map(|c| c.iter().map(|&s| f64::from(s).abs()).sum::<f64>() / c.len() as f64)
        .collect()
}

/// How many samples overlap when `a` starts at index `lag` of `b`.
fn overlap_len(a: usize, b: usize, lag: isize) -> usize {
    let start = lag.max(0);
    let end = (lag + a as isize).min(b as isize);
    (end - start).max(0) as usize
}

/// Normalised correlation (mean removed) of `a` placed at index `lag` of `b`, over the
/// overlap.
fn correlation_at(a: &[f64], b: &[f64], lag: isize) -> f64 {
    let (ia, ib, n) = overlap_range(a.len(), b.len(), lag);
    if n < 2 {
        return 0.0;
    }
    let (xa, xb) = (&a[ia..ia + n], &b[ib..ib + n]);
    let ma = xa.iter().sum::<f64>() / n as f64;
    let mb = xb.iter().sum::<f64>() / n as f64;
    let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
    for (x, y) in xa.iter().zip(xb) {
        let (x, y) = (x - ma, y - mb);
        xy += x * y;
        xx += x * x;
        yy += y * y;
    }
    if xx > 0.0 && yy > 0.0 {
        xy / (xx * yy).sqrt()
    } else {
        0.0
    }
}

/// Normalised correlation of `a` placed at index `lag` of `b`, over the overlap.
fn correlation_at_i16(a: &[i16], b: &[i16], lag: isize) -> f64 {
    let (ia, ib, n) = overlap_range(a.len(), b.len(), lag);
    let (mut xy, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a[ia..ia + n].iter().zip(&b[ib..ib + n]) {
        let (x, y) = (f64::from(x), f64::from(y));
        xy += x * y;
        xx += x * x;
        yy += y * y;
    }
    if xx > 0.0 && yy > 0.0 {
        xy / (xx * yy).sqrt()
    } else {
        0.0
    }
}

/// Start in `a`, start in `b` and length of the overlap when `a` starts at index `lag` of `b`.
fn overlap_range(a: usize, b: usize, lag: isize) -> (usize, usize, usize) {
    let n = overlap_len(a, b, lag);
    if lag >= 0 {
        (0, lag as usize, n)
    } else {
        ((-lag) as usize, 0, n)
    }
}
