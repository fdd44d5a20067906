//! Cost of one 20 ms frame through each codec the legs use: G.711 μ-law and A-law at
//! 8 kHz (160 samples), and Opus at 48 kHz (960 samples) and 16 kHz (320 samples).
//!
//! Run with `cargo bench --bench codec`. The input is one second of a speech-like signal (a
//! 130 Hz voiced source with formant-shaped harmonics, a syllable-rate envelope and a little
//! noise), cycled frame by frame. Digital silence would flatter Opus, which codes it almost
//! for free. Codec states are built once before measuring, as a leg does, so every figure is
//! the steady-state per-frame cost.

use std::f64::consts::TAU;
use std::hint::black_box;

use chamade_media::g711::{alaw, ulaw};
use chamade_media::opus::{MAX_PACKET_BYTES, OpusConfig, OpusDecoder, OpusEncoder};
use chamade_media::{FRAMES_PER_SECOND, Frame, SampleRate};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// One second of 20 ms frames, cycled by every bench.
const FRAMES: usize = FRAMES_PER_SECOND as usize;

/// Formant centres and widths (Hz) of an open vowel, used to shape the harmonics.
const FORMANTS: [(f64, f64); 3] = [(700.0, 130.0), (1_220.0, 70.0), (2_600.0, 160.0)];

/// One second of a vowel-like signal at `rate`, split into frames.
fn speech_like(rate: SampleRate) -> Vec<Frame> {
    let hz = f64::from(rate.hz());
    let fundamental = 130.0;
    let harmonics = ((hz / 2.0 - 200.0) / fundamental) as usize;
    let mut noise = 0x2545_F491_4F6C_DD1Du64;
    let samples: Vec<i16> = (0..rate.hz() as usize)
        .map(|n| {
            let t = n as f64 / hz;
            // Slow vibrato so no two frames are identical.
            let phase = TAU * fundamental * (t + 0.002 * (TAU * 5.0 * t).sin());
            let voiced: f64 = (1..=harmonics)
                .map(|k| {
                    let f = fundamental * k as f64;
                    let gain: f64 = FORMANTS
                        .iter()
                        .map(|&(centre, width)| 1.0 / (1.0 + ((f - centre) / width).powi(2)))
                        .sum();
                    (0.15 + gain) / k as f64 * (phase * k as f64).sin()
                })
                .sum();
            // Four syllables a second.
            let envelope = 0.2 + 0.8 * (TAU * 2.0 * t).sin().abs();
            noise ^= noise << 13;
            noise ^= noise >> 7;
            noise ^= noise << 17;
            let hiss = (noise >> 40) as f64 / f64::from(1u32 << 24) - 0.5;
            (6_000.0 * envelope * voiced + 300.0 * hiss).clamp(-32_768.0, 32_767.0) as i16
        })
        .collect();
    samples
        .chunks_exact(rate.frame_samples())
        .map(|chunk| Frame::from_samples(rate, chunk).expect("whole frames"))
        .collect()
}

fn g711(c: &mut Criterion) {
    let frames = speech_like(SampleRate::HZ_8000);
    let samples = SampleRate::HZ_8000.frame_samples();
    let mut ulaw_packets = vec![[0u8; 160]; FRAMES];
    let mut alaw_packets = vec![[0u8; 160]; FRAMES];
    for ((frame, u), a) in frames.iter().zip(&mut ulaw_packets).zip(&mut alaw_packets) {
        ulaw::encode(frame.samples(), u).expect("160 codes fit");
        alaw::encode(frame.samples(), a).expect("160 codes fit");
    }

    let mut group = c.benchmark_group("g711");
    group.throughput(Throughput::Elements(samples as u64));
    let mut codes = [0u8; 160];
    let mut pcm = [0i16; 160];

    let mut i = 0;
    group.bench_function("ulaw_encode", |b| {
        b.iter(|| {
            i = (i + 1) % FRAMES;
            black_box(ulaw::encode(black_box(frames[i].samples()), &mut codes))
        })
    });
    group.bench_function("ulaw_decode", |b| {
        b.iter(|| {
            i = (i + 1) % FRAMES;
            black_box(ulaw::decode(black_box(&ulaw_packets[i]), &mut pcm))
        })
    });
    group.bench_function("alaw_encode", |b| {
        b.iter(|| {
            i = (i + 1) % FRAMES;
            black_box(alaw::encode(black_box(frames[i].samples()), &mut codes))
        })
    });
    group.bench_function("alaw_decode", |b| {
        b.iter(|| {
            i = (i + 1) % FRAMES;
            black_box(alaw::decode(black_box(&alaw_packets[i]), &mut pcm))
        })
    });
    group.finish();
}

fn opus(c: &mut Criterion) {
    let mut group = c.benchmark_group("opus");
    for rate in [SampleRate::HZ_48000, SampleRate::HZ_16000] {
        let label = format!("{}kHz", rate.hz() / 1_000);
        let frames = speech_like(rate);
        let mut packet = [0u8; MAX_PACKET_BYTES];

        let mut encoder = OpusEncoder::new(rate, OpusConfig::default()).expect("Opus rate");
        let packets: Vec<Vec<u8>> = frames
            .iter()
            .map(|frame| {
                let len = encoder.encode(frame, &mut packet).expect("encode");
                packet[..len].to_vec()
            })
            .collect();

        group.throughput(Throughput::Elements(rate.frame_samples() as u64));
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("encode", &label), &frames, |b, frames| {
            b.iter(|| {
                i = (i + 1) % FRAMES;
                black_box(encoder.encode(black_box(&frames[i]), &mut packet))
            })
        });

        let mut decoder = OpusDecoder::new(rate).expect("Opus rate");
        let mut out = Frame::silence(rate);
        group.bench_with_input(
            BenchmarkId::new("decode", &label),
            &packets,
            |b, packets| {
                b.iter(|| {
                    i = (i + 1) % FRAMES;
                    black_box(decoder.decode(black_box(&packets[i]), &mut out))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, g711, opus);
criterion_main!(benches);
