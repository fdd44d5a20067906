//! Mix-minus cost per tick against the memory floor of the same work.
//!
//! `mix_minus/all_talk/N`: every participant talks (the worst case: N private mixes).
//! `mix_minus/two_talk/N`: two talkers, N − 2 silent listeners (the common case).
//! `floor_memcpy/N`: a plain copy of the same bytes (N input frames read, N output frames
//! written), which no mixer can beat.
//! All at 48 kHz (960 samples per participant-frame). Divide the time by N for ns per
//! participant-frame; `scripts/bench-report` does it.

use std::hint::black_box;

use chamade_media::SampleRate;
use chamade_media::analysis::sine;
use chamade_media::mixer::{MixMinus, MixMode, Slot};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const SIZES: [usize; 4] = [2, 10, 100, 1_000];

fn room(n: usize) -> (MixMinus, Vec<Slot>) {
    let rate = SampleRate::HZ_48000;
    let mut mixer = MixMinus::new(rate.frame_samples(), n);
    let slots: Vec<Slot> = (0..n)
        .map(|_| mixer.join(MixMode::Full).expect("room sized for n"))
        .collect();
    for (i, slot) in slots.iter().enumerate() {
        let tone = sine(rate, 200.0 + 37.0 * i as f64, -30.0, rate.frame_samples());
        mixer
            .input_mut(*slot)
            .expect("joined")
            .copy_from_slice(&tone);
    }
    (mixer, slots)
}

fn bench_mixer(c: &mut Criterion) {
    let mut group = c.benchmark_group("mixer_48k");
    for &n in &SIZES {
        group.throughput(Throughput::Elements(n as u64));

        let (mut mixer, slots) = room(n);
        group.bench_with_input(BenchmarkId::new("mix_minus/all_talk", n), &n, |b, _| {
            b.iter(|| {
                // Re-mark every input as fresh (the shard writes each input once per tick).
                for s in &slots {
                    black_box(mixer.input_mut(*s).expect("joined"));
                }
                mixer.mix();
                black_box(mixer.output(slots[0]).expect("joined"));
            })
        });

        let (mut mixer, slots) = room(n);
        group.bench_with_input(BenchmarkId::new("mix_minus/two_talk", n), &n, |b, _| {
            b.iter(|| {
                for (i, s) in slots.iter().enumerate() {
                    if i < 2 {
                        black_box(mixer.input_mut(*s).expect("joined"));
                    } else {
                        mixer.set_silent(*s).expect("joined");
                    }
                }
                mixer.mix();
                black_box(mixer.output(slots[n - 1]).expect("joined"));
            })
        });

        let inputs: Vec<Vec<i16>> = (0..n).map(|i| vec![i as i16; 960]).collect();
        let mut outputs: Vec<Vec<i16>> = (0..n).map(|_| vec![0i16; 960]).collect();
        group.bench_with_input(BenchmarkId::new("floor_memcpy", n), &n, |b, _| {
            b.iter(|| {
                for (o, i) in outputs.iter_mut().zip(&inputs) {
                    o.copy_from_slice(black_box(i));
                }
                black_box(&outputs);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_mixer);
criterion_main!(benches);
