//! Sample rates and the 20 ms frame arithmetic every other module relies on.

use std::fmt;
use std::num::NonZeroU32;

/// Duration of one media frame in milliseconds: the mixer's tick and every leg's packet time.
pub const FRAME_MS: u32 = 20;

/// Frames per second at the 20 ms cadence.
pub const FRAMES_PER_SECOND: u32 = 1000 / FRAME_MS;

/// The largest number of samples a 20 ms mono frame can hold (48 kHz).
///
/// Fixed-size frame storage is sized with it, so no frame ever needs a heap buffer.
pub const MAX_FRAME_SAMPLES: usize = (SampleRate::MAX_HZ / FRAMES_PER_SECOND) as usize;

/// A sample rate the gateway can carry end to end.
///
/// Only rates where 20 ms is a whole number of samples are accepted (multiples of 50 Hz
/// between 8 kHz and 48 kHz), so re-framing never has to carry a fractional sample and every
/// pair of rates resamples in fixed 20 ms chunks. 11,025 Hz is therefore refused while
/// 22,050 Hz and 44,100 Hz are accepted.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SampleRate(NonZeroU32);

/// Why a requested rate cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateError {
    /// Outside the 8,000–48,000 Hz range the mixer and codecs are built for.
    #[error("sample rate {0} Hz is outside the supported range 8000..=48000 Hz")]
    OutOfRange(u32),
    /// 20 ms at this rate is not a whole number of samples.
    #[error(
        "sample rate {0} Hz is not a multiple of 50 Hz, so a 20 ms frame is not a whole number of samples"
    )]
    NotFrameAligned(u32),
}

impl SampleRate {
    /// Lowest supported rate (narrowband telephony).
    pub const MIN_HZ: u32 = 8_000;
    /// Highest supported rate (Opus fullband, WebRTC, Discord).
    pub const MAX_HZ: u32 = 48_000;

    /// 8 kHz: SIP/G.711.
    pub const HZ_8000: SampleRate = SampleRate::from_const(8_000);
    /// 16 kHz: Teams, Zoom, Telegram, most speech recognisers.
    pub const HZ_16000: SampleRate = SampleRate::from_const(16_000);
    /// 24 kHz: OpenAI Realtime and many TTS engines.
    pub const HZ_24000: SampleRate = SampleRate::from_const(24_000);
    /// 32 kHz: Opus super-wideband.
    pub const HZ_32000: SampleRate = SampleRate::from_const(32_000);
    /// 44.1 kHz: consumer audio files.
    pub const HZ_44100: SampleRate = SampleRate::from_const(44_100);
    /// 48 kHz: Opus, WebRTC, Discord and the built-in `web` rooms.
    pub const HZ_48000: SampleRate = SampleRate::from_const(48_000);

    const fn from_const(hz: u32) -> SampleRate {
        match NonZeroU32::new(hz) {
            Some(v) => SampleRate(v),
            None => panic!("zero sample rate constant"),
        }
    }

    /// Parses a rate in Hz, refusing anything the frame arithmetic cannot carry.
    ///
    /// ```
    /// use chamade_media::{SampleRate, RateError};
    /// assert_eq!(SampleRate::new(24_000).unwrap().hz(), 24_000);
    /// assert_eq!(SampleRate::new(11_025), Err(RateError::NotFrameAligned(11_025)));
    /// assert_eq!(SampleRate::new(96_000), Err(RateError::OutOfRange(96_000)));
    /// ```
    pub fn new(hz: u32) -> Result<SampleRate, RateError> {
        if !(Self::MIN_HZ..=Self::MAX_HZ).contains(&hz) {
            return Err(RateError::OutOfRange(hz));
        }
        if !hz.is_multiple_of(FRAMES_PER_SECOND) {
            return Err(RateError::NotFrameAligned(hz));
        }
        Ok(Self::from_const(hz))
    }

    /// The rate in Hz.
    pub const fn hz(self) -> u32 {
        self.0.get()
    }

    /// Samples in one 20 ms mono frame at this rate (160 at 8 kHz, 960 at 48 kHz).
    pub const fn frame_samples(self) -> usize {
        (self.0.get() / FRAMES_PER_SECOND) as usize
    }

    /// Bytes in one 20 ms mono s16le frame: the spec's `frame_bytes`.
    pub const fn frame_bytes(self) -> usize {
        self.frame_samples() * 2
    }

    /// Samples per millisecond, as a float, for turning queue lengths into durations.
    pub fn samples_per_ms(self) -> f64 {
        f64::from(self.hz()) / 1000.0
    }

    /// Converts a count of samples at this rate to whole milliseconds (rounded down).
    pub fn samples_to_ms(self, samples: usize) -> u64 {
        (samples as u64 * 1000) / u64::from(self.hz())
    }

    /// Converts milliseconds to a count of samples at this rate (rounded down).
    pub fn ms_to_samples(self, ms: u64) -> usize {
        (ms * u64::from(self.hz()) / 1000) as usize
    }
}

impl fmt::Debug for SampleRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} Hz", self.hz())
    }
}

impl fmt::Display for SampleRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} Hz", self.hz())
    }
}

impl TryFrom<u32> for SampleRate {
    type Error = RateError;
    fn try_from(hz: u32) -> Result<Self, Self::Error> {
        SampleRate::new(hz)
    }
}

impl From<SampleRate> for u32 {
    fn from(rate: SampleRate) -> u32 {
        rate.hz()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_multiple_of_fifty_in_range_is_accepted() {
        for hz in (8_000..=48_000).step_by(50) {
            let rate = SampleRate::new(hz).expect("aligned rate");
            assert_eq!(rate.frame_samples() * 50, hz as usize);
        }
    }

    #[test]
    fn unaligned_and_out_of_range_rates_are_refused() {
        assert_eq!(
            SampleRate::new(11_025),
            Err(RateError::NotFrameAligned(11_025))
        );
        assert_eq!(
            SampleRate::new(8_001),
            Err(RateError::NotFrameAligned(8_001))
        );
        assert_eq!(SampleRate::new(7_950), Err(RateError::OutOfRange(7_950)));
        assert_eq!(SampleRate::new(0), Err(RateError::OutOfRange(0)));
        assert_eq!(SampleRate::new(48_050), Err(RateError::OutOfRange(48_050)));
        assert_eq!(SampleRate::new(96_000), Err(RateError::OutOfRange(96_000)));
    }

    #[test]
    fn spec_frame_sizes() {
        assert_eq!(SampleRate::HZ_48000.frame_bytes(), 1920);
        assert_eq!(SampleRate::HZ_24000.frame_bytes(), 960);
        assert_eq!(SampleRate::HZ_16000.frame_bytes(), 640);
        assert_eq!(SampleRate::HZ_8000.frame_bytes(), 320);
        assert_eq!(SampleRate::HZ_44100.frame_samples(), 882);
        assert_eq!(MAX_FRAME_SAMPLES, 960);
    }

    #[test]
    fn durations_round_trip() {
        let r = SampleRate::HZ_24000;
        assert_eq!(r.ms_to_samples(1_000), 24_000);
        assert_eq!(r.samples_to_ms(24_000), 1_000);
        assert_eq!(r.samples_to_ms(23), 0);
    }
}
