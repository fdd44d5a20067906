//! Streaming sample-rate conversion in 20 ms chunks.
//!
//! Each participant declares its own rate and each room mixes at its platform's native rate,
//! so audio crosses a rate boundary on the way in and on the way out. Both directions are
//! synchronous (the two clocks are the same tick), so every conversion is a fixed ratio and
//! exactly one 20 ms frame in gives exactly one 20 ms frame out.
//!
//! **Engines.** A call holds several resamplers per participant, so their memory and CPU
//! are a large share of what a call costs. Most pairs met in practice are whole multiples of
//! each other (8k↔16k, 8k↔48k, 16k↔48k, 24k↔48k…), and for those a polyphase FIR is both
//! cheaper and shorter than a general resampler: the filter is a Kaiser-windowed sinc cut at
//! half the lower rate, split into one branch per output phase, so no zero is ever multiplied
//! and the state is a few hundred bytes. Its passband is flat up to 0.46 of the lower rate
//! (3.68 kHz at 8 kHz, beyond the telephone band), and everything from 0.54 of the lower
//! rate up is about 78 dB down. Aliases and images of what lies in between land only in
//! 0.46–0.54 of the lower rate, above the band a phone plays: letting the narrow transition
//! straddle the lower Nyquist is what keeps the filter short. (rubato's filter, alias-free,
//! is already 7.7 dB down at 3.36 kHz between 8 and 16 kHz.) Every other pair
//! (44.1k↔48k, 16k↔24k, 22.05k↔…) goes through rubato's FFT resampler with both chunk sizes
//! fixed (every supported rate is a multiple of 50 Hz, so both sides of a 20 ms chunk are
//! whole multiples of rubato's minimum block).
//!
//! **Delay.** The polyphase filter is symmetric about a whole sample, so its delay is exact:
//! **32 samples at the lower rate** (4 ms between 8 kHz and a multiple of it, 2 ms from
//! 16 kHz, 1.33 ms from 24 kHz). The FFT resampler delays its output by half of its FFT
//! block: where both rates are multiples of 100 Hz (16k↔24k, 44.1k↔48k…) the block is 10 ms
//! and a frame is processed as two blocks, so the added delay is **5 ms**; otherwise
//! (22.05 kHz, 11.05 kHz) the block is 20 ms and the delay **10 ms**.
//! [`Resampler::delay_samples`] reports the exact figure at the output rate; a pass-through
//! (same rate both sides) adds none.

use std::f64::consts::PI;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};

use crate::rate::{FRAMES_PER_SECOND, MAX_FRAME_SAMPLES, SampleRate};

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
    engine: Engine,
}

enum Engine {
    Copy,
    Up(Polyphase),
    Down(Polyphase),
    // Boxed so that the common polyphase resampler does not carry rubato's larger state inline.
    Fft(Box<FftEngine>),
}

struct FftEngine {
    fft: Fft<f32>,
    blocks: usize,
    block_in: usize,
    block_out: usize,
    input: Box<[f32]>,
    output: Box<[f32]>,
}

/// Half the polyphase filter's span, in samples at the lower rate; also its delay there.
///
/// The span sets the cost (taps per output), the delay and the width of the transition
/// band around the lower rate's Nyquist: 32 lets a Kaiser window keep the passband flat to
/// 0.46 of the lower rate and be ~78 dB down from 0.54, so what folds back lands above
/// 3.68 kHz at 8 kHz, outside the telephone band. 16 halved the cost and the delay but let
/// 4.2 kHz fold to 3.8 kHz only 15 dB down.
const HALF_SPAN: usize = 32;

/// Taps in each polyphase branch: the whole span, in samples at the lower rate.
const TAPS: usize = 2 * HALF_SPAN;

/// Kaiser's β for an 80 dB stopband (0.1102 · (80 − 8.7)).
const KAISER_BETA: f64 = 7.857;

/// Outputs of one branch computed together: eight SSE registers of accumulators, enough
/// independent additions to keep the adders busy, and one broadcast tap serves them all.
const BLOCK: usize = 32;
const _: () = assert!(SampleRate::MIN_HZ as usize / FRAMES_PER_SECOND as usize >= BLOCK);

/// Largest whole ratio between two supported rates (48 kHz / 8 kHz).
const MAX_RATIO: usize = (SampleRate::MAX_HZ / SampleRate::MIN_HZ) as usize;

/// Largest frame on the lower side of a whole ratio (at most half of 48 kHz).
const MAX_LOW_FRAME: usize = MAX_FRAME_SAMPLES / 2;

/// A polyphase FIR converting by a whole ratio, up or down.
///
/// Branch `r` of the prototype filter `h` (cut at half the lower rate, centred on
/// `HALF_SPAN · ratio`) holds `h[j · ratio + r]`, stored in reverse so that one output is a
/// forward dot product with a window of consecutive lower-rate samples. Branch 0 is a single
/// centre tap (a sinc cut at the lower Nyquist is zero at every whole lower-rate sample but
/// its centre), so it is a plain delay and is kept out of `branches`.
struct Polyphase {
    ratio: usize,
    /// Upsampling: branch `r` at index `r − 1`, each summing to 1. Downsampling: in the
    /// order of the input phases `s = 1..ratio`, which meet branch `ratio − s`, scaled by
    /// `1 / ratio`.
    branches: Box<[[f32; TAPS]]>,
    /// The last `TAPS` lower-rate samples of each stream: the input when upsampling, each
    /// input phase when downsampling.
    history: Box<[[f32; TAPS]]>,
}

impl Resampler {
    /// Builds a resampler; all its buffers are allocated here.
    ///
    /// ```
    /// use chamade_media::{SampleRate, resample::Resampler};
    /// let mut r = Resampler::new(SampleRate::HZ_48000, SampleRate::HZ_8000).unwrap();
    /// let mut out = [0i16; 160];
    /// r.process(&[0i16; 960], &mut out).unwrap();
    /// assert_eq!(r.delay_samples(), 32); // 4 ms at 8 kHz
    /// ```
    pub fn new(from: SampleRate, to: SampleRate) -> Result<Resampler, ResampleError> {
        let (a, b) = (from.hz(), to.hz());
        // Supported rates never exceed MAX_RATIO apart; the bound keeps the dispatch on the
        // ratio in `Polyphase` honest should the range ever widen.
        let whole = |hi: u32, lo: u32| hi.is_multiple_of(lo) && (hi / lo) as usize <= MAX_RATIO;
        let engine = if a == b {
            Engine::Copy
        } else if whole(b, a) {
            Engine::Up(Polyphase::up((b / a) as usize))
        } else if whole(a, b) {
            Engine::Down(Polyphase::down((a / b) as usize))
        } else {
            Engine::Fft(Box::new(FftEngine::new(from, to)?))
        };
        Ok(Resampler { from, to, engine })
    }

    /// The FFT engine whatever the pair, so that tests can hold the two engines side by side.
    #[cfg(test)]
    fn with_fft(from: SampleRate, to: SampleRate) -> Result<Resampler, ResampleError> {
        Ok(Resampler {
            from,
            to,
            engine: Engine::Fft(Box::new(FftEngine::new(from, to)?)),
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
        matches!(self.engine, Engine::Copy)
    }

    /// Delay added to the signal, in samples at the output rate.
    pub fn delay_samples(&self) -> usize {
        match &self.engine {
            Engine::Copy => 0,
            Engine::Up(p) => HALF_SPAN * p.ratio,
            Engine::Down(_) => HALF_SPAN,
            Engine::Fft(e) => e.fft.output_delay(),
        }
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
        match &mut self.engine {
            Engine::Copy => output.copy_from_slice(input),
            Engine::Up(p) => p.upsample(input, output),
            Engine::Down(p) => p.downsample(input, output),
            Engine::Fft(e) => e.process(input, output)?,
        }
        Ok(())
    }

    /// Forgets the signal history, for a stream that restarts after a pause.
    pub fn reset(&mut self) {
        match &mut self.engine {
            Engine::Copy => {}
            Engine::Up(p) | Engine::Down(p) => p.history.fill([0.0; TAPS]),
            Engine::Fft(e) => e.fft.reset(),
        }
    }
}

impl Polyphase {
    fn up(ratio: usize) -> Polyphase {
        Polyphase {
            ratio,
            branches: (1..ratio).map(|r| branch(ratio, r, 1.0)).collect(),
            history: vec![[0.0; TAPS]; 1].into_boxed_slice(),
        }
    }

    fn down(ratio: usize) -> Polyphase {
        let gain = 1.0 / ratio as f64;
        Polyphase {
            ratio,
            branches: (1..ratio).map(|s| branch(ratio, ratio - s, gain)).collect(),
            history: vec![[0.0; TAPS]; ratio].into_boxed_slice(),
        }
    }

    /// The ratio becomes a constant of the code, so that interleaving the phases and
    /// splitting them apart are shuffles rather than one strided access per sample.
    fn upsample(&mut self, input: &[i16], output: &mut [i16]) {
        const _: () = assert!(MAX_RATIO == 6, "one arm per ratio");
        match self.ratio {
            2 => self.upsample_by::<2>(input, output),
            3 => self.upsample_by::<3>(input, output),
            4 => self.upsample_by::<4>(input, output),
            5 => self.upsample_by::<5>(input, output),
            _ => self.upsample_by::<6>(input, output),
        }
    }

    /// See [`Polyphase::upsample`].
    fn downsample(&mut self, input: &[i16], output: &mut [i16]) {
        match self.ratio {
            2 => self.downsample_by::<2>(input, output),
            3 => self.downsample_by::<3>(input, output),
            4 => self.downsample_by::<4>(input, output),
            5 => self.downsample_by::<5>(input, output),
            _ => self.downsample_by::<6>(input, output),
        }
    }

    /// Output `n · L + r` is branch `r` over input samples `n − TAPS + 1 ..= n`; output
    /// `n · L` is input `n − HALF_SPAN`.
    fn upsample_by<const L: usize>(&mut self, input: &[i16], output: &mut [i16]) {
        let n = input.len();
        // On the stack rather than in the instance: a few KB shared by every resampler of the
        // thread (and warm in its cache) instead of kept per instance.
        let mut scratch = [0.0f32; TAPS + MAX_LOW_FRAME];
        let buf = &mut scratch[..TAPS + n];
        let (past, fresh) = buf.split_at_mut(TAPS);
        past.copy_from_slice(&self.history[0]);
        for (d, &s) in fresh.iter_mut().zip(input) {
            *d = f32::from(s);
        }
        let buf = &*buf;
        let mut interleaved = [[0.0f32; L]; BLOCK];
        let mut next = 0;
        loop {
            // The last block is moved back to end on the frame's last sample, recomputing a
            // few outputs, so that frames need not be a multiple of the block.
            let n0 = next.min(n - BLOCK);
            let delayed = &buf[n0 + HALF_SPAN..n0 + HALF_SPAN + BLOCK];
            for (group, &x) in interleaved.iter_mut().zip(delayed) {
                group[0] = x;
            }
            for (p, taps) in (1..L).zip(self.branches.iter()) {
                let mut acc = [0.0f32; BLOCK];
                fir_block(&mut acc, taps, window(buf, n0 + 1));
                for (group, &a) in interleaved.iter_mut().zip(&acc) {
                    group[p] = a;
                }
            }
            to_i16(
                &mut output[n0 * L..(n0 + BLOCK) * L],
                interleaved.as_flattened(),
            );
            if n0 + BLOCK == n {
                break;
            }
            next += BLOCK;
        }
        self.history[0].copy_from_slice(&buf[n..]);
    }

    /// Input phase `s` is the stream `x[t · M + s]`; output `n` is the centre tap on phase 0
    /// at `n − HALF_SPAN` plus, for each other phase, its branch over that phase's samples
    /// `n − TAPS ..= n − 1`.
    fn downsample_by<const M: usize>(&mut self, input: &[i16], output: &mut [i16]) {
        let n = output.len();
        let stride = TAPS + n;
        // See `upsample_by` for why this lives on the stack.
        let mut scratch = [0.0f32; MAX_RATIO * TAPS + MAX_FRAME_SAMPLES];
        let buf = &mut scratch[..M * stride];
        for (stream, past) in buf.chunks_exact_mut(stride).zip(self.history.iter()) {
            stream[..TAPS].copy_from_slice(past);
        }
        deinterleave::<M>(input, buf, stride);
        let buf = &*buf;
        let (phase0, others) = buf.split_at(stride);
        let centre = 1.0 / M as f32;
        let mut next = 0;
        loop {
            let n0 = next.min(n - BLOCK);
            let mut acc = [0.0f32; BLOCK];
            for (a, &x) in acc
                .iter_mut()
                .zip(&phase0[n0 + HALF_SPAN..n0 + HALF_SPAN + BLOCK])
            {
                *a = centre * x;
            }
            for (stream, taps) in others.chunks_exact(stride).zip(self.branches.iter()) {
                fir_block(&mut acc, taps, window(stream, n0));
            }
            to_i16(&mut output[n0..n0 + BLOCK], &acc);
            if n0 + BLOCK == n {
                break;
            }
            next += BLOCK;
        }
        for (past, stream) in self.history.iter_mut().zip(buf.chunks_exact(stride)) {
            past.copy_from_slice(&stream[n..]);
        }
    }
}

/// Splits the input into its `M` phases, after each stream's history.
fn deinterleave<const M: usize>(input: &[i16], streams: &mut [f32], stride: usize) {
    let (groups, _) = input.as_chunks::<M>();
    let n = groups.len();
    let mut lanes = streams
        .chunks_exact_mut(stride)
        .map(|s| &mut s[TAPS..TAPS + n]);
    let mut lanes: [&mut [f32]; M] =
        std::array::from_fn(|_| lanes.next().expect("one stream per phase"));
    for (t, group) in groups.iter().enumerate() {
        for (lane, &v) in lanes.iter_mut().zip(group) {
            lane[t] = f32::from(v);
        }
    }
}

/// The samples one block of outputs reads, as a fixed-size array so that the tap loop has
/// no bounds checks and unrolls.
fn window(stream: &[f32], start: usize) -> &[f32; TAPS + BLOCK - 1] {
    stream[start..start + TAPS + BLOCK - 1]
        .try_into()
        .expect("window within the stream")
}

/// `acc[b] += Σ taps[i] · window[i + b]`: outputs side by side in the vector lanes, so there
/// is no horizontal sum and no padding of the taps.
#[inline(always)]
fn fir_block(acc: &mut [f32; BLOCK], taps: &[f32; TAPS], window: &[f32; TAPS + BLOCK - 1]) {
    for (i, &c) in taps.iter().enumerate() {
        let w: &[f32; BLOCK] = window[i..i + BLOCK].try_into().expect("fixed sizes");
        for (a, &x) in acc.iter_mut().zip(w) {
            *a += c * x;
        }
    }
}

/// Rounds to the nearest integer and saturates, a whole slice at a time.
///
/// `f32::round` has no instruction on baseline x86-64 (it is a libm call per sample) and a
/// saturating `as i32` does not vectorise there; adding 1.5 · 2²³ instead leaves the
/// rounded integer in the low mantissa bits, so the whole conversion is an add, a subtract
/// and a pack.
#[inline(always)]
fn to_i16(out: &mut [i16], v: &[f32]) {
    const MAGIC: f32 = 12_582_912.0;
    for (o, &x) in out.iter_mut().zip(v) {
        let bits = (x.clamp(-32768.0, 32767.0) + MAGIC).to_bits() as i32;
        *o = (bits - MAGIC.to_bits() as i32) as i16;
    }
}

/// Branch `r` of the prototype for `ratio`, reversed and scaled to sum to `gain`.
///
/// Normalising each branch (rather than the whole filter) makes every branch pass DC
/// exactly, so a constant input leaves no tone at multiples of the lower rate.
fn branch(ratio: usize, r: usize, gain: f64) -> [f32; TAPS] {
    let mut taps = [0.0f64; TAPS];
    for (i, t) in taps.iter_mut().enumerate() {
        // Distance from the centre, in lower-rate samples; never 0 since r is not 0.
        let k = (TAPS - 1 - i) * ratio + r;
        let x = (k as f64 - (HALF_SPAN * ratio) as f64) / ratio as f64;
        let sinc = (PI * x).sin() / (PI * x);
        let u = x / HALF_SPAN as f64;
        let kaiser =
            bessel_i0(KAISER_BETA * (1.0 - u * u).max(0.0).sqrt()) / bessel_i0(KAISER_BETA);
        *t = sinc * kaiser;
    }
    let scale = gain / taps.iter().sum::<f64>();
    taps.map(|t| (t * scale) as f32)
}

/// The modified Bessel function of the first kind, order 0 (the Kaiser window's shape), by
/// its power series, which converges quickly for the small arguments a window needs.
fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let (mut sum, mut term) = (1.0, 1.0);
    for k in 1..64 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

impl FftEngine {
    fn new(from: SampleRate, to: SampleRate) -> Result<FftEngine, ResampleError> {
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
        Ok(FftEngine {
            fft,
            blocks,
            block_in,
            block_out,
            input: vec![0.0; block_in].into_boxed_slice(),
            output: vec![0.0; block_out].into_boxed_slice(),
        })
    }

    fn process(&mut self, input: &[i16], output: &mut [i16]) -> Result<(), ResampleError> {
        for b in 0..self.blocks {
            let src = &input[b * self.block_in..(b + 1) * self.block_in];
            for (dst, &s) in self.input.iter_mut().zip(src) {
                *dst = f32::from(s) * (1.0 / 32768.0);
            }
            let adapter_in = InterleavedSlice::new(&self.input[..], 1, self.block_in)
                .map_err(|err| ResampleError::Process(err.to_string()))?;
            let mut adapter_out =
                InterleavedSlice::new_mut(&mut self.output[..], 1, self.block_out)
                    .map_err(|err| ResampleError::Process(err.to_string()))?;
            self.fft
                .process_into_buffer(&adapter_in, &mut adapter_out, None)
                .map_err(|err| ResampleError::Process(err.to_string()))?;
            let dst = &mut output[b * self.block_out..(b + 1) * self.block_out];
            for (d, &y) in dst.iter_mut().zip(self.output.iter()) {
                *d = (y * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
