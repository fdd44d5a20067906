//! Plain RTP legs (RFC 3550) with PCMU, PCMA (RFC 3551, 8 kHz) or Opus (RFC 7587, 48 or
//! 16 kHz), 20 ms per packet. Sans-IO: [`RtpReceiver`] takes datagrams as they arrive and
//! yields one decoded 20 ms frame per tick (reordered, de-duplicated and concealed through
//! the jitter buffer); [`RtpSender`] turns one frame per tick into one packet. Nothing here
//! allocates after construction.
//!
//! DTMF travels in the same stream as RFC 4733 telephone-events under their own payload
//! type: the receiver reads them into digits when told that type
//! ([`RtpReceiver::set_dtmf_payload_type`]), and the sender slots event packets between
//! audio packets on the same sequence and timestamp line ([`RtpSender::packetize_event`]).

use chamade_media::jitter::{Concealer, FrameCount, JitterBuffer, JitterConfig, Playout};
use chamade_media::opus::{MAX_PACKET_BYTES, OpusConfig, OpusDecoder, OpusEncoder};
use chamade_media::{CodecError, Frame, SampleRate, g711};
use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};

use crate::bridge::sip::dtmf::{DtmfReceiver, EVENT_PAYLOAD_BYTES, EventPacket};

/// RTP header bytes without CSRCs or extensions.
const HEADER_BYTES: usize = 12;
/// The dynamic payload type used for Opus unless negotiated otherwise.
pub const OPUS_PAYLOAD_TYPE: u8 = 111;
/// Received digits held until [`RtpReceiver::take_dtmf`]; enough for any dialled number,
/// and bounded so that a peer pressing keys into an unread leg costs nothing.
const DTMF_QUEUE: usize = 32;

/// The codecs a plain RTP leg can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RtpCodec {
    /// G.711 μ-law, payload type 0.
    Pcmu,
    /// G.711 A-law, payload type 8.
    Pcma,
    /// Opus decoded and encoded at 48 kHz (payload type 111).
    Opus48,
    /// Opus decoded and encoded at 16 kHz, for wideband media systems (payload type 111).
    Opus16,
}

impl RtpCodec {
    /// Parses the API's names: `PCMU`, `PCMA`, `opus` / `opus48`, `opus16` (any case).
    pub fn from_name(name: &str) -> Option<RtpCodec> {
        match name.to_ascii_lowercase().as_str() {
            "pcmu" => Some(RtpCodec::Pcmu),
            "pcma" => Some(RtpCodec::Pcma),
            "opus" | "opus48" => Some(RtpCodec::Opus48),
            "opus16" => Some(RtpCodec::Opus16),
            _ => None,
        }
    }

    /// The RTP payload type.
    pub fn payload_type(self) -> u8 {
        match self {
            RtpCodec::Pcmu => 0,
            RtpCodec::Pcma => 8,
            RtpCodec::Opus48 | RtpCodec::Opus16 => OPUS_PAYLOAD_TYPE,
        }
    }

    /// The rate of the PCM the leg exchanges with its rings.
    pub fn pcm_rate(self) -> SampleRate {
        match self {
            RtpCodec::Pcmu | RtpCodec::Pcma => SampleRate::HZ_8000,
            RtpCodec::Opus48 => SampleRate::HZ_48000,
            RtpCodec::Opus16 => SampleRate::HZ_16000,
        }
    }

    /// RTP timestamp units per 20 ms packet (Opus always counts at 48 kHz, RFC 7587).
    pub fn timestamp_step(self) -> u32 {
        match self {
            RtpCodec::Pcmu | RtpCodec::Pcma => 160,
            RtpCodec::Opus48 | RtpCodec::Opus16 => 960,
        }
    }
}

/// Why a datagram was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    /// Not a parsable RTP version 2 packet.
    #[error("malformed RTP packet: {0}")]
    Malformed(String),
    /// A payload type other than the leg's codec or its telephone-events (RTCP is handled
    /// elsewhere).
    #[error("unexpected payload type {0}")]
    PayloadType(u8),
    /// A payload that cannot be one 20 ms frame of the codec.
    #[error("payload of {0} bytes does not fit the codec")]
    PayloadSize(usize),
    /// The codec failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// One packet's payload, stored inline so the jitter buffer never allocates. `N` is the
/// largest payload of the codec: the buffer moves whole payloads, so G.711 legs (the many
/// legs of a large room) keep 160-byte ones instead of Opus's 1,275.
#[derive(Clone)]
pub struct Payload<const N: usize> {
    len: usize,
    data: [u8; N],
}

impl<const N: usize> Payload<N> {
    /// Copies `bytes` in; anything past `N` bytes is cut (callers check the codec's limit
    /// first and refuse such packets).
    pub fn new(bytes: &[u8]) -> Payload<N> {
        let len = bytes.len().min(N);
        let mut data = [0; N];
        data[..len].copy_from_slice(&bytes[..len]);
        Payload { len, data }
    }

    /// The payload as stored.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

/// A G.711 payload: one 20 ms frame at 8 kHz, one byte a sample.
const G711_PAYLOAD_BYTES: usize = 160;

/// The jitter buffer, sized for the codec's payloads.
enum Jitter {
    G711(JitterBuffer<Payload<G711_PAYLOAD_BYTES>>),
    Opus(JitterBuffer<Payload<MAX_PACKET_BYTES>>),
}

impl Jitter {
    fn new(codec: RtpCodec, config: JitterConfig) -> Jitter {
        match codec {
            RtpCodec::Pcmu | RtpCodec::Pcma => Jitter::G711(JitterBuffer::new(config)),
            RtpCodec::Opus48 | RtpCodec::Opus16 => Jitter::Opus(JitterBuffer::new(config)),
        }
    }

    fn push(&mut self, seq: u16, bytes: &[u8]) {
        match self {
            Jitter::G711(j) => j.push(seq, Payload::new(bytes)),
            Jitter::Opus(j) => j.push(seq, Payload::new(bytes)),
        };
    }

    /// Takes the oldest packet held, at once (forwarding), and hands its bytes to
    /// `use_bytes`.
    fn take_with<R>(&mut self, use_bytes: impl FnOnce(&[u8]) -> R) -> Option<R> {
        match self {
            Jitter::G711(j) => j.take_next().map(|p| use_bytes(p.bytes())),
            Jitter::Opus(j) => j.take_next().map(|p| use_bytes(p.bytes())),
        }
    }

    fn skip_tick(&mut self) {
        match self {
            Jitter::G711(j) => j.skip_tick(),
            Jitter::Opus(j) => j.skip_tick(),
        }
    }

    /// Pops the packet due now and hands its bytes to `use_bytes`.
    fn pop_with<R>(&mut self, use_bytes: impl FnOnce(&[u8]) -> R) -> Playout<R> {
        fn map<T, R>(p: Playout<T>, f: impl FnOnce(T) -> R) -> Playout<R> {
            match p {
                Playout::Packet(p) => Playout::Packet(f(p)),
                Playout::Lost => Playout::Lost,
                Playout::Buffering => Playout::Buffering,
            }
        }
        match self {
            Jitter::G711(j) => map(j.pop(), |p| use_bytes(p.bytes())),
            Jitter::Opus(j) => map(j.pop(), |p| use_bytes(p.bytes())),
        }
    }
}

enum Decoder {
    Pcmu,
    Pcma,
    Opus(Box<OpusDecoder>),
}

impl Decoder {
    /// Decodes one packet's payload into `frame`.
    fn decode(&mut self, bytes: &[u8], frame: &mut Frame) -> Result<(), CodecError> {
        match self {
            Decoder::Pcmu => g711::ulaw::decode(bytes, frame.samples_mut()).map(|_| ()),
            Decoder::Pcma => g711::alaw::decode(bytes, frame.samples_mut()).map(|_| ()),
            Decoder::Opus(d) => d.decode(bytes, frame).map(|_| ()),
        }
    }
}

/// Counters of a receiving leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Packets taken into the jitter buffer.
    pub packets: u64,
    /// Datagrams refused (malformed, other payload type, wrong size, another source).
    pub refused: u64,
    /// Frames decoded from a packet.
    pub decoded: u64,
    /// Frames concealed (lost or late packet).
    pub concealed: u64,
    /// Frames of silence while buffering.
    pub silent: u64,
    /// Telephone-event (DTMF) packets taken, repeats included.
    pub events: u64,
}

/// Digits received and not yet taken, oldest first; the oldest is dropped when full, since
/// a reader that far behind wants the latest keys.
struct DigitQueue {
    digits: [char; DTMF_QUEUE],
    head: usize,
    len: usize,
}

impl DigitQueue {
    fn new() -> DigitQueue {
        DigitQueue {
            digits: ['\0'; DTMF_QUEUE],
            head: 0,
            len: 0,
        }
    }

    fn push(&mut self, digit: char) {
        if self.len == DTMF_QUEUE {
            self.head = (self.head + 1) % DTMF_QUEUE;
            self.len -= 1;
        }
        self.digits[(self.head + self.len) % DTMF_QUEUE] = digit;
        self.len += 1;
    }

    fn pop(&mut self) -> Option<char> {
        if self.len == 0 {
            return None;
        }
        let digit = self.digits[self.head];
        self.head = (self.head + 1) % DTMF_QUEUE;
        self.len -= 1;
        Some(digit)
    }
}

/// The header fields a receiver reads, for packets parsed elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    /// The RTP payload type.
    pub payload_type: u8,
    /// The sequence number.
    pub sequence: u16,
    /// The media timestamp.
    pub timestamp: u32,
    /// The synchronisation source.
    pub ssrc: u32,
}

/// The receiving half of a plain RTP leg.
pub struct RtpReceiver {
    codec: RtpCodec,
    payload_type: u8,
    jitter: Jitter,
    decoder: Decoder,
    concealer: Concealer,
    ssrc: Option<u32>,
    frame: Frame,
    stats: ReceiverStats,
    dtmf_payload_type: Option<u8>,
    dtmf: DtmfReceiver,
    digits: DigitQueue,
    /// Frames in a row without a packet since the last one decoded.
    dry: u32,
}

/// The least depth of a receiving leg's adaptive jitter buffer: one frame, so that on a
/// clean network the tick mixes a packet with at most 20 ms of buffering. It deepens from
/// there under jitter and shrinks back to it. (A two-party call does not use it at all: its
/// frames are forwarded as they arrive.)
const RECEIVE_JITTER_FLOOR: FrameCount = FrameCount::new(1);

/// Frames a stream that runs dry is bridged with concealment before it falls silent: a
/// buffer that runs dry mid-stream (a stall longer than its depth) must sound like a loss,
/// not a cut.
const BRIDGED_DRY_FRAMES: u32 = 3;

impl RtpReceiver {
    /// A receiver for `codec` with an adaptive jitter buffer from 20 ms.
    pub fn new(codec: RtpCodec) -> Result<RtpReceiver, RtpError> {
        let rate = codec.pcm_rate();
        let decoder = match codec {
            RtpCodec::Pcmu => Decoder::Pcmu,
            RtpCodec::Pcma => Decoder::Pcma,
            RtpCodec::Opus48 | RtpCodec::Opus16 => Decoder::Opus(Box::new(OpusDecoder::new(rate)?)),
        };
        Ok(RtpReceiver {
            payload_type: codec.payload_type(),
            codec,
            jitter: Jitter::new(
                codec,
                JitterConfig::adaptive(RECEIVE_JITTER_FLOOR, JitterConfig::DEFAULT_MAX_DEPTH)
                    .unwrap_or_default(),
            ),
            decoder,
            concealer: Concealer::new(rate, FrameCount::new(3)),
            ssrc: None,
            frame: Frame::silence(rate),
            stats: ReceiverStats::default(),
            dtmf_payload_type: None,
            dtmf: DtmfReceiver::new(),
            digits: DigitQueue::new(),
            dry: 0,
        })
    }

    /// Sets the audio payload type the peer negotiated, when it is not the codec's static
    /// one (PCMU offered as a dynamic type, Opus under another number than 111).
    pub fn set_payload_type(&mut self, pt: u8) {
        self.payload_type = pt & 0x7f;
    }

    /// Sets the negotiated telephone-event payload type, or `None` when DTMF was not
    /// negotiated: packets of that type are then read as digits (see
    /// [`RtpReceiver::take_dtmf`]) instead of being refused. The audio payload type wins if
    /// both are the same.
    pub fn set_dtmf_payload_type(&mut self, pt: Option<u8>) {
        self.dtmf_payload_type = pt;
    }

    /// The oldest received DTMF digit not yet taken. Each keypress is given once, however
    /// many packets carried it.
    pub fn take_dtmf(&mut self) -> Option<char> {
        self.digits.pop()
    }

    /// Takes one datagram. The first packet's SSRC is locked in; another source is refused
    /// (a new stream must open a new leg).
    pub fn on_datagram(&mut self, datagram: &[u8]) -> Result<(), RtpError> {
        let result = self.accept(datagram);
        if result.is_err() {
            self.stats.refused += 1;
        }
        result
    }

    /// Takes one packet another stack has already parsed and decrypted (a WebRTC track
    /// hands over header fields and payload, not a datagram), under the same rules as
    /// [`RtpReceiver::on_datagram`].
    pub fn on_packet(&mut self, header: PacketHeader, payload: &[u8]) -> Result<(), RtpError> {
        let result = self.accept_parts(header, payload);
        if result.is_err() {
            self.stats.refused += 1;
        }
        result
    }

    fn accept(&mut self, datagram: &[u8]) -> Result<(), RtpError> {
        let packet = RtpReader::new(datagram).map_err(|e| RtpError::Malformed(format!("{e:?}")))?;
        let header = PacketHeader {
            payload_type: packet.payload_type(),
            sequence: u16::from(packet.sequence_number()),
            timestamp: packet.timestamp(),
            ssrc: packet.ssrc(),
        };
        self.accept_parts(header, packet.payload())
    }

    fn accept_parts(&mut self, header: PacketHeader, payload: &[u8]) -> Result<(), RtpError> {
        if header.payload_type != self.payload_type {
            if Some(header.payload_type) == self.dtmf_payload_type {
                return self.accept_event(header, payload);
            }
            return Err(RtpError::PayloadType(header.payload_type));
        }
        let fits = match self.codec {
            RtpCodec::Pcmu | RtpCodec::Pcma => payload.len() == G711_PAYLOAD_BYTES,
            RtpCodec::Opus48 | RtpCodec::Opus16 => {
                !payload.is_empty() && payload.len() <= MAX_PACKET_BYTES
            }
        };
        if !fits {
            return Err(RtpError::PayloadSize(payload.len()));
        }
        self.check_source(header.ssrc)?;
        self.jitter.push(header.sequence, payload);
        self.stats.packets += 1;
        Ok(())
    }

    /// Telephone-events come from the same source as the audio (RFC 4733 §2.1), so a
    /// foreign stream cannot inject keypresses either.
    fn accept_event(&mut self, header: PacketHeader, payload: &[u8]) -> Result<(), RtpError> {
        if payload.len() < EVENT_PAYLOAD_BYTES {
            return Err(RtpError::PayloadSize(payload.len()));
        }
        self.check_source(header.ssrc)?;
        self.stats.events += 1;
        if let Some(digit) = self.dtmf.on_event(header.timestamp, payload) {
            self.digits.push(digit);
        }
        Ok(())
    }

    /// Locks in the first packet's SSRC and refuses any other.
    fn check_source(&mut self, ssrc: u32) -> Result<(), RtpError> {
        match self.ssrc {
            None => self.ssrc = Some(ssrc),
            Some(locked) if locked != ssrc => {
                return Err(RtpError::Malformed(format!("unexpected SSRC {ssrc:#x}")));
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// The frame for this tick: decoded, concealed or silent, at [`RtpCodec::pcm_rate`].
    pub fn next_frame(&mut self) -> &Frame {
        let (decoder, frame) = (&mut self.decoder, &mut self.frame);
        let popped = self.jitter.pop_with(|bytes| decoder.decode(bytes, frame));
        match popped {
            Playout::Packet(decoded) => match decoded {
                Ok(()) => {
                    self.concealer.good(&mut self.frame);
                    self.stats.decoded += 1;
                    self.dry = 0;
                }
                Err(_) => self.conceal(),
            },
            Playout::Lost => self.conceal(),
            Playout::Buffering if self.stats.decoded > 0 && self.dry < BRIDGED_DRY_FRAMES => {
                self.conceal();
            }
            Playout::Buffering => {
                self.frame.samples_mut().fill(0);
                self.stats.silent += 1;
            }
        }
        &self.frame
    }

    /// Forwarding: decodes every packet that can play now, oldest first, without jitter
    /// delay, and hands each frame to `sink`; returns the frames handed over. A gap is passed
    /// over (the stream is forwarded as it arrives, as a pass-through gateway would).
    /// [`skip_tick`](Self::skip_tick) must then stand in for [`next_frame`](Self::next_frame)
    /// on every tick.
    pub fn forward_frames(&mut self, mut sink: impl FnMut(&Frame)) -> usize {
        let mut n = 0;
        loop {
            let (decoder, frame) = (&mut self.decoder, &mut self.frame);
            let taken = self.jitter.take_with(|bytes| decoder.decode(bytes, frame));
            match taken {
                None => return n,
                Some(Ok(())) => {
                    self.concealer.good(&mut self.frame);
                    self.stats.decoded += 1;
                    self.dry = 0;
                    sink(&self.frame);
                    n += 1;
                }
                // An undecodable packet is dropped: forwarding conceals nothing.
                Some(Err(_)) => self.stats.refused += 1,
            }
        }
    }

    /// A tick passes while the leg forwards: the jitter buffer's clock moves on so that
    /// ticked playout resumes with a true jitter estimate.
    pub fn skip_tick(&mut self) {
        self.jitter.skip_tick();
    }

    fn conceal(&mut self) {
        self.stats.concealed += 1;
        self.dry = self.dry.saturating_add(1);
        if let Decoder::Opus(d) = &mut self.decoder
            && d.conceal(&mut self.frame).is_ok()
        {
            return;
        }
        self.concealer.conceal(&mut self.frame);
    }

    /// The receiver's counters.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }
}

enum Encoder {
    Pcmu,
    Pcma,
    Opus(Box<OpusEncoder>),
}

/// The sending half of a plain RTP leg.
pub struct RtpSender {
    codec: RtpCodec,
    payload_type: u8,
    encoder: Encoder,
    ssrc: u32,
    seq: Seq,
    timestamp: u32,
    event_timestamp: u32,
    payload: [u8; MAX_PACKET_BYTES],
    packet: [u8; HEADER_BYTES + MAX_PACKET_BYTES],
}

impl RtpSender {
    /// A sender for `codec` with the given SSRC and starting sequence number and timestamp
    /// (random in production, fixed in tests).
    pub fn new(
        codec: RtpCodec,
        ssrc: u32,
        first_seq: u16,
        first_timestamp: u32,
    ) -> Result<RtpSender, RtpError> {
        let encoder = match codec {
            RtpCodec::Pcmu => Encoder::Pcmu,
            RtpCodec::Pcma => Encoder::Pcma,
            RtpCodec::Opus48 | RtpCodec::Opus16 => Encoder::Opus(Box::new(OpusEncoder::new(
                codec.pcm_rate(),
                OpusConfig::default(),
            )?)),
        };
        Ok(RtpSender {
            payload_type: codec.payload_type(),
            codec,
            encoder,
            ssrc,
            seq: Seq::from(first_seq),
            timestamp: first_timestamp,
            event_timestamp: first_timestamp,
            payload: [0; MAX_PACKET_BYTES],
            packet: [0; HEADER_BYTES + MAX_PACKET_BYTES],
        })
    }

    /// Sends audio under the payload type the peer negotiated instead of the codec's
    /// static one.
    pub fn set_payload_type(&mut self, pt: u8) {
        self.payload_type = pt & 0x7f;
    }

    /// Encodes one 20 ms frame at [`RtpCodec::pcm_rate`] into the next packet.
    pub fn packetize(&mut self, frame: &Frame) -> Result<&[u8], RtpError> {
        let n = match &mut self.encoder {
            Encoder::Pcmu => g711::ulaw::encode(frame.samples(), &mut self.payload)?,
            Encoder::Pcma => g711::alaw::encode(frame.samples(), &mut self.payload)?,
            Encoder::Opus(e) => e.encode(frame, &mut self.payload)?,
        };
        let len = RtpPacketBuilder::new()
            .payload_type(self.payload_type)
            .ssrc(self.ssrc)
            .sequence(self.seq)
            .timestamp(self.timestamp)
            .payload(&self.payload[..n])
            .build_into(&mut self.packet)
            .map_err(|e| RtpError::Malformed(format!("{e:?}")))?;
        self.seq = self.seq.next();
        self.timestamp = self.timestamp.wrapping_add(self.codec.timestamp_step());
        Ok(&self.packet[..len])
    }

    /// Puts one telephone-event packet (from
    /// [`DtmfSender::next`](crate::bridge::sip::dtmf::DtmfSender::next)) in place of this
    /// packet time's audio, on the audio's SSRC and sequence numbers. The event's timestamp
    /// is the audio timestamp when its first packet (`new_event`) is sent and stays for all
    /// its packets (RFC 4733 §2.5.1.2), while the audio timestamp still moves one packet
    /// step per call so audio resumes in time.
    ///
    /// The event durations count 8 kHz units, so this is for G.711 legs, whose
    /// telephone-events share the audio's 8 kHz clock.
    pub fn packetize_event(&mut self, payload_type: u8, packet: &EventPacket) -> &[u8] {
        if packet.new_event {
            self.event_timestamp = self.timestamp;
        }
        let [s0, s1] = u16::from(self.seq).to_be_bytes();
        let [t0, t1, t2, t3] = self.event_timestamp.to_be_bytes();
        let [c0, c1, c2, c3] = self.ssrc.to_be_bytes();
        let header = [
            0x80, // V=2, no padding, extension or CSRCs
            (u8::from(packet.marker) << 7) | (payload_type & 0x7F),
            s0,
            s1,
            t0,
            t1,
            t2,
            t3,
            c0,
            c1,
            c2,
            c3,
        ];
        let len = HEADER_BYTES + EVENT_PAYLOAD_BYTES;
        self.packet[..HEADER_BYTES].copy_from_slice(&header);
        self.packet[HEADER_BYTES..len].copy_from_slice(&packet.payload);
        self.seq = self.seq.next();
        self.timestamp = self.timestamp.wrapping_add(self.codec.timestamp_step());
        &self.packet[..len]
    }
}

#[cfg(test)]
mod tests;
