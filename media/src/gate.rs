//! Telling a talker from a leg that only sends silence.
//!
//! The mixer treats every participant that wrote a frame as a talker, and a talker costs a
//! private mix-minus and, on a WebRTC leg, a private Opus encode. A browser or a WebRTC
//! client keeps sending packets while nobody speaks (muted, or a quiet room), so its decoded
//! frames must be told apart from speech before they reach the mixer: a [`SilenceGate`]
//! looks at each frame's peak and stays open for a hangover after the last loud frame, so
//! that the pauses inside speech are still mixed and only real silence is dropped.

/// Peak below which a frame counts as silent: 64 of 32,767, about −54 dBFS, under any
/// microphone's noise floor with its processing on, far over digital silence and codec
/// noise.
pub const DEFAULT_THRESHOLD: u16 = 64;
/// Frames a gate stays open after the last loud one: 200 ms, longer than the gaps between
/// words.
pub const DEFAULT_HANGOVER: u32 = 10;

/// A per-leg gate over 20 ms frames; see the module documentation.
#[derive(Debug, Clone)]
pub struct SilenceGate {
    threshold: u16,
    hangover: u32,
    quiet: u32,
}

impl Default for SilenceGate {
    fn default() -> Self {
        SilenceGate::new(DEFAULT_THRESHOLD, DEFAULT_HANGOVER)
    }
}

impl SilenceGate {
    /// A gate that opens on a frame whose peak exceeds `threshold` and closes `hangover`
    /// frames after the last such frame. It starts closed.
    pub fn new(threshold: u16, hangover: u32) -> SilenceGate {
        SilenceGate {
            threshold,
            hangover,
            quiet: hangover.saturating_add(1),
        }
    }

    /// Whether this frame is to be mixed. One pass over the samples, no branches per sample.
    pub fn open(&mut self, samples: &[i16]) -> bool {
        let peak = samples.iter().fold(0u16, |m, &s| m.max(s.unsigned_abs()));
        if peak > self.threshold {
            self.quiet = 0;
        } else {
            self.quiet = self.quiet.saturating_add(1);
        }
        self.quiet <= self.hangover
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_on_speech_and_closes_after_the_hangover() {
        let mut gate = SilenceGate::new(64, 2);
        let quiet = [10i16; 960];
        let loud = [-2000i16; 960];
        assert!(!gate.open(&quiet), "starts closed");
        assert!(gate.open(&loud));
        assert!(gate.open(&quiet), "hangover 1");
        assert!(gate.open(&quiet), "hangover 2");
        assert!(!gate.open(&quiet), "closed after the hangover");
        assert!(gate.open(&loud), "reopens at once");
    }

    #[test]
    fn the_threshold_is_on_the_absolute_peak() {
        let mut gate = SilenceGate::new(64, 0);
        assert!(!gate.open(&[64, -64, 0]));
        assert!(gate.open(&[0, -65, 0]));
        assert!(
            gate.open(&[i16::MIN]),
            "the most negative sample does not overflow"
        );
    }
}
