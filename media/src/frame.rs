//! The 20 ms mono s16 frame: the unit the mixer pulls, mixes and pushes every tick.

use crate::rate::{MAX_FRAME_SAMPLES, SampleRate};

/// One 20 ms frame of mono signed 16-bit audio at a known rate.
///
/// Storage is a fixed array sized for 48 kHz, so frames live on the stack or inside
/// pre-allocated slots and moving audio through the tick never touches the heap.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    rate: SampleRate,
    data: [i16; MAX_FRAME_SAMPLES],
}

/// Why a slice cannot become a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The slice does not hold exactly 20 ms at the frame's rate.
    #[error("a 20 ms frame at {rate} holds {expected} samples, got {got}")]
    WrongLength {
        /// The frame's rate.
        rate: SampleRate,
        /// Samples a frame at that rate holds.
        expected: usize,
        /// Samples offered.
        got: usize,
    },
}

impl Frame {
    /// A frame of digital silence: what a participant with nothing queued contributes.
    pub const fn silence(rate: SampleRate) -> Frame {
        Frame {
            rate,
            data: [0; MAX_FRAME_SAMPLES],
        }
    }

    /// Copies exactly one frame's worth of samples.
    ///
    /// ```
    /// use chamade_media::{Frame, SampleRate};
    /// let f = Frame::from_samples(SampleRate::HZ_8000, &[7; 160]).unwrap();
    /// assert_eq!(f.samples()[159], 7);
    /// assert!(Frame::from_samples(SampleRate::HZ_8000, &[0; 159]).is_err());
    /// ```
    pub fn from_samples(rate: SampleRate, samples: &[i16]) -> Result<Frame, FrameError> {
        let expected = rate.frame_samples();
        if samples.len() != expected {
            return Err(FrameError::WrongLength {
                rate,
                expected,
                got: samples.len(),
            });
        }
        let mut frame = Frame::silence(rate);
        frame.data[..expected].copy_from_slice(samples);
        Ok(frame)
    }

    /// The frame's rate.
    pub const fn rate(&self) -> SampleRate {
        self.rate
    }

    /// The frame's samples: exactly `rate.frame_samples()` of them.
    pub fn samples(&self) -> &[i16] {
        &self.data[..self.rate.frame_samples()]
    }

    /// Mutable access for codecs and the mixer to fill the frame in place.
    pub fn samples_mut(&mut self) -> &mut [i16] {
        let n = self.rate.frame_samples();
        &mut self.data[..n]
    }

    /// Whether every sample is zero: lets the talker-aware mixer skip a participant cheaply.
    pub fn is_silent(&self) -> bool {
        self.samples().iter().all(|&s| s == 0)
    }

    /// Writes the frame as s16le bytes (the wire format of the agent WebSocket).
    ///
    /// `out` must hold at least `rate.frame_bytes()` bytes; returns the bytes written.
    pub fn write_le_bytes(&self, out: &mut [u8]) -> usize {
        write_le_bytes(self.samples(), out)
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("rate", &self.rate)
            .field("silent", &self.is_silent())
            .finish()
    }
}

/// Writes samples as s16le into `out`, as many as fit, and returns the bytes written.
pub fn write_le_bytes(samples: &[i16], out: &mut [u8]) -> usize {
    let n = samples.len().min(out.len() / 2);
    for (s, chunk) in samples[..n].iter().zip(out.chunks_exact_mut(2)) {
        chunk.copy_from_slice(&s.to_le_bytes());
    }
    n * 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_silent_and_has_rate_length() {
        let f = Frame::silence(SampleRate::HZ_16000);
        assert!(f.is_silent());
        assert_eq!(f.samples().len(), 320);
    }

    #[test]
    fn wrong_length_is_refused_with_context() {
        let err = Frame::from_samples(SampleRate::HZ_48000, &[0; 100]).unwrap_err();
        assert_eq!(
            err,
            FrameError::WrongLength {
                rate: SampleRate::HZ_48000,
                expected: 960,
                got: 100
            }
        );
    }

    #[test]
    fn le_bytes_round_trip() {
        let samples: Vec<i16> = (0..160).map(|i| (i * 400 - 32_000) as i16).collect();
        let f = Frame::from_samples(SampleRate::HZ_8000, &samples).unwrap();
        let mut bytes = [0u8; 320];
        assert_eq!(f.write_le_bytes(&mut bytes), 320);
        let back: Vec<i16> = bytes
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(back, samples);
    }
}
