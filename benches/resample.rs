//! Resampling cost per 20 ms frame for the rate pairs the gateway meets most.

use std::hint::black_box;

use chamade_media::SampleRate;
use chamade_media::analysis::sine;
use chamade_media::resample::Resampler;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn bench_resample(c: &mut Criterion) {
    let pairs = [
        (8_000, 16_000),
        (16_000, 8_000),
        (48_000, 8_000),
        (8_000, 48_000),
        (48_000, 16_000),
        (16_000, 48_000),
        (48_000, 24_000),
        (24_000, 48_000),
        (44_100, 48_000),
    ];
    let mut group = c.benchmark_group("resample_frame");
    for (a, b) in pairs {
        let (from, to) = (
            SampleRate::new(a).expect("supported"),
            SampleRate::new(b).expect("supported"),
        );
        let input = sine(from, 1000.0, -6.0, from.frame_samples());
        let mut output = vec![0i16; to.frame_samples()];
        let mut r = Resampler::new(from, to).expect("supported pair");
        group.bench_function(
            BenchmarkId::from_parameter(format!("{a}_to_{b}")),
            |bench| {
                bench.iter(|| {
                    r.process(black_box(&input), &mut output)
                        .expect("frame sizes");
                    black_box(&output);
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_resample);
criterion_main!(benches);
