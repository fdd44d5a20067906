//! Signal generation and measurement for tests, benches and diagnostics.
//!
//! Audio tests across the project check what was *heard*, not that bytes moved: a tone's
//! frequency and level (Goertzel), its purity (the power of everything that is not the tone),
//! and the match between a sent and a received signal (normalised cross-correlation at the
//! best lag). These helpers allocate, so they never run inside the tick.

use std::f64::consts::PI;

use crate::rate::SampleRate;

/// Converts a level in dBFS to a linear amplitude (1.0 = full scale).
pub fn db_to_amplitude(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

/// Converts a linear amplitude or amplitude ratio to dB.
pub fn amplitude_to_db(a: f64) -> f64 {
    20.0 * a.max(1e-12).log10()
}

/// A sine of `freq` Hz at `level_dbfs`, `len` samples long, starting at phase zero.
///
/// ```
/// use chamade_media::{SampleRate, analysis::{sine, tone_amplitude}};
/// let s = sine(SampleRate::HZ_8000, 1000.0, -6.0, 8000);
/// let a = tone_amplitude(&s, SampleRate::HZ_8000, 1000.0);
/// assert!((a - 0.501).abs() < 0.01);
/// ```
pub fn sine(rate: SampleRate, freq: f64, level_dbfs: f64, len: usize) -> Vec<i16> {
    let amp = db_to_amplitude(level_dbfs) * 32767.0;
    let w = 2.0 * PI * freq / f64::from(rate.hz());
    (0..len)
        .map(|n| (amp * (w * n as f64).sin()).round() as i16)
        .collect()
}

/// Amplitude (1.0 = full scale) of the component at `freq` Hz, by the Goertzel algorithm.
///
/// Accurate when `freq` falls on or near a bin of the analysed length; use a whole number of
/// periods for exact figures.
pub fn tone_amplitude(samples: &[i16], rate: SampleRate, freq: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let w = 2.0 * PI * freq / f64::from(rate.hz());
    let (mut re, mut im) = (0.0f64, 0.0f64);
    for (n, &s) in samples.iter().enumerate() {
        let x = f64::from(s) / 32768.0;
        re += x * (w * n as f64).cos();
        im -= x * (w * n as f64).sin();
    }
    2.0 * (re * re + im * im).sqrt() / samples.len() as f64
}

/// Root-mean-square level, 1.0 = full-scale square wave.
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples
        .iter()
        .map(|&s| {
            let x = f64::from(s) / 32768.0;
            x * x
        })
        .sum();
    (sum / samples.len() as f64).sqrt()
}

/// How far everything that is not the tone lies below the tone, in dB (positive = cleaner).
///
/// The tone's exact amplitude and phase are fitted by least squares and subtracted; what is
/// left (distortion, aliasing, noise, imaging) is compared with the tone's power.
pub fn tone_to_residual_db(samples: &[i16], rate: SampleRate, freq: f64) -> f64 {
    let w = 2.0 * PI * freq / f64::from(rate.hz());
    let (mut ss, mut cc, mut sc, mut xs, mut xc) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (n, &v) in samples.iter().enumerate() {
        let x = f64::from(v) / 32768.0;
        let (s, c) = (w * n as f64).sin_cos();
        ss += s * s;
        cc += c * c;
        sc += s * c;
        xs += x * s;
        xc += x * c;
    }
    // Solve [ss sc; sc cc] [a b]' = [xs xc]'.
    let det = ss * cc - sc * sc;
    if det.abs() < 1e-12 {
        return 0.0;
    }
    let a = (xs * cc - xc * sc) / det;
    let b = (xc * ss - xs * sc) / det;
    let (mut tone, mut residual) = (0.0, 0.0);
    for (n, &v) in samples.iter().enumerate() {
        let x = f64::from(v) / 32768.0;
        let (s, c) = (w * n as f64).sin_cos();
        let fit = a * s + b * c;
        tone += fit * fit;
        residual += (x - fit) * (x - fit);
    }
    10.0 * (tone / residual.max(1e-30)).log10()
}

/// Normalised cross-correlation of `received` against `reference` at the best lag in
/// `0..=max_lag` (received lagging the reference). Returns `(correlation, lag)`.
///
/// 1.0 means identical up to gain; speech through G.711 and resampling stays above ~0.9.
pub fn best_correlation(reference: &[i16], received: &[i16], max_lag: usize) -> (f64, usize) {
    let mut best = (0.0, 0);
    for lag in 0..=max_lag {
        if lag >= received.len() {
            break;
        }
        let n = reference.len().min(received.len() - lag);
        if n == 0 {
            break;
        }
        let (mut xy, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..n {
            let x = f64::from(reference[i]);
            let y = f64::from(received[i + lag]);
            xy += x * y;
            xx += x * x;
            yy += y * y;
        }
        if xx > 0.0 && yy > 0.0 {
            let c = xy / (xx * yy).sqrt();
            if c > best.0 {
                best = (c, lag);
            }
        }
    }
    best
}

/// Reads s16le bytes into samples (an odd trailing byte is ignored).
pub fn samples_from_le(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// Writes samples as s16le bytes.
pub fn samples_to_le(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goertzel_measures_level_and_rejects_other_tones() {
        let r = SampleRate::HZ_48000;
        let s = sine(r, 1000.0, -6.0, 48_000);
        assert!((amplitude_to_db(tone_amplitude(&s, r, 1000.0)) + 6.0).abs() < 0.05);
        assert!(tone_amplitude(&s, r, 3000.0) < 1e-4);
    }

    #[test]
    fn a_clean_sine_has_a_tiny_residual_and_noise_a_large_one() {
        let r = SampleRate::HZ_8000;
        let clean = sine(r, 1000.0, -6.0, 8000);
        assert!(tone_to_residual_db(&clean, r, 1000.0) > 80.0);
        let mut dirty = clean.clone();
        for (i, s) in dirty.iter_mut().enumerate() {
            *s = s.saturating_add(if i % 2 == 0 { 500 } else { -500 });
        }
        let d = tone_to_residual_db(&dirty, r, 1000.0);
        assert!(d < 40.0 && d > 20.0, "{d}");
    }

    #[test]
    fn correlation_finds_the_lag() {
        let r = SampleRate::HZ_8000;
        let mut reference = sine(r, 300.0, -10.0, 800);
        reference.extend(sine(r, 770.0, -10.0, 800));
        let mut received = vec![0i16; 37];
        received.extend(reference.iter().map(|&s| s / 2));
        let (c, lag) = best_correlation(&reference, &received, 100);
        assert_eq!(lag, 37);
        assert!(c > 0.999);
    }
}
