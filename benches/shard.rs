//! Cost of one shard tick (`ShardCore::tick`) for whole rooms: pulls, input resampling,
//! mix-minus, output resampling (shared lanes included) and pushes to the output rings.
//!
//! `shard_tick/50x2_24k_both_talk`: 50 rooms at 48 kHz, two agents at 24 kHz each, both
//! talking every tick (2 input and 2 private output resamples per room).
//! `shard_tick/10x10_16k_2_talkers`: 10 rooms at 48 kHz, ten participants at 16 kHz each,
//! two talking (2 input, 2 private and 1 shared resample per room).
//! The figure is the time of one tick over all rooms; the leg side (queueing input, reading
//! output) runs outside the measured time. Divide by the participant count (the throughput
//! element) for ns per participant-frame.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chamade_actors::ids::{ParticipantId, RoomId};
use chamade_actors::shard::{
    Disposed, LegEnds, ParticipantMedia, Receiver, RoomMedia, ShardCommand, ShardCore,
    disposal_channel,
};
use chamade_media::SampleRate;
use chamade_media::analysis::sine;
use chamade_media::mixer::MixMode;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

struct Fixture {
    core: ShardCore,
    talkers: Vec<LegEnds>,
    listeners: Vec<LegEnds>,
    frame: Vec<i16>,
    _disposed: Receiver<Disposed>,
}

fn fixture(rooms: u64, per_room: u64, talking: u64, rate: SampleRate) -> Fixture {
    let (tx, rx) = disposal_channel(1_024);
    let mut core = ShardCore::new(tx);
    let room_rate = SampleRate::HZ_48000;
    let (mut talkers, mut listeners) = (Vec::new(), Vec::new());
    for r in 0..rooms {
        let room = RoomId(r);
        core.apply(ShardCommand::AddRoom {
            room,
            media: Box::new(RoomMedia::new(room_rate, per_room as usize)),
        });
        for p in 0..per_room {
            let (media, ends) =
                ParticipantMedia::new(room_rate, rate, rate, MixMode::Full).expect("rates");
            core.apply(ShardCommand::AddParticipant {
                room,
                participant: ParticipantId(p),
                media: Box::new(media),
            });
            if p < talking {
                talkers.push(ends);
            } else {
                listeners.push(ends);
            }
        }
    }
    let frame = sine(rate, 440.0, -12.0, rate.frame_samples());
    Fixture {
        core,
        talkers,
        listeners,
        frame,
        _disposed: rx,
    }
}

impl Fixture {
    /// One tick, timed alone: the legs write before it and read after it.
    fn timed_tick(&mut self) -> Duration {
        for leg in &mut self.talkers {
            leg.input.push_samples(&self.frame);
        }
        let start = Instant::now();
        self.core.tick();
        let took = start.elapsed();
        for leg in self.talkers.iter_mut().chain(&mut self.listeners) {
            if let Some(out) = leg.output.as_mut() {
                black_box(out.trim_to(0));
            }
        }
        took
    }
}

fn bench_shard(c: &mut Criterion) {
    let mut group = c.benchmark_group("shard_tick");
    let cases = [
        ("50x2_24k_both_talk", 50, 2, 2, SampleRate::HZ_24000),
        ("10x10_16k_2_talkers", 10, 10, 2, SampleRate::HZ_16000),
    ];
    for (name, rooms, per_room, talking, rate) in cases {
        group.throughput(Throughput::Elements(rooms * per_room));
        let mut f = fixture(rooms, per_room, talking, rate);
        // Warm the resamplers and rings up before measuring.
        for _ in 0..10 {
            f.timed_tick();
        }
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| f.timed_tick()).sum())
        });
        let s = f.core.stats().snapshot();
        assert_eq!(s.rejected_commands, 0);
        assert_eq!(s.resample_errors, 0);
    }
    group.finish();
}

criterion_group!(benches, bench_shard);
criterion_main!(benches);
