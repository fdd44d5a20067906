//! The task that moves one RTP participant's audio: datagrams in through the jitter buffer
//! into the room's mixer, the room's mix-minus out as one packet per tick. Plain RTP legs
//! and SIP calls both run it; SIP adds telephone-events (RFC 4733), RTCP counting and an
//! inactivity limit that ends a call whose phone went silent at the network level.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::Addr;
use chamade_actors::bridge::rtp::{RtpReceiver, RtpSender};
use chamade_actors::bridge::sip::dtmf::DtmfSender;
use chamade_actors::bridge::sip::rtcp;
use chamade_actors::room::{Command, Room};
use chamade_media::ring::Pull;
use chamade_media::{Frame, SampleRate};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::media_plane::AgentLeg;

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
    /// The leg's loop: datagrams into the jitter buffer as they come; on the mixer's tick
    /// grid, one decoded frame into the input ring and, when the room's frame is there, one
    /// packet out (a telephone-event instead of audio while a key is being played).
    pub async fn run(self, mut stopped: oneshot::Receiver<()>) -> LegEnd {
        let RtpLeg {
            socket,
            rtcp,
            remote,
            rtcp_remote,
            mut receiver,
            mut sender,
            mut leg,
            rate,
            room,
            dtmf,
            inactivity,
            counters,
            ssrc,
        } = self;
        let mut buf = [0u8; MAX_DATAGRAM];
        let mut rtcp_buf = [0u8; MAX_DATAGRAM];
        let mut out = Frame::silence(rate);
        let mut next = grid_after(leg.grid, Instant::now());
        let mut last_heard = Instant::now();
        let mut next_report = Instant::now() + RTCP_INTERVAL;
        let (dtmf_pt, mut dtmf_digits) = match dtmf {
            Some(d) => (Some(d.payload_type), Some(d.digits)),
            None => (None, None),
        };
        let mut keys = DtmfSender::default();
        loop {
            tokio::select! {
                _ = &mut stopped => return LegEnd::Stopped,
                got = socket.recv_from(&mut buf) => {
                    match got {
                        // Symmetric RTP: only the negotiated remote is listened to.
                        Ok((n, from)) if from == remote => {
                            last_heard = Instant::now();
                            if receiver.on_datagram(&buf[..n]).is_ok() {
                                counters.rtp_in.fetch_add(1, Ordering::Relaxed);
                            }
                            while let Some(digit) = receiver.take_dtmf() {
                                counters.dtmf_in.fetch_add(1, Ordering::Relaxed);
                                room.do_send(Command::Dtmf(digit));
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::debug!(error = %e, "RTP receive error"),
                    }
                }
                got = recv_rtcp(rtcp.as_ref(), &mut rtcp_buf) => {
                    if let Ok((n, _)) = got && rtcp::classify(&rtcp_buf[..n]).is_some() {
                        counters.rtcp_in.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(digits) = next_digits(&mut dtmf_digits) => {
                    if let Err(e) = keys.queue(&digits) {
                        tracing::debug!(error = %e, "DTMF not queued");
                    }
                }
                _ = tokio::time::sleep_until(next.into()) => {
                    if !room.connected() {
                        return LegEnd::RoomGone;
                    }
                    let now = Instant::now();
                    if inactivity.is_some_and(|limit| now.duration_since(last_heard) > limit) {
                        return LegEnd::Inactive;
                    }
                    next = grid_after(leg.grid, now);
                    leg.ends.input.push_samples(receiver.next_frame().samples());
                    let Some(output) = leg.ends.output.as_mut() else { continue };
                    output.trim_to(rate.frame_samples() * 4);
                    let have_frame = output.queued_samples() >= rate.frame_samples()
                        && output.pull_frame(out.samples_mut()) == Pull::Frame;
                    let event = dtmf_pt.and_then(|pt| keys.next().map(|p| (pt, p)));
                    let packet = match &event {
                        Some((pt, p)) => {
                            counters.dtmf_out.fetch_add(1, Ordering::Relaxed);
                            Some(sender.packetize_event(*pt, p))
                        }
                        None if have_frame => sender.packetize(&out).ok(),
                        None => None,
                    };
                    if let Some(packet) = packet {
                        counters.rtp_out.fetch_add(1, Ordering::Relaxed);
                        let _ = socket.send_to(packet, remote).await;
                    }
                    if let (Some(sock), Some(to)) = (rtcp.as_ref(), rtcp_remote)
                        && now >= next_report
                    {
                        next_report = now + RTCP_INTERVAL;
                        let mut report = [0u8; 8];
                        let bytes = rtcp::receiver_report(ssrc, &mut report);
                        if sock.send_to(bytes, to).await.is_ok() {
                            counters.rtcp_out.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    }
}

async fn recv_rtcp(
    socket: Option<&UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

async fn next_digits(queue: &mut Option<mpsc::UnboundedReceiver<String>>) -> Option<String> {
    match queue {
        Some(q) => match q.recv().await {
            Some(d) => Some(d),
            None => {
                // The sending side is gone: no more keys will come.
                *queue = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// 2 ms after the next tick of the shard's grid: the room's frame for the tick is there.
fn grid_after(grid: Instant, now: Instant) -> Instant {
    let tick = Duration::from_millis(20);
    let since = now.saturating_duration_since(grid).as_nanos();
    let k = since / tick.as_nanos() + 1;
    grid + Duration::from_nanos((k * tick.as_nanos()) as u64) + Duration::from_millis(2)
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
