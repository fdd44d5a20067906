//! Streaming sample-rate conversion in 20 ms chunks.
//!
//! Each participant declares its own rate and each room mixes at its platform's native rate,
//! so audio crosses a rate boundary on the way in and on the way out. Both directions are
//! synchronous (the two clocks are the same tick), so the resampler is rubato's FFT
//! resampler with both chunk sizes fixed: exactly one 20 ms frame in gives exactly one
//! 20 ms frame out, for every pair of supported rates (every supported rate is a multiple of
//! 50 Hz, so both sides of a 20 ms chunk are whole multiples of rubato's minimum block).
//!
//! **Delay.** The FFT resampler delays its output by half of its FFT block. Where both rates
//! are multiples of 100 Hz (8k, 16k, 24k, 32k, 44.1k, 48k…) the block is 10 ms and a frame
//! is processed as two blocks, so the added delay is **5 ms**; otherwise (22.05 kHz, 11.05 kHz)
//! the block is 20 ms and the delay **10 ms**. [`Resampler::delay_samples`] reports the exact
//! figure at the output rate; a pass-through (same rate both sides) adds none.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};

use crate::rate::SampleRate;

/// Why a resampler cannot be built or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResampleError {
    /// rubato refused the rate pair (not expected for supported rates).
    #[error("cannot resample {from} to {to}: {reason}")]
    Construction {
        /// Input rate.
        from: SampleRate,
        /// Output rate.
        to: SampleRate,
        /// rubato's explanation.
        reason: String,
    },
    /// A chunk of the wrong length was passed.
    #[error("expected {expected} samples, got {got}")]
    WrongLength {
        /// Samples one 20 ms frame holds at that side's rate.
        expected: usize,
        /// Samples passed.
        got: usize,
    },
    /// rubato failed while processing (not expected once built).
    #[error("resampling failed: {0}")]
    Process(String),
}

/// Converts a stream of 20 ms frames from one rate to another, keeping its state between
/// frames so that chunk boundaries are inaudible.
pub struct Resampler {
    from: SampleRate,
    to: SampleRate,
    engine: Option<Engine>,
}

struct Engine {
    fft: Fft<f32>,
    blocks: usize,
    block_in: usize,
    block_out: usize,
    input: Box<[f32]>,
    output: Box<[f32]>,
}

impl Resampler {
    /// Builds a resampler; all its buffers are allocated here.
    ///
    /// ```
    /// use chamade_media::{SampleRate, resample::Resampler};
    /// let mut r = Resampler::new(SampleRate::HZ_48000, SampleRate::HZ_8000).unwrap();
    /// let mut out = [0i16; 160];
    /// r.process(&[0i16; 960], &mut out).unwrap();
    /// assert_eq!(r.delay_samples(), 40); // 5 ms at 8 kHz
    /// ```
    pub fn new(from: SampleRate, to: SampleRate) -> Result<Resampler, ResampleError> {
        if from == to {
            return Ok(Resampler {
                from,
                to,
                engine: None,
            });
        }
        let blocks = if from.hz().is_multiple_of(100) && to.hz().is_multiple_of(100) {
            2
        } else {
            1
        };
        let block_in = from.frame_samples() / blocks;
        let block_out = to.frame_samples() / blocks;
        let construction = |reason: String| ResampleError::Construction { from, to, reason };
        let fft = Fft::<f32>::new(
            from.hz() as usize,
            to.hz() as usize,
            block_in,
            1,
            FixedSync::Both,
        )
        .map_err(|e| construction(e.to_string()))?;
        if fft.input_frames_next() != block_in || fft.output_frames_next() != block_out {
            return Err(construction(format!(
                "chunk sizes {}→{} instead of {block_in}→{block_out}",
                fft.input_frames_next(),
                fft.output_frames_next()
            )));
        }
        Ok(Resampler {
            from,
            to,
            engine: Some(Engine {
                fft,
                blocks,
                block_in,
                block_out,
                input: vec![0.0; block_in].into_boxed_slice(),
                output: vec![0.0; block_out].into_boxed_slice(),
            }),
        })
    }

    /// Input rate.
    pub fn from_rate(&self) -> SampleRate {
        self.from
    }

    /// Output rate.
    pub fn to_rate(&self) -> SampleRate {
        self.to
    }

    /// Whether this resampler is a plain copy (same rate both sides).
    pub fn is_passthrough(&self) -> bool {
        self.engine.is_none()
    }

    /// Delay added to the signal, in samples at the output rate.
    pub fn delay_samples(&self) -> usize {
        self.engine.as_ref().map_or(0, |e| e.fft.output_delay())
    }

    /// Delay added to the signal, in microseconds.
    pub fn delay_us(&self) -> u64 {
        self.delay_samples() as u64 * 1_000_000 / u64::from(self.to.hz())
    }

    /// Converts one 20 ms frame. Allocates nothing.
    pub fn process(&mut self, input: &[i16], output: &mut [i16]) -> Result<(), ResampleError> {
        let (n_in, n_out) = (self.from.frame_samples(), self.to.frame_samples());
        if input.len() != n_in {
            return Err(ResampleError::WrongLength {
                expected: n_in,
                got: input.len(),
            });
        }
        if output.len() != n_out {
            return Err(ResampleError::WrongLength {
                expected: n_out,
                got: output.len(),
            });
        }
        let Some(e) = self.engine.as_mut() else {
            output.copy_from_slice(input);
            return Ok(());
        };
        for b in 0..e.blocks {
            let src = &input[b * e.block_in..(b + 1) * e.block_in];
            for (dst, &s) in e.input.iter_mut().zip(src) {
                *dst = f32::from(s) * (1.0 / 32768.0);
            }
            let adapter_in = InterleavedSlice::new(&e.input[..], 1, e.block_in)
                .map_err(|err| ResampleError::Process(err.to_string()))?;
            let mut adapter_out = InterleavedSlice::new_mut(&mut e.output[..], 1, e.block_out)
                .map_err(|err| ResampleError::Process(err.to_string()))?;
            e.fft
                .process_into_buffer(&adapter_in, &mut adapter_out, None)
                .map_err(|err| ResampleError::Process(err.to_string()))?;
            let dst = &mut output[b * e.block_out..(b + 1) * e.block_out];
            for (d, &y) in dst.iter_mut().zip(e.output.iter()) {
                *d = (y * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
            }
        }
        Ok(())
    }

    /// Forgets the signal history, for a stream that restarts after a pause.
    pub fn reset(&mut self) {
        if let Some(e) = self.engine.as_mut() {
            e.fft.reset();
        }
    }
}

#[cfg(test)]
mod tests;
