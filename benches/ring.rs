//! PCM ring cost per 20 ms frame: one write of a frame's bytes and one frame pull, the
//! work a leg and the mixer do per participant per tick.

use std::hint::black_box;

use chamade_media::ring::{RingConfig, pcm_ring};
use chamade_media::{SampleRate, analysis::samples_to_le, analysis::sine};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn bench_ring(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_frame");
    for rate in [SampleRate::HZ_8000, SampleRate::HZ_48000] {
        let bytes = samples_to_le(&sine(rate, 440.0, -10.0, rate.frame_samples()));
        let samples = sine(rate, 440.0, -10.0, rate.frame_samples());
        let mut out = vec![0i16; rate.frame_samples()];

        let (mut tx, mut rx) = pcm_ring(RingConfig::with_capacity_ms(rate, 1_000));
        group.bench_function(BenchmarkId::new("push_bytes_pull", rate.hz()), |b| {
            b.iter(|| {
                tx.push_bytes(black_box(&bytes));
                black_box(rx.pull_frame(&mut out));
            })
        });

        let (mut tx, mut rx) = pcm_ring(RingConfig::with_capacity_ms(rate, 1_000));
        group.bench_function(BenchmarkId::new("push_samples_pull", rate.hz()), |b| {
            b.iter(|| {
                tx.push_samples(black_box(&samples));
                black_box(rx.pull_frame(&mut out));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_ring);
criterion_main!(benches);
