//! WebRTC legs: a browser, or any WebRTC client arriving over WHIP, as a participant of a
//! mixer room. Opus at 48 kHz both ways, ICE with host candidates, DTLS-SRTP.
//!
//! The peer connection itself (ICE, DTLS, SRTP, RTCP) runs on webrtc-rs's async driver; the
//! audio does not. Received RTP is copied, undecoded, into a bounded channel, and the leg's
//! [`WebRtcEndpoint`] runs on the room's mixer shard like a plain RTP leg: on every tick it
//! drains that channel into its jitter buffer, decodes one frame for the mix, then encodes
//! the frame just mixed and hands the packet to a writer task. Decoding and encoding thus
//! happen on the tick grid, on the shard's core, with no timer of the leg's own; the async
//! side only moves packets it never looks into.
//!
//! Encodes are shared. A leg whose decoded audio is silence (a [`SilenceGate`] decides) is
//! not a talker, so the mixer gives it the room's full mix, the same for every such
//! listener; the room's WebRTC legs then send one encode of that mix ([`SharedEncoder`]),
//! and only talkers pay for an encode of their own. A room where two people talk costs two
//! private encodes and one shared one per tick, however many listen.

mod peer;

pub use peer::{
    AnswerError, Direction, IceServer, Negotiated, PeerEnd, PeerHandle, WebRtcSettings, answer,
    opus_codec,
};

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chamade_media::gate::SilenceGate;
use chamade_media::opus::{MAX_PACKET_BYTES, OpusConfig, OpusEncoder};
use chamade_media::ring::Pull;
use chamade_media::{CodecError, Frame, SampleRate};
use crossbeam_channel::{Receiver, TryRecvError};
use nix::sys::eventfd::EventFd;
use tokio::sync::mpsc;

use crate::bridge::rtp::{PacketHeader, Payload, RtpCodec, RtpError, RtpReceiver};
use crate::shard::{Endpoint, LegEnds, Step};

/// One received packet on its way from the async side to the shard.
pub struct Inbound {
    /// Its header fields.
    pub header: PacketHeader,
    /// Its Opus payload.
    pub payload: Payload<MAX_PACKET_BYTES>,
}

/// One encoded frame on its way from the shard to the writer task.
pub struct Outbound {
    /// Sequence number.
    pub sequence: u16,
    /// RTP timestamp (48 kHz units).
    pub timestamp: u32,
    /// First packet of the stream (marker bit).
    pub marker: bool,
    /// The Opus payload.
    pub payload: Payload<MAX_PACKET_BYTES>,
}

/// Packets received before the shard takes them: 16 ticks' worth. A peer flooding the
/// channel loses its newest packets, never the shard's time.
pub const INBOUND_PACKETS: usize = 16;
/// Encoded packets waiting for the writer task; the shard drops a packet rather than wait.
pub const OUTBOUND_PACKETS: usize = 8;
/// Frames kept in the output ring before pulling: the one just mixed, so that the frame
/// sent is the one [`ParticipantStats::last_output`](crate::shard::ParticipantStats::last_output) describes.
const OUTPUT_TRIM_FRAMES: usize = 1;

/// A WebRTC leg's counters, shared with its owner (and its `call_stats`).
#[derive(Debug, Default)]
pub struct WebRtcCounters {
    /// RTP packets received from the peer.
    pub rtp_in: AtomicU64,
    /// RTP packets the receiver refused (wrong payload type, empty, another source).
    pub refused: AtomicU64,
    /// Received packets dropped because the shard was behind.
    pub dropped_in: AtomicU64,
    /// RTP packets handed to the writer.
    pub rtp_out: AtomicU64,
    /// Encoded packets dropped because the writer was behind.
    pub dropped_out: AtomicU64,
    /// Frames decoded from a packet.
    pub decoded: AtomicU64,
    /// Frames concealed (lost or late packets).
    pub concealed: AtomicU64,
    /// Frames the gate held back as silence (the leg was not a talker).
    pub gated: AtomicU64,
    /// Frames sent from the room's shared encode of the full mix.
    pub shared_sends: AtomicU64,
    /// Frames encoded for this leg alone (it talked, so it hears a mix without itself).
    pub private_encodes: AtomicU64,
}

/// One Opus encode of a room's full mix per tick, for every WebRTC leg of the room that
/// received it. All of a room's legs run on the room's shard thread, one after the other,
/// so the lock is never contended; it is there to make sharing between boxed endpoints
/// sound, and a leg that ever found it taken would encode privately rather than wait.
pub struct SharedEncoder {
    inner: Mutex<SharedInner>,
}

struct SharedInner {
    encoder: OpusEncoder,
    /// Tick whose mix `payload` holds; 0 before the first.
    tick: u64,
    len: usize,
    payload: [u8; MAX_PACKET_BYTES],
    encodes: u64,
}

impl SharedEncoder {
    /// A room's shared encoder (48 kHz, the same settings as a leg's own).
    pub fn new() -> Result<SharedEncoder, CodecError> {
        Ok(SharedEncoder {
            inner: Mutex::new(SharedInner {
                encoder: OpusEncoder::new(SampleRate::HZ_48000, OpusConfig::default())?,
                tick: 0,
                len: 0,
                payload: [0; MAX_PACKET_BYTES],
                encodes: 0,
            }),
        })
    }

    /// The encode of `frame`, the shared mix of shard tick `tick`: encoded by the first leg
    /// that asks in that tick, copied for the others. `None` if it cannot be had at once.
    fn packet(&self, tick: u64, frame: &Frame) -> Option<Payload<MAX_PACKET_BYTES>> {
        let mut inner = self.inner.try_lock().ok()?;
        if inner.tick != tick {
            let SharedInner {
                encoder, payload, ..
            } = &mut *inner;
            let n = encoder.encode(frame, payload).ok()?;
            inner.len = n;
            inner.tick = tick;
            inner.encodes += 1;
        }
        Some(Payload::new(&inner.payload[..inner.len]))
    }

    /// Encodes made so far (at most one per tick).
    pub fn encodes(&self) -> u64 {
        self.inner.lock().map_or(0, |i| i.encodes)
    }
}

/// The part of a WebRTC leg that runs on the mixer shard.
pub struct WebRtcEndpoint {
    inbound: Receiver<Inbound>,
    wake: Option<Arc<EventFd>>,
    /// Frames leave as they arrive (see [`Endpoint::forward`]).
    forwarding: bool,
    outbound: mpsc::Sender<Outbound>,
    receiver: RtpReceiver,
    gate: SilenceGate,
    encoder: OpusEncoder,
    shared: Option<Arc<SharedEncoder>>,
    ends: LegEnds,
    out: Frame,
    payload: [u8; MAX_PACKET_BYTES],
    sequence: u16,
    timestamp: u32,
    first: bool,
    stop: Arc<AtomicBool>,
    counters: Arc<WebRtcCounters>,
    label: String,
}

/// What a [`WebRtcEndpoint`] is built from; see [`WebRtcEndpoint::new`].
pub struct EndpointParts {
    /// Received packets, from [`Negotiated`].
    pub inbound: Receiver<Inbound>,
    /// Signalled for each received packet, from [`Negotiated`]; without it the leg is only
    /// read on the tick and never forwards.
    pub wake: Option<Arc<EventFd>>,
    /// Where encoded packets go, from [`Negotiated`].
    pub outbound: mpsc::Sender<Outbound>,
    /// The payload type the peer sends Opus under.
    pub receive_payload_type: u8,
    /// The participant's ring ends (48 kHz both ways).
    pub ends: LegEnds,
    /// The room's shared encoder, if its legs share one.
    pub shared: Option<Arc<SharedEncoder>>,
    /// Set by the owner to take the leg off the shard.
    pub stop: Arc<AtomicBool>,
    /// Shared counters.
    pub counters: Arc<WebRtcCounters>,
    /// For logs.
    pub label: String,
    /// Random first sequence number and timestamp (RFC 3550 §5.1).
    pub first_sequence: u16,
    /// See `first_sequence`.
    pub first_timestamp: u32,
}

impl WebRtcEndpoint {
    /// Builds the shard side of a negotiated leg. Fails only if libopus cannot make a
    /// codec.
    pub fn new(parts: EndpointParts) -> Result<WebRtcEndpoint, RtpError> {
        let mut receiver = RtpReceiver::new(RtpCodec::Opus48)?;
        receiver.set_payload_type(parts.receive_payload_type);
        let encoder = OpusEncoder::new(SampleRate::HZ_48000, OpusConfig::default())?;
        Ok(WebRtcEndpoint {
            inbound: parts.inbound,
            wake: parts.wake,
            forwarding: false,
            outbound: parts.outbound,
            receiver,
            gate: SilenceGate::default(),
            encoder,
            shared: parts.shared,
            ends: parts.ends,
            out: Frame::silence(SampleRate::HZ_48000),
            payload: [0; MAX_PACKET_BYTES],
            sequence: parts.first_sequence,
            timestamp: parts.first_timestamp,
            first: true,
            stop: parts.stop,
            counters: parts.counters,
            label: parts.label,
        })
    }

    fn drain_inbound(&mut self) {
        loop {
            match self.inbound.try_recv() {
                Ok(packet) => {
                    self.counters.rtp_in.fetch_add(1, Ordering::Relaxed);
                    if self
                        .receiver
                        .on_packet(packet.header, packet.payload.bytes())
                        .is_err()
                    {
                        self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }
}

impl WebRtcEndpoint {
    /// Encodes one frame (through the room's shared encode when `shared_tick` names the
    /// tick whose shared mix it is) and hands the packet to the writer.
    fn send(&mut self, shared_tick: Option<u64>) -> Step {
        let shared = match (&self.shared, shared_tick) {
            (Some(encoder), Some(tick)) => encoder.packet(tick, &self.out),
            _ => None,
        };
        let payload = match shared {
            Some(payload) => {
                self.counters.shared_sends.fetch_add(1, Ordering::Relaxed);
                payload
            }
            None => {
                let Ok(n) = self.encoder.encode(&self.out, &mut self.payload) else {
                    return Step::Continue;
                };
                self.counters
                    .private_encodes
                    .fetch_add(1, Ordering::Relaxed);
                Payload::new(&self.payload[..n])
            }
        };
        let packet = Outbound {
            sequence: self.sequence,
            timestamp: self.timestamp,
            marker: self.first,
            payload,
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self
            .timestamp
            .wrapping_add(RtpCodec::Opus48.timestamp_step());
        self.first = false;
        match self.outbound.try_send(packet) {
            Ok(()) => {
                self.counters.rtp_out.fetch_add(1, Ordering::Relaxed);
                Step::Continue
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.dropped_out.fetch_add(1, Ordering::Relaxed);
                Step::Continue
            }
            // The writer is gone: the peer connection closed.
            Err(mpsc::error::TrySendError::Closed(_)) => Step::Done,
        }
    }
}

impl Endpoint for WebRtcEndpoint {
    fn readiness(&self) -> Option<BorrowedFd<'_>> {
        self.wake.as_deref().map(AsFd::as_fd)
    }

    fn on_readable(&mut self) -> bool {
        // One read resets the count of every packet signalled so far; the channel is then
        // drained whole.
        match self.wake.as_deref().map(EventFd::read) {
            Some(Ok(_)) => {
                self.drain_inbound();
                true
            }
            _ => false,
        }
    }

    fn can_forward(&self) -> bool {
        self.wake.is_some()
    }

    fn set_forwarding(&mut self, on: bool) {
        self.forwarding = on;
    }

    fn forward(&mut self, sink: &mut dyn FnMut(&[i16])) -> usize {
        self.drain_inbound();
        // Every frame is forwarded, silence included: the one listener keeps its cadence,
        // and there is no mix for the gate to keep it out of.
        let n = self.receiver.forward_frames(|frame| sink(frame.samples()));
        self.counters.decoded.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    fn flush_output(&mut self) -> Step {
        let frame = self.out.samples().len();
        while let Some(output) = self.ends.output.as_mut()
            && output.queued_samples() >= frame
            && output.pull_frame(self.out.samples_mut()) == Pull::Frame
        {
            if self.send(None) == Step::Done {
                return Step::Done;
            }
        }
        Step::Continue
    }

    fn before_mix(&mut self, _watched: bool) -> Step {
        if self.stop.load(Ordering::Acquire) {
            return Step::Done;
        }
        self.drain_inbound();
        if self.forwarding {
            self.receiver.skip_tick();
            return Step::Continue;
        }
        let before = self.receiver.stats();
        let frame = self.receiver.next_frame();
        // Silence is not written at all: the mixer then counts this leg as a listener.
        if self.gate.open(frame.samples()) {
            self.ends.input.push_samples(frame.samples());
        } else {
            self.counters.gated.fetch_add(1, Ordering::Relaxed);
        }
        let after = self.receiver.stats();
        self.counters
            .decoded
            .fetch_add(after.decoded - before.decoded, Ordering::Relaxed);
        self.counters
            .concealed
            .fetch_add(after.concealed - before.concealed, Ordering::Relaxed);
        Step::Continue
    }

    fn after_mix(&mut self) -> Step {
        let frame = self.out.samples().len();
        let have_frame = match self.ends.output.as_mut() {
            Some(output) => {
                // Only the frame just mixed: what `last_output` describes.
                output.trim_to(frame * OUTPUT_TRIM_FRAMES);
                output.queued_samples() >= frame
                    && output.pull_frame(self.out.samples_mut()) == Pull::Frame
            }
            None => false,
        };
        if !have_frame {
            return Step::Continue;
        }
        let (tick, was_shared) = self.ends.stats.last_output();
        self.send(was_shared.then_some(tick))
    }

    fn label(&self) -> String {
        self.label.clone()
    }
}

#[cfg(test)]
mod tests;
