//! Cost per 20 ms frame of the jitter buffer (push + pop) and of PCM loss concealment.
//!
//! Payloads are decoded PCM `Frame`s, the largest thing a leg stores (1,920 bytes), so the
//! figures include moving them in and out of the ring. Each iteration runs `FRAMES` ticks
//! on a buffer already in steady state, built in the setup closure.

use std::hint::black_box;

use chamade_media::jitter::{Concealer, FrameCount, JitterBuffer, JitterConfig, Playout};
use chamade_media::{Frame, SampleRate};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Ticks per measured iteration.
const FRAMES: u32 = 1_000;

/// A buffer that has been playing for a second, and the next sequence number to send.
struct Stream {
    jitter: JitterBuffer<Frame>,
    frame: Frame,
    next: u16,
}

impl Stream {
    fn new(config: JitterConfig) -> Stream {
        let frame = Frame::silence(SampleRate::HZ_48000);
        let mut stream = Stream {
            jitter: JitterBuffer::new(config),
            frame,
            next: 65_000,
        };
        stream.in_order(50);
        stream
    }

    /// One packet per tick, in order.
    fn in_order(&mut self, ticks: u32) -> usize {
        let mut played = 0;
        for _ in 0..ticks {
            self.jitter.push(self.next, self.frame.clone());
            self.next = self.next.wrapping_add(1);
            if let Playout::Packet(frame) = self.jitter.pop() {
                played += 1;
                black_box(frame);
            }
        }
        played
    }

    /// Every other packet one tick late, arriving together with its successor and after it:
    /// within the 40 ms depth, so nothing is lost once the buffer has settled.
    fn swapped_pairs(&mut self, ticks: u32) -> usize {
        let mut played = 0;
        for _ in 0..ticks / 2 {
            if let Playout::Packet(frame) = self.jitter.pop() {
                played += 1;
                black_box(frame);
            }
            self.jitter
                .push(self.next.wrapping_add(1), self.frame.clone());
            self.jitter.push(self.next, self.frame.clone());
            self.next = self.next.wrapping_add(2);
            if let Playout::Packet(frame) = self.jitter.pop() {
                played += 1;
                black_box(frame);
            }
        }
        played
    }
}

/// Makes sure the reordered stream really is reordering, not losing, once settled: the
/// figure would otherwise measure the loss path.
fn check_fixtures() {
    for (name, config) in configs() {
        let mut stream = Stream::new(config);
        stream.swapped_pairs(500);
        let before = stream.jitter.stats();
        let played = stream.swapped_pairs(FRAMES);
        let after = stream.jitter.stats();
        assert_eq!(played, FRAMES as usize, "{name}: every tick plays a packet");
        assert_eq!(after.lost, before.lost, "{name}: no loss");
        assert_eq!(after.late, before.late, "{name}: nothing late");
    }
}

fn configs() -> [(&'static str, JitterConfig); 2] {
    let fixed = JitterConfig::default();
    let adaptive = JitterConfig::adaptive(FrameCount::new(1), JitterConfig::DEFAULT_MAX_DEPTH)
        .expect("valid depths");
    [("fixed", fixed), ("adaptive", adaptive)]
}

fn push_pop(c: &mut Criterion) {
    check_fixtures();
    let mut group = c.benchmark_group("jitter_push_pop");
    group.throughput(Throughput::Elements(u64::from(FRAMES)));
    for (name, config) in configs() {
        group.bench_with_input(BenchmarkId::new("in_order", name), &config, |b, &config| {
            b.iter_batched_ref(
                || Stream::new(config),
                |s| s.in_order(FRAMES),
                BatchSize::SmallInput,
            );
        });
        group.bench_with_input(
            BenchmarkId::new("swapped_pairs", name),
            &config,
            |b, &config| {
                b.iter_batched_ref(
                    || Stream::new(config),
                    |s| s.swapped_pairs(FRAMES),
                    BatchSize::SmallInput,
                );
            },
        );
    }
    group.finish();
}

fn conceal(c: &mut Criterion) {
    let mut group = c.benchmark_group("jitter_conceal");
    group.throughput(Throughput::Elements(u64::from(FRAMES)));
    for rate in [SampleRate::HZ_8000, SampleRate::HZ_48000] {
        group.bench_with_input(
            BenchmarkId::new("good_then_lost", rate.hz()),
            &rate,
            |b, &rate| {
                b.iter_batched_ref(
                    || {
                        let samples: Vec<i16> = (0..rate.frame_samples())
                            .map(|i| (i as i16).wrapping_mul(97))
                            .collect();
                        let good = Frame::from_samples(rate, &samples).expect("one frame");
                        (
                            Concealer::new(rate, Concealer::DEFAULT_FADE),
                            good,
                            Frame::silence(rate),
                        )
                    },
                    |(concealer, good, out)| {
                        // One good frame then three lost, the pattern of a bad Wi-Fi burst.
                        for i in 0..FRAMES {
                            if i % 4 == 0 {
                                out.clone_from(good);
                                concealer.good(out);
                            } else {
                                concealer.conceal(out);
                            }
                            black_box(&*out);
                        }
                    },
                    BatchSize::SmallInput,
                );
            },
        );
    }
    group.finish();
}

criterion_group!(benches, push_pop, conceal);
criterion_main!(benches);
