use super::*;
use crate::analysis::{amplitude_to_db, sine, tone_amplitude, tone_to_residual_db};

/// Streams `signal` through `r` frame by frame.
fn run(r: &mut Resampler, signal: &[i16]) -> Vec<i16> {
    let (n_in, n_out) = (r.from_rate().frame_samples(), r.to_rate().frame_samples());
    let mut out = Vec::with_capacity(signal.len() * n_out / n_in);
    let mut buf = vec![0i16; n_out];
    for chunk in signal.chunks_exact(n_in) {
        r.process(chunk, &mut buf).unwrap();
        out.extend_from_slice(&buf);
    }
    out
}

/// A −6 dBFS 1 kHz sine at 48 kHz through `via` and back: same level within 0.5 dB, and
/// everything that is not the tone at least 50 dB below it.
fn round_trip_quality(via: SampleRate) -> (f64, f64) {
    let hi = SampleRate::HZ_48000;
    let input = sine(hi, 1000.0, -6.0, 48_000 * 2);
    let mut down = Resampler::new(hi, via).unwrap();
    let mut up = Resampler::new(via, hi).unwrap();
    let mid = run(&mut down, &input);
    let out = run(&mut up, &mid);
    // Skip the start-up transient and analyse one whole second (1000 periods).
    let settled = &out[9_600..9_600 + 48_000];
    let level = amplitude_to_db(tone_amplitude(settled, hi, 1000.0));
    let purity = tone_to_residual_db(settled, hi, 1000.0);
    eprintln!("48k→{via}→48k: level {level:.3} dBFS, residual {purity:.1} dB below the tone");
    (level, purity)
}

#[test]
fn sine_survives_48k_to_8k_and_back() {
    let (level, purity) = round_trip_quality(SampleRate::HZ_8000);
    assert!((level + 6.0).abs() <= 0.5, "level {level:.3} dBFS");
    assert!(
        purity >= 50.0,
        "residual only {purity:.1} dB below the tone"
    );
}

#[test]
fn sine_survives_48k_to_24k_and_back() {
    let (level, purity) = round_trip_quality(SampleRate::HZ_24000);
    assert!((level + 6.0).abs() <= 0.5, "level {level:.3} dBFS");
    assert!(
        purity >= 50.0,
        "residual only {purity:.1} dB below the tone"
    );
}

#[test]
fn sine_survives_44_1k_to_48k() {
    let from = SampleRate::HZ_44100;
    let to = SampleRate::HZ_48000;
    let input = sine(from, 1000.0, -6.0, 44_100 * 2);
    let mut r = Resampler::new(from, to).unwrap();
    let out = run(&mut r, &input);
    let settled = &out[9_600..9_600 + 48_000];
    assert!((amplitude_to_db(tone_amplitude(settled, to, 1000.0)) + 6.0).abs() <= 0.5);
    assert!(tone_to_residual_db(settled, to, 1000.0) >= 50.0);
}

#[test]
fn every_supported_pair_builds_with_exact_frame_sizes() {
    let rates = [
        8_000, 11_000, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000,
    ];
    for &a in &rates {
        for &b in &rates {
            let (a, b) = (SampleRate::new(a).unwrap(), SampleRate::new(b).unwrap());
            let mut r = Resampler::new(a, b).unwrap_or_else(|e| panic!("{a}→{b}: {e}"));
            let mut out = vec![0i16; b.frame_samples()];
            r.process(&vec![0i16; a.frame_samples()], &mut out).unwrap();
        }
    }
}

#[test]
fn stated_delay_matches_the_measured_delay() {
    // A click: its peak must come out `delay_samples` later, for every kind of pair.
    let pairs = [
        (8_000, 48_000),
        (48_000, 8_000),
        (44_100, 48_000),
        (22_050, 48_000),
        (48_000, 24_000),
    ];
    for (a, b) in pairs {
        let (from, to) = (SampleRate::new(a).unwrap(), SampleRate::new(b).unwrap());
        let mut r = Resampler::new(from, to).unwrap();
        let mut input = vec![0i16; from.frame_samples() * 10];
        let at = from.frame_samples() * 5;
        input[at] = 20_000;
        let out = run(&mut r, &input);
        let peak = out
            .iter()
            .enumerate()
            .max_by_key(|(_, s)| s.unsigned_abs())
            .map(|(i, _)| i)
            .unwrap();
        let expected = to.frame_samples() * 5 + r.delay_samples();
        assert!(
            peak.abs_diff(expected) <= 1,
            "{from}→{to}: peak at {peak}, expected {expected}"
        );
    }
}

#[test]
fn delay_is_5_ms_on_100hz_rates_and_10_ms_otherwise() {
    let r =
        |a, b| Resampler::new(SampleRate::new(a).unwrap(), SampleRate::new(b).unwrap()).unwrap();
    assert_eq!(r(8_000, 48_000).delay_us(), 5_000);
    assert_eq!(r(44_100, 48_000).delay_us(), 5_000);
    assert_eq!(r(22_050, 48_000).delay_us(), 10_000);
}

#[test]
fn same_rate_is_a_bit_exact_copy() {
    let mut r = Resampler::new(SampleRate::HZ_16000, SampleRate::HZ_16000).unwrap();
    assert!(r.is_passthrough());
    assert_eq!(r.delay_samples(), 0);
    let input: Vec<i16> = (0..320).map(|i| i * 7).collect();
    let mut out = vec![0i16; 320];
    r.process(&input, &mut out).unwrap();
    assert_eq!(out, input);
}

#[test]
fn wrong_lengths_are_errors_not_panics() {
    let mut r = Resampler::new(SampleRate::HZ_48000, SampleRate::HZ_16000).unwrap();
    let mut out = vec![0i16; 320];
    assert_eq!(
        r.process(&[0; 959], &mut out),
        Err(ResampleError::WrongLength {
            expected: 960,
            got: 959
        })
    );
    let mut short = vec![0i16; 100];
    assert!(r.process(&[0; 960], &mut short).is_err());
}

#[test]
fn full_scale_input_does_not_wrap() {
    let (from, to) = (SampleRate::HZ_8000, SampleRate::HZ_48000);
    let mut r = Resampler::new(from, to).unwrap();
    let square: Vec<i16> = (0..1600)
        .map(|i| {
            if (i / 20) % 2 == 0 {
                i16::MAX
            } else {
                i16::MIN
            }
        })
        .collect();
    let out = run(&mut r, &square);
    // Overshoot (Gibbs) is clipped, never wrapped into the opposite sign.
    for w in out.windows(2) {
        assert!((i32::from(w[0]) - i32::from(w[1])).abs() < 40_000);
    }
}
