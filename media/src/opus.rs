//! Opus encoding and decoding of 20 ms mono frames: the codec of the WebRTC, Discord and
//! wideband RTP legs.
//!
//! Wraps libopus through `opus2`, the binding songbird already uses, so one libopus serves
//! every leg. Encoder and decoder states are created once per leg in a constructor; the
//! per-frame calls (`encode`, `decode`, `conceal`, `decode_fec`) write into caller-owned
//! buffers and allocate nothing (libopus keeps its scratch space on the stack).
//!
//! Every call works on exactly one 20 ms [`Frame`]. A packet of another duration is
//! refused rather than half-decoded, so the jitter buffer always gets whole frames.
//!
//! [`CodecError`] lives here and also serves [`crate::g711`].

use crate::{Frame, SampleRate};

/// The largest packet one 20 ms Opus frame can occupy: a 1,275-byte frame, the RFC 6716
/// §3.2.1 limit, plus its TOC byte.
///
/// An encode buffer of this size never runs short: libopus caps a 20 ms packet there, and
/// 1,275 bytes every 20 ms is 510 kbit/s, Opus's top bitrate. The decoder refuses anything
/// longer. Only padding (RFC 6716 §3.2.5) could make a legal 20 ms packet bigger, and no
/// encoder pads that far.
pub const MAX_PACKET_BYTES: usize = 1_276;

/// The rates libopus runs at natively; anything else must be resampled first.
const OPUS_RATES_HZ: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];

/// Why a codec call failed.
///
/// Shared by Opus and G.711 so a leg handles one error type whichever codec it negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Opus only runs at 8, 12, 16, 24 and 48 kHz; other rates must be resampled first.
    #[error("Opus does not run at {0}; it supports 8, 12, 16, 24 and 48 kHz")]
    UnsupportedRate(SampleRate),
    /// The frame's rate is not the rate the codec state was built for.
    #[error("the codec runs at {expected} but the frame is at {got}")]
    RateMismatch {
        /// The codec's rate.
        expected: SampleRate,
        /// The frame's rate.
        got: SampleRate,
    },
    /// The requested bitrate is outside what Opus can produce.
    #[error("Opus bitrate {0} bit/s is outside 6000..=510000")]
    BitrateOutOfRange(u32),
    /// The requested complexity is outside libopus's 0 (cheapest) to 10 (best) scale.
    #[error("Opus complexity {0} is outside 0..=10")]
    ComplexityOutOfRange(u8),
    /// The expected packet loss is not a percentage.
    #[error("expected packet loss {0} % is outside 0..=100")]
    LossPercentOutOfRange(u8),
    /// The output slice cannot hold the whole result; nothing was written.
    #[error("output holds {got} items but {needed} are needed")]
    OutputTooSmall {
        /// Items (bytes or samples) the call would write.
        needed: usize,
        /// Items the output can hold.
        got: usize,
    },
    /// The packet buffer given to the Opus encoder is too small even for a minimal packet.
    #[error("an Opus packet buffer of {0} bytes is too small; {MAX_PACKET_BYTES} always suffice")]
    PacketBufferTooSmall(usize),
    /// An empty packet: a lost packet is concealed with `conceal`, not decoded.
    #[error("empty Opus packet; conceal a lost packet instead of decoding it")]
    EmptyPacket,
    /// The packet is longer than any 20 ms Opus frame can be.
    #[error("Opus packet of {len} bytes exceeds the {max}-byte limit of a 20 ms frame")]
    PacketTooLong {
        /// Bytes received.
        len: usize,
        /// The limit, [`MAX_PACKET_BYTES`].
        max: usize,
    },
    /// The packet is valid Opus but does not carry exactly 20 ms of audio.
    #[error("Opus packet carries {got} samples but a 20 ms frame at {rate} holds {expected}")]
    WrongPacketDuration {
        /// The decoder's rate.
        rate: SampleRate,
        /// Samples per channel the packet would decode to.
        got: usize,
        /// Samples in a 20 ms frame at that rate.
        expected: usize,
    },
    /// libopus found the packet's structure invalid (RFC 6716 §3.4).
    #[error("corrupt Opus packet")]
    CorruptPacket,
    /// Any other libopus failure, with the function and libopus's own explanation.
    #[error("libopus {function} failed: {reason}")]
    Library {
        /// The libopus function that failed.
        function: &'static str,
        /// libopus's description of the error code.
        reason: &'static str,
    },
}

impl CodecError {
    /// Whether the input packet was at fault, so the right response is to conceal this frame
    /// and carry on. Otherwise the caller or its configuration has a bug.
    ///
    /// Lets a leg treat a peer's garbage like a lost packet without hiding its own mistakes.
    pub fn should_conceal(&self) -> bool {
        matches!(
            self,
            CodecError::EmptyPacket
                | CodecError::PacketTooLong { .. }
                | CodecError::WrongPacketDuration { .. }
                | CodecError::CorruptPacket
        )
    }

    fn from_opus(err: &opus2::Error) -> CodecError {
        match err.code() {
            opus2::ErrorCode::InvalidPacket => CodecError::CorruptPacket,
            _ => CodecError::Library {
                function: err.function(),
                reason: err.description(),
            },
        }
    }
}

/// Refuses rates libopus cannot run at, before any state is built.
fn check_rate(rate: SampleRate) -> Result<(), CodecError> {
    if OPUS_RATES_HZ.contains(&rate.hz()) {
        Ok(())
    } else {
        Err(CodecError::UnsupportedRate(rate))
    }
}

/// Refuses a frame at another rate than the codec state's.
fn check_frame_rate(expected: SampleRate, frame: &Frame) -> Result<(), CodecError> {
    if frame.rate() == expected {
        Ok(())
    } else {
        Err(CodecError::RateMismatch {
            expected,
            got: frame.rate(),
        })
    }
}

/// Encoder settings, fixed for the life of an [`OpusEncoder`].
///
/// The defaults suit a voice leg: 32 kbit/s gives near-transparent wideband speech, and
/// complexity 5 halves libopus's CPU cost against 10 for a barely audible loss. In-band FEC
/// with an assumed 10 % loss lets the far end rebuild a lost frame from the next packet.
/// DTX stays off because the mixer sends a packet every tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusConfig {
    /// Target bitrate in bit/s, 6,000..=510,000.
    pub bitrate_bps: u32,
    /// CPU/quality trade-off, 0..=10.
    pub complexity: u8,
    /// Whether to embed a low-bitrate copy of the previous frame (SILK and hybrid modes) for
    /// [`OpusDecoder::decode_fec`].
    pub inband_fec: bool,
    /// The packet loss the encoder plans its FEC for, 0..=100 %. libopus adds no FEC at 0.
    pub expected_loss_percent: u8,
    /// Discontinuous transmission: during silence the encoder returns packets of 2 bytes or
    /// fewer, which need not be sent, and refreshes the far end's comfort noise with a full
    /// packet every 400 ms.
    pub dtx: bool,
}

impl Default for OpusConfig {
    fn default() -> Self {
        OpusConfig {
            bitrate_bps: 32_000,
            complexity: 5,
            inband_fec: true,
            expected_loss_percent: 10,
            dtx: false,
        }
    }
}

impl OpusConfig {
    fn check(&self) -> Result<(), CodecError> {
        if !(6_000..=510_000).contains(&self.bitrate_bps) {
            return Err(CodecError::BitrateOutOfRange(self.bitrate_bps));
        }
        if self.complexity > 10 {
            return Err(CodecError::ComplexityOutOfRange(self.complexity));
        }
        if self.expected_loss_percent > 100 {
            return Err(CodecError::LossPercentOutOfRange(
                self.expected_loss_percent,
            ));
        }
        Ok(())
    }
}

/// An Opus encoder for one mono leg, in VoIP mode, producing one packet per 20 ms frame.
#[derive(Debug)]
pub struct OpusEncoder {
    inner: opus2::Encoder,
    rate: SampleRate,
    lookahead: usize,
}

impl OpusEncoder {
    /// Builds the encoder state once for the life of a leg, refusing rates Opus cannot run
    /// at and out-of-range settings.
    ///
    /// ```
    /// use chamade_media::opus::{CodecError, MAX_PACKET_BYTES, OpusConfig, OpusEncoder};
    /// use chamade_media::{Frame, SampleRate};
    ///
    /// let mut encoder = OpusEncoder::new(SampleRate::HZ_48000, OpusConfig::default())?;
    /// let mut packet = [0u8; MAX_PACKET_BYTES];
    /// let len = encoder.encode(&Frame::silence(SampleRate::HZ_48000), &mut packet)?;
    /// assert!(len > 0 && len <= MAX_PACKET_BYTES);
    ///
    /// let rate = SampleRate::HZ_44100;
    /// assert_eq!(
    ///     OpusEncoder::new(rate, OpusConfig::default()).err(),
    ///     Some(CodecError::UnsupportedRate(rate))
    /// );
    /// # Ok::<(), CodecError>(())
    /// ```
    pub fn new(rate: SampleRate, config: OpusConfig) -> Result<OpusEncoder, CodecError> {
        check_rate(rate)?;
        config.check()?;
        let lib = |err: opus2::Error| CodecError::from_opus(&err);
        let mut inner =
            opus2::Encoder::new(rate.hz(), opus2::Channels::Mono, opus2::Application::Voip)
                .map_err(lib)?;
        // The checks above keep every value in i32 range.
        inner
            .set_bitrate(opus2::Bitrate::Bits(config.bitrate_bps as i32))
            .map_err(lib)?;
        inner
            .set_complexity(i32::from(config.complexity))
            .map_err(lib)?;
        inner.set_inband_fec(config.inband_fec).map_err(lib)?;
        inner
            .set_packet_loss_perc(i32::from(config.expected_loss_percent))
            .map_err(lib)?;
        inner.set_dtx(config.dtx).map_err(lib)?;
        let lookahead = inner.get_lookahead().map_err(lib)?;
        Ok(OpusEncoder {
            inner,
            rate,
            // libopus reports a small non-negative sample count.
            lookahead: usize::try_from(lookahead).unwrap_or(0),
        })
    }

    /// The rate the encoder takes frames at.
    pub fn rate(&self) -> SampleRate {
        self.rate
    }

    /// Samples by which the decoded audio lags the input (2.5 ms plus the VoIP delay
    /// compensation, 6.5 ms in all). Exposed so tests and echo paths can align signals.
    pub fn lookahead(&self) -> usize {
        self.lookahead
    }

    /// Encodes one 20 ms frame into `out` and returns the packet's length.
    ///
    /// An `out` of [`MAX_PACKET_BYTES`] always suffices; a longer one is not used beyond
    /// that. With DTX on, a result of 2 bytes or fewer marks silence that need not be sent.
    pub fn encode(&mut self, frame: &Frame, out: &mut [u8]) -> Result<usize, CodecError> {
        check_frame_rate(self.rate, frame)?;
        let limit = out.len().min(MAX_PACKET_BYTES);
        let out = &mut out[..limit];
        self.inner
            .encode(frame.samples(), out)
            .map_err(|err| match err.code() {
                opus2::ErrorCode::BufferTooSmall => CodecError::PacketBufferTooSmall(limit),
                _ => CodecError::from_opus(&err),
            })
    }
}

/// An Opus decoder for one mono stream, turning each packet into one 20 ms frame and
/// concealing lost ones.
#[derive(Debug)]
pub struct OpusDecoder {
    inner: opus2::Decoder,
    rate: SampleRate,
}

impl OpusDecoder {
    /// Builds the decoder state once for the life of a stream.
    ///
    /// Opus packets decode at any of its rates whatever rate they were encoded at, so the
    /// decoder's rate is the rate the leg wants to hear, not the sender's.
    ///
    /// ```
    /// use chamade_media::opus::{CodecError, OpusDecoder};
    /// use chamade_media::{Frame, SampleRate};
    ///
    /// let mut decoder = OpusDecoder::new(SampleRate::HZ_16000)?;
    /// let mut frame = Frame::silence(SampleRate::HZ_16000);
    /// assert_eq!(decoder.conceal(&mut frame)?, 320);
    /// assert_eq!(decoder.decode(&[], &mut frame), Err(CodecError::EmptyPacket));
    /// # Ok::<(), CodecError>(())
    /// ```
    pub fn new(rate: SampleRate) -> Result<OpusDecoder, CodecError> {
        check_rate(rate)?;
        let inner = opus2::Decoder::new(rate.hz(), opus2::Channels::Mono)
            .map_err(|err| CodecError::from_opus(&err))?;
        Ok(OpusDecoder { inner, rate })
    }

    /// The rate the decoder produces frames at.
    pub fn rate(&self) -> SampleRate {
        self.rate
    }

    /// Decodes one packet carrying exactly 20 ms into `out` and returns the samples written
    /// (always `out.rate().frame_samples()`).
    ///
    /// Refuses empty, over-long, corrupt and non-20 ms packets; on error the contents of
    /// `out` are unspecified and the caller should conceal (see
    /// [`CodecError::should_conceal`]).
    pub fn decode(&mut self, packet: &[u8], out: &mut Frame) -> Result<usize, CodecError> {
        self.check_packet(packet, out)?;
        self.run(packet, out, false)
    }

    /// Fills `out` with a concealment of a lost packet (libopus PLC), fading towards
    /// silence as losses continue, and returns the samples written.
    pub fn conceal(&mut self, out: &mut Frame) -> Result<usize, CodecError> {
        check_frame_rate(self.rate, out)?;
        self.run(&[], out, false)
    }

    /// Rebuilds the frame *before* `next_packet` from the FEC copy the sender embedded in
    /// it, and returns the samples written.
    ///
    /// Call it when packet N is lost and N+1 has arrived, then decode N+1 normally. If
    /// N+1 carries no FEC, libopus conceals instead, so this is never worse than
    /// [`conceal`](Self::conceal).
    pub fn decode_fec(&mut self, next_packet: &[u8], out: &mut Frame) -> Result<usize, CodecError> {
        self.check_packet(next_packet, out)?;
        self.run(next_packet, out, true)
    }

    /// The checks a packet must pass before libopus sees it.
    fn check_packet(&self, packet: &[u8], out: &Frame) -> Result<(), CodecError> {
        check_frame_rate(self.rate, out)?;
        if packet.is_empty() {
            return Err(CodecError::EmptyPacket);
        }
        if packet.len() > MAX_PACKET_BYTES {
            return Err(CodecError::PacketTooLong {
                len: packet.len(),
                max: MAX_PACKET_BYTES,
            });
        }
        let expected = self.rate.frame_samples();
        let got = opus2::packet::get_nb_samples(packet, self.rate.hz())
            .map_err(|err| CodecError::from_opus(&err))?;
        if got != expected {
            return Err(CodecError::WrongPacketDuration {
                rate: self.rate,
                got,
                expected,
            });
        }
        Ok(())
    }

    fn run(&mut self, packet: &[u8], out: &mut Frame, fec: bool) -> Result<usize, CodecError> {
        let expected = self.rate.frame_samples();
        let written = self
            .inner
            .decode(packet, out.samples_mut(), fec)
            .map_err(|err| CodecError::from_opus(&err))?;
        if written == expected {
            Ok(written)
        } else {
            // Unreachable after `check_packet`, kept so a short decode can never pass as a
            // whole frame.
            Err(CodecError::WrongPacketDuration {
                rate: self.rate,
                got: written,
                expected,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic xorshift so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn tone(rate: SampleRate, hz: f64, amplitude: f64, samples: usize) -> Vec<i16> {
        let step = 2.0 * std::f64::consts::PI * hz / f64::from(rate.hz());
        (0..samples)
            .map(|n| (amplitude * (step * n as f64).sin()).round() as i16)
            .collect()
    }

    /// Encodes `input` frame by frame with default settings, decodes every packet and
    /// returns the decoded stream and the encoder's lookahead.
    fn round_trip(rate: SampleRate, input: &[i16]) -> (Vec<i16>, usize) {
        let mut encoder = OpusEncoder::new(rate, OpusConfig::default()).expect("encoder");
        let mut decoder = OpusDecoder::new(rate).expect("decoder");
        let mut packet = [0u8; MAX_PACKET_BYTES];
        let mut decoded = Frame::silence(rate);
        let mut output = Vec::with_capacity(input.len());
        for chunk in input.chunks_exact(rate.frame_samples()) {
            let frame = Frame::from_samples(rate, chunk).expect("whole frame");
            let len = encoder.encode(&frame, &mut packet).expect("encode");
            let n = decoder
                .decode(&packet[..len], &mut decoded)
                .expect("decode");
            assert_eq!(n, rate.frame_samples());
            output.extend_from_slice(decoded.samples());
        }
        (output, encoder.lookahead())
    }

    struct Alignment {
        lag: usize,
        correlation: f64,
        snr_db: f64,
    }

    /// Finds the lag in `lags` that best lines `output` up with `input`, comparing from
    /// `skip` onwards so the codec's start-up transient is left out.
    fn align(
        input: &[i16],
        output: &[i16],
        skip: usize,
        lags: std::ops::RangeInclusive<usize>,
    ) -> Alignment {
        let span = output.len() - skip - lags.end();
        let measure = |lag: usize| {
            let (mut xy, mut xx, mut yy, mut err) = (0.0, 0.0, 0.0, 0.0);
            for i in skip..skip + span {
                let x = f64::from(input[i]);
                let y = f64::from(output[i + lag]);
                xy += x * y;
                xx += x * x;
                yy += y * y;
                err += (x - y) * (x - y);
            }
            let correlation = xy / (xx * yy).sqrt().max(f64::MIN_POSITIVE);
            let snr_db = 10.0 * (xx / err.max(f64::MIN_POSITIVE)).log10();
            Alignment {
                lag,
                correlation,
                snr_db,
            }
        };
        lags.map(measure)
            .max_by(|a, b| a.correlation.total_cmp(&b.correlation))
            .expect("at least one lag")
    }

    fn rms(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
        (sum / samples.len() as f64).sqrt()
    }

    /// Round-trips one second of a tone and aligns the result near the lookahead.
    ///
    /// A tone repeats every period, so the lag is searched within ±0.5 ms of the
    /// lookahead (the delay itself is pinned down with noise in its own test).
    fn tone_round_trip(rate: SampleRate, hz: f64) -> Alignment {
        let input = tone(rate, hz, 12_000.0, rate.hz() as usize);
        let (output, lookahead) = round_trip(rate, &input);
        let skip = rate.frame_samples() * 5;
        let window = rate.ms_to_samples(1) / 2;
        let found = align(
            &input,
            &output,
            skip,
            lookahead - window..=lookahead + window,
        );
        eprintln!(
            "{rate} {hz} Hz: lookahead {lookahead}, best lag {}, correlation {:.5}, SNR {:.1} dB",
            found.lag, found.correlation, found.snr_db
        );
        found
    }

    #[test]
    fn decoded_audio_lags_by_the_lookahead() {
        for rate in [SampleRate::HZ_48000, SampleRate::HZ_16000] {
            let mut rng = Rng(42);
            let input: Vec<i16> = (0..rate.hz())
                .map(|_| (rng.next() % 16_001) as i16 - 8_000)
                .collect();
            let (output, lookahead) = round_trip(rate, &input);
            let found = align(&input, &output, rate.frame_samples() * 5, 0..=960);
            eprintln!(
                "{rate} noise: lookahead {lookahead}, best lag {}, correlation {:.3}",
                found.lag, found.correlation
            );
            assert_eq!(found.lag, lookahead, "{rate}");
        }
    }

    #[test]
    fn tone_440_hz_survives_a_48k_round_trip() {
        let found = tone_round_trip(SampleRate::HZ_48000, 440.0);
        assert!(
            found.correlation >= 0.99,
            "correlation {}",
            found.correlation
        );
        assert!(found.snr_db >= 20.0, "SNR {} dB", found.snr_db);
    }

    #[test]
    fn tone_1_khz_survives_a_48k_round_trip() {
        let found = tone_round_trip(SampleRate::HZ_48000, 1_000.0);
        assert!(
            found.correlation >= 0.99,
            "correlation {}",
            found.correlation
        );
        assert!(found.snr_db >= 20.0, "SNR {} dB", found.snr_db);
    }

    #[test]
    fn tones_survive_a_16k_round_trip() {
        // Measured: 440 Hz 0.9991 / 27.3 dB, 1 kHz 0.9954 / 20.4 dB. At 16 kHz libopus
        // codes speech-band audio with SILK, which models rather than matches the waveform.
        for hz in [440.0, 1_000.0] {
            let found = tone_round_trip(SampleRate::HZ_16000, hz);
            assert!(
                found.correlation >= 0.98,
                "{hz} Hz correlation {}",
                found.correlation
            );
            assert!(found.snr_db >= 15.0, "{hz} Hz SNR {} dB", found.snr_db);
        }
    }

    #[test]
    fn every_opus_rate_round_trips_a_frame() {
        for hz in OPUS_RATES_HZ {
            let rate = SampleRate::new(hz).expect("valid rate");
            let input = tone(rate, 300.0, 8_000.0, rate.frame_samples() * 10);
            let (output, _) = round_trip(rate, &input);
            assert_eq!(output.len(), input.len(), "{rate}");
        }
    }

    /// Encodes `frames` frames of a 440 Hz tone at 48 kHz into packets.
    fn tone_packets(config: OpusConfig, frames: usize) -> (Vec<Vec<i16>>, Vec<Vec<u8>>) {
        let rate = SampleRate::HZ_48000;
        let input = tone(rate, 440.0, 12_000.0, rate.frame_samples() * frames);
        let mut encoder = OpusEncoder::new(rate, config).expect("encoder");
        let mut packet = [0u8; MAX_PACKET_BYTES];
        let mut frames_in = Vec::new();
        let mut packets = Vec::new();
        for chunk in input.chunks_exact(rate.frame_samples()) {
            let frame = Frame::from_samples(rate, chunk).expect("whole frame");
            let len = encoder.encode(&frame, &mut packet).expect("encode");
            frames_in.push(chunk.to_vec());
            packets.push(packet[..len].to_vec());
        }
        (frames_in, packets)
    }

    #[test]
    fn concealment_fills_a_whole_frame_no_louder_than_the_last_good_one() {
        let (_, packets) = tone_packets(OpusConfig::default(), 20);
        let mut decoder = OpusDecoder::new(SampleRate::HZ_48000).expect("decoder");
        let mut frame = Frame::silence(SampleRate::HZ_48000);
        for packet in &packets {
            decoder.decode(packet, &mut frame).expect("decode");
        }
        let last_good = rms(frame.samples());
        assert_eq!(decoder.conceal(&mut frame), Ok(960));
        let concealed = rms(frame.samples());
        eprintln!("last good RMS {last_good:.0}, concealed RMS {concealed:.0}");
        assert!(concealed > 0.0, "concealment continues the signal");
        assert!(concealed <= last_good, "{concealed} > {last_good}");
    }

    #[test]
    fn concealment_fades_over_consecutive_losses() {
        let (_, packets) = tone_packets(OpusConfig::default(), 20);
        let mut decoder = OpusDecoder::new(SampleRate::HZ_48000).expect("decoder");
        let mut frame = Frame::silence(SampleRate::HZ_48000);
        for packet in &packets {
            decoder.decode(packet, &mut frame).expect("decode");
        }
        let mut levels = Vec::new();
        for _ in 0..10 {
            assert_eq!(decoder.conceal(&mut frame), Ok(960));
            levels.push(rms(frame.samples()));
        }
        eprintln!("concealed RMS over 10 losses: {levels:.0?}");
        assert!(levels[9] < levels[0] / 4.0, "{levels:?}");
    }

    #[test]
    fn concealment_before_any_packet_is_silence() {
        let mut decoder = OpusDecoder::new(SampleRate::HZ_48000).expect("decoder");
        let mut frame = Frame::from_samples(SampleRate::HZ_48000, &[1_000; 960]).expect("frame");
        assert_eq!(decoder.conceal(&mut frame), Ok(960));
        assert!(frame.is_silent());
    }

    #[test]
    fn fec_rebuilds_a_lost_frame_at_least_as_well_as_concealment() {
        let (frames_in, packets) = tone_packets(OpusConfig::default(), 30);
        let lost = 20;
        let rate = SampleRate::HZ_48000;
        let error_energy = |with_fec: bool| {
            let mut decoder = OpusDecoder::new(rate).expect("decoder");
            let mut frame = Frame::silence(rate);
            let mut output = Vec::new();
            for (i, packet) in packets.iter().enumerate() {
                if i == lost {
                    let n = if with_fec {
                        decoder.decode_fec(&packets[i + 1], &mut frame)
                    } else {
                        decoder.conceal(&mut frame)
                    };
                    assert_eq!(n, Ok(960));
                } else {
                    decoder.decode(packet, &mut frame).expect("decode");
                }
                output.extend_from_slice(frame.samples());
            }
            let input: Vec<i16> = frames_in.concat();
            // Compare the lost frame, delayed by the lookahead, with what it should have been.
            let delay = OpusEncoder::new(rate, OpusConfig::default())
                .expect("encoder")
                .lookahead();
            let start = lost * 960;
            (start..start + 960)
                .map(|i| (f64::from(input[i]) - f64::from(output[i + delay])).powi(2))
                .sum::<f64>()
        };
        let (fec, plc) = (error_energy(true), error_energy(false));
        eprintln!("lost-frame error energy: FEC {fec:.3e}, PLC {plc:.3e}");
        assert!(fec <= plc * 1.01, "FEC {fec} vs PLC {plc}");
    }

    #[test]
    fn empty_packet_is_refused() {
        let mut decoder = OpusDecoder::new(SampleRate::HZ_48000).expect("decoder");
        let mut frame = Frame::silence(SampleRate::HZ_48000);
        assert_eq!(
            decoder.decode(&[], &mut frame),
            Err(CodecError::EmptyPacket)
        );
        assert_eq!(
            decoder.decode_fec(&[], &mut frame),
            Err(CodecError::EmptyPacket)
        );
    }

    #[test]
    fn over_long_packet_is_refused() {
        let mut decoder = OpusDecoder::new(SampleRate::HZ_48000).expect("decoder");
        let mut frame = Frame::silence(SampleRate::HZ_48000);
        let mut packet = vec![0u8; MAX_PACKET_BYTES + 1];
        packet[0] = 0xF8; // CELT fullband 20 ms, one frame: otherwise well formed.
        assert_eq!(
            decoder.decode(&packet, &mut frame),
            Err(CodecError::PacketTooLong {
                len: MAX_PACKET_BYTES + 1,
                max: MAX_PACKET_BYTES
            })
        );
        assert!(decoder.decode(&vec![0xF8; 70_000], &mut frame).is_err());
    }

    #[test]
    fn structurally_invalid_packets_are_refused() {
        let mut decoder = OpusDecoder::new(SampleRate::HZ_48000).expect("decoder");
        let mut frame = Frame::silence(SampleRate::HZ_48000);
        let cases: [&[u8]; 4] = [
            // Code 1 (two equal frames) needs an even payload.
            &[0xF9, 1, 2, 3],
            // Code 2 whose first frame is longer than the packet.
            &[0xFA, 200, 1, 2],
            // Code 3 announcing zero frames.
            &[0xFB, 0x00],
            // Code 3 with nothing after the TOC byte.
            &[0xFB],
        ];
        for packet in cases {
            let result = decoder.decode(packet, &mut frame);
            assert!(
                result.is_err_and(|e| e.should_conceal()),
                "{packet:02x?}: {result:?}"
            );
        }
    }

    #[test]
    fn packets_of_other_durations_are_refused() {
        let mut decoder = OpusDecoder::new(SampleRate::HZ_48000).expect("decoder");
        let mut frame = Frame::silence(SampleRate::HZ_48000);
        // TOC config 30: CELT fullband 10 ms.
        assert_eq!(
            decoder.decode(&[30 << 3, 0x55, 0xAA], &mut frame),
            Err(CodecError::WrongPacketDuration {
                rate: SampleRate::HZ_48000,
                got: 480,
                expected: 960
            })
        );
        // TOC config 2: SILK narrowband 40 ms.
        assert_eq!(
            decoder.decode(&[2 << 3, 0x55, 0xAA], &mut frame),
            Err(CodecError::WrongPacketDuration {
                rate: SampleRate::HZ_48000,
                got: 1_920,
                expected: 960
            })
        );
    }

    #[test]
    fn random_packets_never_panic_and_fail_only_as_bad_packets() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for rate in [SampleRate::HZ_48000, SampleRate::HZ_16000] {
            let mut decoder = OpusDecoder::new(rate).expect("decoder");
            let mut frame = Frame::silence(rate);
            let mut packet = [0u8; MAX_PACKET_BYTES + 64];
            let (mut decoded, mut refused) = (0, 0);
            for _ in 0..5_000 {
                let len = (rng.next() % packet.len() as u64) as usize;
                for byte in &mut packet[..len] {
                    *byte = rng.next() as u8;
                }
                for fec in [false, true] {
                    let result = if fec {
                        decoder.decode_fec(&packet[..len], &mut frame)
                    } else {
                        decoder.decode(&packet[..len], &mut frame)
                    };
                    match result {
                        Ok(n) => {
                            assert_eq!(n, rate.frame_samples());
                            decoded += 1;
                        }
                        Err(e) => {
                            assert!(e.should_conceal(), "{e}");
                            refused += 1;
                        }
                    }
                }
            }
            eprintln!("{rate}: random packets decoded {decoded}, refused {refused}");
            assert!(refused > 0);
        }
    }

    #[test]
    fn frame_at_the_wrong_rate_is_refused() {
        let mut encoder =
            OpusEncoder::new(SampleRate::HZ_16000, OpusConfig::default()).expect("encoder");
        let mut decoder = OpusDecoder::new(SampleRate::HZ_16000).expect("decoder");
        let mut frame = Frame::silence(SampleRate::HZ_48000);
        let mismatch = CodecError::RateMismatch {
            expected: SampleRate::HZ_16000,
            got: SampleRate::HZ_48000,
        };
        let mut packet = [0u8; MAX_PACKET_BYTES];
        assert_eq!(encoder.encode(&frame, &mut packet), Err(mismatch));
        assert_eq!(decoder.conceal(&mut frame), Err(mismatch));
        assert_eq!(decoder.decode(&[0xF8, 0], &mut frame), Err(mismatch));
        assert!(!mismatch.should_conceal());
    }

    #[test]
    fn rates_opus_cannot_run_at_are_refused() {
        for hz in [32_000, 44_100, 22_050, 11_000] {
            let rate = SampleRate::new(hz).expect("valid gateway rate");
            assert_eq!(
                OpusEncoder::new(rate, OpusConfig::default()).err(),
                Some(CodecError::UnsupportedRate(rate))
            );
            assert_eq!(
                OpusDecoder::new(rate).err(),
                Some(CodecError::UnsupportedRate(rate))
            );
        }
    }

    #[test]
    fn out_of_range_settings_are_refused() {
        let rate = SampleRate::HZ_48000;
        let with = |change: fn(&mut OpusConfig)| {
            let mut config = OpusConfig::default();
            change(&mut config);
            OpusEncoder::new(rate, config).err()
        };
        assert_eq!(
            with(|c| c.bitrate_bps = 5_999),
            Some(CodecError::BitrateOutOfRange(5_999))
        );
        assert_eq!(
            with(|c| c.bitrate_bps = 510_001),
            Some(CodecError::BitrateOutOfRange(510_001))
        );
        assert_eq!(
            with(|c| c.complexity = 11),
            Some(CodecError::ComplexityOutOfRange(11))
        );
        assert_eq!(
            with(|c| c.expected_loss_percent = 101),
            Some(CodecError::LossPercentOutOfRange(101))
        );
        assert_eq!(with(|c| c.bitrate_bps = 510_000), None);
        assert_eq!(with(|c| c.complexity = 0), None);
    }

    #[test]
    fn bitrate_setting_steers_packet_size() {
        let sizes = |bitrate_bps| {
            let config = OpusConfig {
                bitrate_bps,
                ..OpusConfig::default()
            };
            let (_, packets) = tone_packets(config, 25);
            packets.iter().map(Vec::len).sum::<usize>()
        };
        let (low, high) = (sizes(12_000), sizes(64_000));
        assert!(
            high > low * 3,
            "12 kbit/s: {low} bytes, 64 kbit/s: {high} bytes"
        );
    }

    #[test]
    fn dtx_shrinks_silence_to_tiny_packets() {
        let rate = SampleRate::HZ_48000;
        let config = OpusConfig {
            dtx: true,
            ..OpusConfig::default()
        };
        let mut encoder = OpusEncoder::new(rate, config).expect("encoder");
        let mut packet = [0u8; MAX_PACKET_BYTES];
        let silence = Frame::silence(rate);
        let lengths: Vec<usize> = (0..50)
            .map(|_| encoder.encode(&silence, &mut packet).expect("encode"))
            .collect();
        // libopus needs about 200 ms to decide the input is silent, then sends a 1-byte
        // packet each tick and a full one every 400 ms.
        let tiny = lengths[10..].iter().filter(|&&len| len <= 2).count();
        assert!(tiny >= 35, "{lengths:?}");
    }

    #[test]
    fn encoder_never_writes_past_max_packet_bytes() {
        let rate = SampleRate::HZ_48000;
        let config = OpusConfig {
            bitrate_bps: 510_000,
            complexity: 10,
            ..OpusConfig::default()
        };
        let mut encoder = OpusEncoder::new(rate, config).expect("encoder");
        let mut rng = Rng(7);
        let mut packet = [0xA5u8; 2 * MAX_PACKET_BYTES];
        for _ in 0..20 {
            let noise: Vec<i16> = (0..960).map(|_| rng.next() as i16).collect();
            let frame = Frame::from_samples(rate, &noise).expect("frame");
            let len = encoder.encode(&frame, &mut packet).expect("encode");
            assert!(len <= MAX_PACKET_BYTES);
        }
        assert!(packet[MAX_PACKET_BYTES..].iter().all(|&b| b == 0xA5));
    }

    #[test]
    fn empty_packet_buffer_is_reported() {
        let rate = SampleRate::HZ_48000;
        let mut encoder = OpusEncoder::new(rate, OpusConfig::default()).expect("encoder");
        let result = encoder.encode(&Frame::silence(rate), &mut []);
        assert!(result.is_err(), "{result:?}");
    }

    #[test]
    fn only_packet_faults_ask_for_concealment() {
        assert!(CodecError::CorruptPacket.should_conceal());
        assert!(CodecError::EmptyPacket.should_conceal());
        assert!(!CodecError::UnsupportedRate(SampleRate::HZ_44100).should_conceal());
        assert!(
            !CodecError::OutputTooSmall {
                needed: 160,
                got: 0
            }
            .should_conceal()
        );
    }
}
