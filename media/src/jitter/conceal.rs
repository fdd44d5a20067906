//! Loss concealment for decoded PCM: a faded, mirrored repeat of the last good frame.

use super::FrameCount;
use crate::{Frame, SampleRate};

/// Fills lost 20 ms frames of decoded PCM so a lost packet is heard as a short fade rather
/// than a click followed by a hole.
///
/// Used for G.711 legs, whose codec has no concealment of its own (Opus legs use the
/// decoder's PLC instead). The concealment signal is the last good frame played backwards,
/// then forwards, and so on: reversing first makes the first concealed sample equal the
/// last sample played, so the waveform has no step where the loss begins. Its gain falls
/// linearly, sample by sample, from 1 at the start of the loss to 0 after `fade` frames
/// (default three: 60 ms, close to the attenuation of ITU-T G.711 Appendix I), and the
/// output is silence from then on: repeating a voice for longer sounds like a machine
/// fault, while a fade reads as a dropout. When good frames resume, the first 5 ms of the
/// first one are cross-faded from the concealment signal, so the recovery does not click
/// either.
///
/// ```
/// use chamade_media::jitter::{Concealer, FrameCount};
/// use chamade_media::{Frame, SampleRate};
///
/// let rate = SampleRate::HZ_8000;
/// let mut concealer = Concealer::new(rate, FrameCount::new(3));
/// let mut good = Frame::from_samples(rate, &[1_000; 160]).unwrap();
/// concealer.good(&mut good);
///
/// let mut out = Frame::silence(rate);
/// concealer.conceal(&mut out);
/// assert_eq!(out.samples()[0], 1_000); // continues where the good frame ended
/// assert!(out.samples()[159] < 700); // a third of the way down the fade
/// concealer.conceal(&mut out);
/// concealer.conceal(&mut out);
/// concealer.conceal(&mut out);
/// assert!(out.is_silent()); // after three frames, silence
/// ```
#[derive(Clone, Debug)]
pub struct Concealer {
    /// The last frame played: the source of the concealment signal.
    last: Frame,
    /// Samples of concealment produced since `last`, capped at the fade length.
    position: usize,
    fade: FrameCount,
}

impl Concealer {
    /// Three frames (60 ms) of fading repeat before silence.
    pub const DEFAULT_FADE: FrameCount = FrameCount::new(3);

    /// A concealer that fades over `fade` frames; before the first good frame it produces
    /// silence at `rate`. A fade of zero frames conceals with silence straight away.
    pub fn new(rate: SampleRate, fade: FrameCount) -> Concealer {
        Concealer {
            last: Frame::silence(rate),
            position: 0,
            fade,
        }
    }

    /// Records a frame that was received and decoded, ending any concealment in progress.
    ///
    /// If the previous frame was concealed, the start of `frame` is cross-faded from the
    /// concealment signal in place, which is why it takes `&mut`. A frame at a different
    /// rate than the previous one is taken as is and becomes the new rate.
    pub fn good(&mut self, frame: &mut Frame) {
        if self.position > 0 && frame.rate() == self.last.rate() {
            let n = frame.samples().len();
            let ramp = n / 4;
            for i in 0..ramp {
                let w = (i + 1) as f32 / (ramp + 1) as f32;
                let from = f32::from(self.sample_at(self.position + i));
                let s = &mut frame.samples_mut()[i];
                *s = (f32::from(*s) * w + from * (1.0 - w)).round() as i16;
            }
        }
        self.last.clone_from(frame);
        self.position = 0;
    }

    /// Writes one frame of concealment into `out`, at the rate of the last good frame.
    pub fn conceal(&mut self, out: &mut Frame) {
        if out.rate() != self.last.rate() {
            *out = Frame::silence(self.last.rate());
        }
        let start = self.position;
        for (i, s) in out.samples_mut().iter_mut().enumerate() {
            *s = self.sample_at(start + i);
        }
        let n = self.last.samples().len();
        self.position = (start + n).min(self.fade_samples());
    }

    /// Forgets the last good frame, so the next loss conceals with silence: for a new
    /// stream, whose first loss must not replay the previous talker.
    pub fn reset(&mut self) {
        self.last = Frame::silence(self.last.rate());
        self.position = 0;
    }

    /// Whether a loss is being concealed with something other than silence.
    pub fn is_fading(&self) -> bool {
        self.position > 0 && self.position < self.fade_samples()
    }

    fn fade_samples(&self) -> usize {
        self.fade.get() as usize * self.last.samples().len()
    }

    /// Sample `p` of the concealment signal (0 is the first concealed sample).
    fn sample_at(&self, p: usize) -> i16 {
        let total = self.fade_samples();
        if p >= total {
            return 0;
        }
        let src = self.last.samples();
        let n = src.len();
        let q = p % (2 * n);
        let s = if q < n { src[n - 1 - q] } else { src[q - n] };
        let gain = 1.0 - p as f32 / total as f32;
        // |s * gain| <= |s|, so the rounded product always fits an i16.
        (f32::from(s) * gain).round() as i16
    }
}
