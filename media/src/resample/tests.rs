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

/// Where the loudest sample is: a click's position after resampling.
fn loudest(out: &[i16]) -> usize {
    out.iter()
        .enumerate()
        .max_by_key(|(_, s)| s.unsigned_abs())
        .map_or(0, |(i, _)| i)
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
        let peak = loudest(&run(&mut r, &input));
        let expected = to.frame_samples() * 5 + r.delay_samples();
        assert!(
            peak.abs_diff(expected) <= 1,
            "{from}→{to}: peak at {peak}, expected {expected}"
        );
    }
}

#[test]
fn delay_is_2_ms_at_8k_whole_ratios_5_ms_on_100hz_rates_and_10_ms_otherwise() {
    let r =
        |a, b| Resampler::new(SampleRate::new(a).unwrap(), SampleRate::new(b).unwrap()).unwrap();
    assert_eq!(r(8_000, 48_000).delay_us(), 4_000);
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

/// Every pair of supported rates one of which is a whole multiple (≥ 2) of the other.
fn whole_ratio_pairs() -> Vec<(SampleRate, SampleRate)> {
    let rates = [
        8_000, 11_000, 12_000, 16_000, 22_000, 24_000, 32_000, 48_000,
    ];
    let mut pairs = Vec::new();
    for &a in &rates {
        for &b in &rates {
            if a != b && (a % b == 0 || b % a == 0) {
                pairs.push((SampleRate::new(a).unwrap(), SampleRate::new(b).unwrap()));
            }
        }
    }
    pairs
}

#[test]
fn whole_ratios_use_the_polyphase_filter_and_others_rubato() {
    for (a, b) in whole_ratio_pairs() {
        let r = Resampler::new(a, b).unwrap();
        assert!(
            matches!(r.engine, Engine::Up(_) | Engine::Down(_)),
            "{a}→{b}"
        );
        assert_eq!(
            r.delay_samples(),
            32 * (b.hz() / a.hz()).max(1) as usize,
            "{a}→{b}"
        );
    }
    for (a, b) in [
        (44_100, 48_000),
        (16_000, 24_000),
        (32_000, 48_000),
        (22_050, 8_000),
    ] {
        let r = Resampler::new(SampleRate::new(a).unwrap(), SampleRate::new(b).unwrap()).unwrap();
        assert!(matches!(r.engine, Engine::Fft(_)), "{a}→{b}");
    }
}

#[test]
fn whole_ratio_delay_is_exact() {
    // The filter is symmetric about a whole output sample, so a click comes out exactly
    // `delay_samples` late, wherever it falls in the frame.
    for (from, to) in whole_ratio_pairs() {
        for offset in [0, 1, 7, 16, from.frame_samples() - 1] {
            let mut r = Resampler::new(from, to).unwrap();
            let mut input = vec![0i16; from.frame_samples() * 10];
            // Downsampling keeps only every `ratio`-th position's exact timing.
            let step = (from.hz() / to.hz()).max(1) as usize;
            let at = from.frame_samples() * 5 + offset / step * step;
            input[at] = 20_000;
            let peak = loudest(&run(&mut r, &input));
            let expected = at * to.hz() as usize / from.hz() as usize + r.delay_samples();
            assert_eq!(peak, expected, "{from}→{to}, click at {at}");
        }
    }
}

#[test]
fn whole_ratio_response_is_the_same_wherever_the_frame_boundary_falls() {
    // The same click at every position of a frame (in steps of the decimation ratio, which
    // the output cannot resolve) must give the same response, shifted: the history carried
    // across frames and the blocks inside a frame join without a seam.
    for (from, to) in whole_ratio_pairs() {
        let (n_in, n_out) = (from.frame_samples(), to.frame_samples());
        let step = (from.hz() / to.hz()).max(1) as usize;
        let response = |offset: usize| {
            let mut r = Resampler::new(from, to).unwrap();
            let mut input = vec![0i16; n_in * 4];
            input[n_in + offset] = 30_000;
            let out = run(&mut r, &input);
            let start = (n_in + offset) * n_out / n_in;
            out[start..start + n_out].to_vec()
        };
        let reference = response(0);
        assert!(reference.iter().any(|&s| s != 0));
        for offset in (step..n_in).step_by(step) {
            assert_eq!(
                response(offset),
                reference,
                "{from}→{to}, click at +{offset}"
            );
        }
    }
}

/// Output levels (dBFS) at `freq` and at `probe` when a −6 dBFS tone of `freq` goes through
/// `from → to`.
fn tone_through(from: SampleRate, to: SampleRate, freq: f64, probe: f64) -> (f64, f64) {
    let mut r = Resampler::new(from, to).unwrap();
    let input = sine(from, freq, -6.0, from.hz() as usize * 2);
    let out = run(&mut r, &input);
    let settled = &out[to.frame_samples() * 10..][..to.hz() as usize];
    (
        amplitude_to_db(tone_amplitude(settled, to, freq)),
        amplitude_to_db(tone_amplitude(settled, to, probe)),
    )
}

#[test]
fn whole_ratio_keeps_the_telephone_band_and_rejects_images_and_aliases() {
    let (n, w) = (SampleRate::HZ_8000, SampleRate::HZ_16000);
    // 3 kHz passes within 0.5 dB both ways, and so do the telephone band's edge (3.4 kHz)
    // and the passband's (0.46 of 8 kHz), within 0.05 dB.
    for (freq, tolerance) in [(3_000.0, 0.5), (3_400.0, 0.05), (3_680.0, 0.05)] {
        let (up, _) = tone_through(n, w, freq, 0.0);
        let (down, _) = tone_through(w, n, freq, 0.0);
        eprintln!("{freq} Hz: 8k→16k {up:.4} dBFS, 16k→8k {down:.4} dBFS");
        assert!(
            (up + 6.0).abs() <= tolerance,
            "8k→16k {freq} Hz at {up:.3} dBFS"
        );
        assert!(
            (down + 6.0).abs() <= tolerance,
            "16k→8k {freq} Hz at {down:.3} dBFS"
        );
    }
    // 16k→8k: a 6 kHz tone would alias to 2 kHz, and 4.4 kHz (just past the transition,
    // 0.55 of 8 kHz) to 3.6 kHz, inside what a phone plays.
    let (_, alias) = tone_through(w, n, 6_000.0, 2_000.0);
    let (_, near) = tone_through(w, n, 4_400.0, 3_600.0);
    // 8k→16k: a 3 kHz tone images at 5 kHz.
    let (_, image) = tone_through(n, w, 3_000.0, 5_000.0);
    // 48k→8k: a 5 kHz tone (0.625 of 8 kHz) would alias to 3 kHz.
    let (_, alias48) = tone_through(SampleRate::HZ_48000, n, 5_000.0, 3_000.0);
    eprintln!(
        "alias of 6 kHz {alias:.1} dBFS, of 4.4 kHz {near:.1} dBFS, image of 3 kHz {image:.1} dBFS, 48k alias {alias48:.1} dBFS"
    );
    for (what, level) in [
        ("alias", alias),
        ("near alias", near),
        ("image", image),
        ("48k alias", alias48),
    ] {
        assert!(
            level <= -6.0 - 60.0,
            "{what} only {:.1} dB down",
            -6.0 - level
        );
    }
}

#[test]
fn whole_ratio_round_trips_are_70_db_clean() {
    for via in [
        SampleRate::HZ_8000,
        SampleRate::HZ_16000,
        SampleRate::HZ_24000,
    ] {
        let (level, purity) = round_trip_quality(via);
        assert!(
            (level + 6.0).abs() <= 0.5,
            "via {via}: level {level:.3} dBFS"
        );
        assert!(
            purity >= 70.0,
            "via {via}: residual only {purity:.1} dB below the tone"
        );
    }
}

#[test]
fn reset_returns_to_silence() {
    let pairs = [
        (SampleRate::HZ_8000, SampleRate::HZ_16000),
        (SampleRate::HZ_48000, SampleRate::HZ_8000),
        (SampleRate::HZ_44100, SampleRate::HZ_48000),
    ];
    for (from, to) in pairs {
        let mut r = Resampler::new(from, to).unwrap();
        let loud = sine(from, 1_000.0, -1.0, from.frame_samples() * 3);
        run(&mut r, &loud);
        r.reset();
        let after = run(&mut r, &vec![0i16; from.frame_samples() * 2]);
        assert!(
            after.iter().all(|&s| s == 0),
            "{from}→{to}: history survived reset"
        );
    }
}

/// µs per 20 ms frame of each engine, 10,000 frames each. The engines take turns in short
/// rounds and the best round counts, so that other load on the machine hurts both alike and
/// as little as possible. Run in release:
/// `cargo test --release -p chamade-media -- --ignored --nocapture engine_timing`.
#[test]
#[ignore = "a timing report, not a check"]
#[expect(clippy::disallowed_methods, reason = "a timing report reads the clock")]
fn engine_timing() {
    use std::hint::black_box;
    use std::time::Instant;
    const ROUNDS: usize = 20;
    const FRAMES: usize = 500;
    let pairs = [
        (8_000, 16_000),
        (16_000, 8_000),
        (8_000, 48_000),
        (48_000, 8_000),
        (16_000, 48_000),
        (48_000, 16_000),
        (24_000, 48_000),
        (48_000, 24_000),
    ];
    let round = |r: &mut Resampler, input: &[i16], out: &mut [i16]| {
        let start = Instant::now();
        for _ in 0..FRAMES {
            r.process(black_box(input), out).unwrap();
            black_box(&*out);
        }
        start.elapsed().as_secs_f64() * 1e6 / FRAMES as f64
    };
    for (a, b) in pairs {
        let (from, to) = (SampleRate::new(a).unwrap(), SampleRate::new(b).unwrap());
        let input = sine(from, 1000.0, -6.0, from.frame_samples());
        let mut out = vec![0i16; to.frame_samples()];
        let mut engines = [
            Resampler::with_fft(from, to).unwrap(),
            Resampler::new(from, to).unwrap(),
        ];
        let mut times = [[0.0; ROUNDS]; 2];
        for i in 0..ROUNDS {
            for (r, t) in engines.iter_mut().zip(times.iter_mut()) {
                t[i] = round(r, &input, &mut out);
            }
        }
        let [fft, poly] = times.map(|mut t| {
            t.sort_by(f64::total_cmp);
            (t[0], t[ROUNDS / 2])
        });
        eprintln!(
            "{a:>5} → {b:>5}: rubato {:.2} µs (median {:.2}), polyphase {:.2} µs (median {:.2})",
            fft.0, fft.1, poly.0, poly.1
        );
    }
}
