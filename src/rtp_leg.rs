//! The task that moves one RTP participant's audio: datagrams in through the jitter buffer
//! into the room's mixer, the room's mix-minus out as one packet per tick. Plain RTP legs
//! and SIP calls both run it; SIP adds telephone-events (RFC 4733), RTCP counting and an
//! inactivity limit that ends a call whose phone went silent at the network level.

use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::Addr;
use chamade_actors::bridge::rtp::{RtpReceiver, RtpSender};
use chamade_actors::bridge::sip::dtmf::DtmfSender;
use chamade_actors::bridge::sip::rtcp;
use chamade_actors::room::{Command, Room};
use chamade_actors::shard::{Endpoint, Step, TICK};
use chamade_media::ring::Pull;
use chamade_media::{Frame, SampleRate};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::media_plane::{AgentLeg, MediaPlane};

/// Largest datagram read from a leg's sockets.
const MAX_DATAGRAM: usize = 2048;
/// How often an empty receiver report goes to the phone's RTCP port.
const RTCP_INTERVAL: Duration = Duration::from_secs(5);

/// Counters of one leg, readable while it runs.
#[derive(Debug, Default)]
pub struct LegCounters {
    /// RTP datagrams taken from the remote.
    pub rtp_in: AtomicU64,
    /// RTP packets sent (audio and telephone-events).
    pub rtp_out: AtomicU64,
    /// RTCP packets received (sender and receiver reports, SDES, BYE …).
    pub rtcp_in: AtomicU64,
    /// RTCP reports sent.
    pub rtcp_out: AtomicU64,
    /// Keys received as telephone-events.
    pub dtmf_in: AtomicU64,
    /// Telephone-event packets sent.
    pub dtmf_out: AtomicU64,
}

/// Outbound DTMF: the negotiated payload type and the queue agents write digit strings to.
pub struct DtmfOut {
    /// The telephone-event payload type the phone offered.
    pub payload_type: u8,
    /// Digit strings, already checked, to play in order.
    pub digits: mpsc::UnboundedReceiver<String>,
}

/// Everything one leg's task owns.
pub struct RtpLeg {
    /// The RTP socket.
    pub socket: UdpSocket,
    /// The RTCP socket (the RTP port + 1) when RTCP is not multiplexed.
    pub rtcp: Option<UdpSocket>,
    /// Where the remote sends from and listens (symmetric RTP).
    pub remote: SocketAddr,
    /// The remote's RTCP address.
    pub rtcp_remote: Option<SocketAddr>,
    /// Depacketizer and decoder.
    pub receiver: RtpReceiver,
    /// Encoder and packetizer.
    pub sender: RtpSender,
    /// The participant's seat in the mixer room.
    pub leg: AgentLeg,
    /// The PCM rate the codec works at.
    pub rate: SampleRate,
    /// The room, to learn that the call ended and to report keys.
    pub room: Addr<Room>,
    /// Outbound telephone-events, when negotiated.
    pub dtmf: Option<DtmfOut>,
    /// End the leg after this long without a datagram from the remote.
    pub inactivity: Option<Duration>,
    /// Shared counters.
    pub counters: Arc<LegCounters>,
    /// SSRC of our RTCP reports (the sender's).
    pub ssrc: u32,
}

/// Why a leg stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegEnd {
    /// Its owner asked it to stop.
    Stopped,
    /// The call ended, so its mixer room is gone.
    RoomGone,
    /// Nothing came from the remote for the inactivity limit.
    Inactive,
}

impl RtpLeg {
    /// Runs the leg on its room's mixer shard (see [`Endpoint`]) until it ends: stopped
    /// through `stopped`, its call gone, or its remote silent past the inactivity limit.
    /// The future only waits; the leg's work happens on the shard thread around each mix.
    pub async fn run(
        self,
        media: &MediaPlane,
        media_room: u64,
        stopped: oneshot::Receiver<()>,
    ) -> LegEnd {
        let (done_tx, done) = oneshot::channel();
        let participant = self.leg.participant();
        let endpoint = match ShardLeg::new(self, stopped, done_tx) {
            Ok(endpoint) => endpoint,
            Err(e) => {
                tracing::warn!(error = %e, "RTP leg not started");
                return LegEnd::RoomGone;
            }
        };
        if let Err(e) = media.attach(media_room, participant, Box::new(endpoint)) {
            tracing::warn!(error = %e, "RTP leg not started");
            return LegEnd::RoomGone;
        }
        // A leg the shard drops without finishing (its room closed first, or the shard
        // stopped) ends with its room.
        done.await.unwrap_or(LegEnd::RoomGone)
    }
}

/// Ticks between two reads of the RTCP socket (reports come every few seconds; the
/// socket's buffer holds them meanwhile).
const RTCP_POLL_TICKS: u64 = 10;
/// Most datagrams taken from the RTP socket in one tick: one is the steady state; a burst
/// after a network stall is taken over a few ticks, and a flood cannot hold the shard.
const MAX_DATAGRAMS_PER_TICK: usize = 8;
/// Frames the output ring may hold before the leg drops the oldest: with the leg reading
/// right after every mix there is one; more means frames were pushed while it was away.
const OUTPUT_TRIM_FRAMES: usize = 2;

/// An [`RtpLeg`] as the shard runs it: the same parts, with std sockets read without
/// blocking and time counted in ticks.
struct ShardLeg {
    socket: std::net::UdpSocket,
    /// Whether `socket` is connected to `remote` (the kernel then filters other sources).
    connected: bool,
    rtcp: Option<std::net::UdpSocket>,
    remote: SocketAddr,
    rtcp_remote: Option<SocketAddr>,
    receiver: RtpReceiver,
    sender: RtpSender,
    leg: AgentLeg,
    out: Frame,
    room: Addr<Room>,
    dtmf_pt: Option<u8>,
    dtmf_digits: Option<mpsc::UnboundedReceiver<String>>,
    keys: DtmfSender,
    inactivity_ticks: Option<u64>,
    counters: Arc<LegCounters>,
    ssrc: u32,
    stopped: oneshot::Receiver<()>,
    done: Option<oneshot::Sender<LegEnd>>,
    tick: u64,
    last_heard: u64,
    next_report: u64,
    buf: Box<[u8; MAX_DATAGRAM]>,
    /// Frames leave as they arrive (see [`Endpoint::forward`]) instead of once per tick.
    forwarding: bool,
}

impl ShardLeg {
    fn new(
        leg: RtpLeg,
        stopped: oneshot::Receiver<()>,
        done: oneshot::Sender<LegEnd>,
    ) -> std::io::Result<ShardLeg> {
        let RtpLeg {
            socket,
            rtcp,
            remote,
            rtcp_remote,
            receiver,
            sender,
            leg,
            rate,
            room,
            dtmf,
            inactivity,
            counters,
            ssrc,
        } = leg;
        // Deregistered from the async reactor; still non-blocking.
        let socket = socket.into_std()?;
        socket.set_nonblocking(true)?;
        // A connected socket skips the route lookup on every send and drops datagrams from
        // anyone but the remote in the kernel (symmetric RTP listens to nobody else).
        let connected = !remote.ip().is_unspecified() && socket.connect(remote).is_ok();
        let rtcp = match rtcp {
            Some(s) => {
                let s = s.into_std()?;
                s.set_nonblocking(true)?;
                Some(s)
            }
            None => None,
        };
        let (dtmf_pt, dtmf_digits) = match dtmf {
            Some(d) => (Some(d.payload_type), Some(d.digits)),
            None => (None, None),
        };
        Ok(ShardLeg {
            socket,
            connected,
            rtcp,
            remote,
            rtcp_remote,
            receiver,
            sender,
            leg,
            out: Frame::silence(rate),
            room,
            dtmf_pt,
            dtmf_digits,
            keys: DtmfSender::default(),
            inactivity_ticks: inactivity.map(ticks_of),
            counters,
            ssrc,
            stopped,
            done: Some(done),
            tick: 0,
            last_heard: 0,
            next_report: ticks_of(RTCP_INTERVAL),
            buf: Box::new([0u8; MAX_DATAGRAM]),
            forwarding: false,
        })
    }

    fn finish(&mut self, end: LegEnd) -> Step {
        if let Some(done) = self.done.take() {
            let _ = done.send(end);
        }
        Step::Done
    }

    /// Takes what the remote sent since the last tick into the jitter buffer, when the
    /// shard does not watch the socket for us.
    fn receive(&mut self) {
        for _ in 0..MAX_DATAGRAMS_PER_TICK {
            if !self.receive_one() {
                return;
            }
        }
    }

    /// Takes one datagram; false when there was none (or the socket failed).
    fn receive_one(&mut self) -> bool {
        let got = if self.connected {
            self.socket
                .recv(&mut self.buf[..])
                .map(|n| (n, self.remote))
        } else {
            self.socket.recv_from(&mut self.buf[..])
        };
        match got {
            // Symmetric RTP: only the negotiated remote is listened to.
            Ok((n, from)) if from == self.remote => {
                self.last_heard = self.tick;
                if self.receiver.on_datagram(&self.buf[..n]).is_ok() {
                    self.counters.rtp_in.fetch_add(1, Ordering::Relaxed);
                }
                while let Some(digit) = self.receiver.take_dtmf() {
                    self.counters.dtmf_in.fetch_add(1, Ordering::Relaxed);
                    self.room.do_send(Command::Dtmf(digit));
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            // An ICMP error for an earlier send (the remote's port closed) surfaces
            // here on a connected socket; it says nothing about what arrives next.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(e) => {
                tracing::debug!(error = %e, "RTP receive error");
                return false;
            }
        }
        true
    }

    /// Counts the RTCP reports that arrived.
    fn receive_rtcp(&mut self) {
        let Some(sock) = self.rtcp.as_ref() else {
            return;
        };
        for _ in 0..MAX_DATAGRAMS_PER_TICK {
            match sock.recv_from(&mut self.buf[..]) {
                Ok((n, _)) => {
                    if rtcp::classify(&self.buf[..n]).is_some() {
                        self.counters.rtcp_in.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(_) => return,
            }
        }
    }
}

impl Endpoint for ShardLeg {
    fn readiness(&self) -> Option<BorrowedFd<'_>> {
        Some(self.socket.as_fd())
    }

    fn on_readable(&mut self) -> bool {
        self.receive_one()
    }

    fn before_mix(&mut self, watched: bool) -> Step {
        match self.stopped.try_recv() {
            Err(oneshot::error::TryRecvError::Empty) => {}
            // Asked to stop, or the owner is gone.
            _ => return self.finish(LegEnd::Stopped),
        }
        if !self.room.connected() {
            return self.finish(LegEnd::RoomGone);
        }
        self.tick += 1;
        if !watched {
            self.receive();
        }
        if self.tick.is_multiple_of(RTCP_POLL_TICKS) {
            self.receive_rtcp();
        }
        if self
            .inactivity_ticks
            .is_some_and(|limit| self.tick.saturating_sub(self.last_heard) > limit)
        {
            return self.finish(LegEnd::Inactive);
        }
        if let Some(queue) = self.dtmf_digits.as_mut() {
            match queue.try_recv() {
                Ok(digits) => {
                    if let Err(e) = self.keys.queue(&digits) {
                        tracing::debug!(error = %e, "DTMF not queued");
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => {}
                // The sending side is gone: no more keys will come.
                Err(mpsc::error::TryRecvError::Disconnected) => self.dtmf_digits = None,
            }
        }
        if self.forwarding {
            self.receiver.skip_tick();
        } else {
            self.leg
                .ends
                .input
                .push_samples(self.receiver.next_frame().samples());
        }
        Step::Continue
    }

    fn can_forward(&self) -> bool {
        true
    }

    fn set_forwarding(&mut self, on: bool) {
        self.forwarding = on;
    }

    fn forward(&mut self, sink: &mut dyn FnMut(&[i16])) -> usize {
        self.receiver.forward_frames(|frame| sink(frame.samples()))
    }

    fn flush_output(&mut self) -> Step {
        // Telephone-events keep their packet times on the tick; audio forwarded to this
        // leg between ticks leaves now, unless an event holds the stream.
        if !self.keys.is_idle() {
            return Step::Continue;
        }
        let frame = self.out.samples().len();
        while let Some(output) = self.leg.ends.output.as_mut()
            && output.queued_samples() >= frame
            && output.pull_frame(self.out.samples_mut()) == Pull::Frame
        {
            let sent = self.sender.packetize(&self.out).is_ok_and(|packet| {
                if self.connected {
                    self.socket.send(packet).is_ok()
                } else {
                    self.socket.send_to(packet, self.remote).is_ok()
                }
            });
            if sent {
                self.counters.rtp_out.fetch_add(1, Ordering::Relaxed);
            }
        }
        Step::Continue
    }

    fn after_mix(&mut self) -> Step {
        let frame = self.out.samples().len();
        let have_frame = match self.leg.ends.output.as_mut() {
            Some(output) => {
                output.trim_to(frame * OUTPUT_TRIM_FRAMES);
                output.queued_samples() >= frame
                    && output.pull_frame(self.out.samples_mut()) == Pull::Frame
            }
            None => false,
        };
        let out = &self.out;
        let send = |packet: &[u8]| {
            let sent = if self.connected {
                self.socket.send(packet)
            } else {
                self.socket.send_to(packet, self.remote)
            };
            // A full send buffer or an unreachable remote loses this packet only.
            if let Err(e) = &sent {
                tracing::trace!(error = %e, "RTP send error");
            }
            sent.is_ok()
        };
        let event = self
            .dtmf_pt
            .and_then(|pt| self.keys.next().map(|p| (pt, p)));
        let sent = match &event {
            Some((pt, p)) => {
                self.counters.dtmf_out.fetch_add(1, Ordering::Relaxed);
                send(self.sender.packetize_event(*pt, p))
            }
            None if have_frame => self.sender.packetize(out).is_ok_and(send),
            None => false,
        };
        if sent {
            self.counters.rtp_out.fetch_add(1, Ordering::Relaxed);
        }
        if let (Some(sock), Some(to)) = (self.rtcp.as_ref(), self.rtcp_remote)
            && self.tick >= self.next_report
        {
            self.next_report = self.tick + ticks_of(RTCP_INTERVAL);
            let mut report = [0u8; 8];
            let bytes = rtcp::receiver_report(self.ssrc, &mut report);
            if sock.send_to(bytes, to).is_ok() {
                self.counters.rtcp_out.fetch_add(1, Ordering::Relaxed);
            }
        }
        Step::Continue
    }

    fn label(&self) -> String {
        format!("RTP leg with {}", self.remote)
    }
}

/// Whole ticks in `d` (at least one): the leg counts time in ticks, not clock reads.
fn ticks_of(d: Duration) -> u64 {
    (d.as_millis() / TICK.as_millis()).max(1) as u64
}

/// Binds an RTP socket on an even port and its RTCP socket on the next one (RFC 3550
/// §11), on `ip`: within `range` when given (tried from a random even port on), else on
/// any free port.
pub async fn bind_pair(
    ip: std::net::IpAddr,
    range: Option<(u16, u16)>,
) -> std::io::Result<(UdpSocket, UdpSocket)> {
    if let Some((lo, hi)) = range {
        return bind_pair_in(ip, lo, hi).await;
    }
    let mut last = None;
    for _ in 0..64 {
        let rtp = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let port = rtp.local_addr()?.port();
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        match UdpSocket::bind(SocketAddr::new(ip, port + 1)).await {
            Ok(rtcp) => return Ok((rtp, rtcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free even/odd UDP port pair")))
}

async fn bind_pair_in(
    ip: std::net::IpAddr,
    lo: u16,
    hi: u16,
) -> std::io::Result<(UdpSocket, UdpSocket)> {
    let first = lo + (lo % 2);
    let pairs = (u32::from(hi) + 1).saturating_sub(u32::from(first)) / 2;
    if pairs == 0 {
        return Err(std::io::Error::other(format!(
            "the RTP port range {lo}-{hi} holds no even/odd pair"
        )));
    }
    let start = random_u32() % pairs;
    for i in 0..pairs {
        let port = first + (((start + i) % pairs) * 2) as u16;
        let Ok(rtp) = UdpSocket::bind(SocketAddr::new(ip, port)).await else {
            continue;
        };
        if let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(ip, port + 1)).await {
            return Ok((rtp, rtcp));
        }
    }
    Err(std::io::Error::other(format!(
        "every RTP port pair in {lo}-{hi} is in use"
    )))
}

/// A random 32-bit value for SSRCs, sequence numbers and timestamps (RFC 3550 asks that
/// they not be predictable).
pub fn random_u32() -> u32 {
    use rand::Rng;
    rand::rng().next_u32()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn pairs_come_from_the_configured_range() {
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        // Two even/odd pairs in 47100-47103: both are taken, then the range is full.
        let (a, a_rtcp) = bind_pair(ip, Some((47_100, 47_103))).await.unwrap();
        let (b, b_rtcp) = bind_pair(ip, Some((47_100, 47_103))).await.unwrap();
        for (rtp, rtcp) in [(&a, &a_rtcp), (&b, &b_rtcp)] {
            let port = rtp.local_addr().unwrap().port();
            assert!((47_100..=47_102).contains(&port) && port % 2 == 0, "{port}");
            assert_eq!(rtcp.local_addr().unwrap().port(), port + 1);
        }
        let full = bind_pair(ip, Some((47_100, 47_103))).await;
        assert!(full.unwrap_err().to_string().contains("in use"));
        let empty = bind_pair(ip, Some((47_105, 47_106))).await;
        assert!(empty.unwrap_err().to_string().contains("no even/odd pair"));
    }
}
