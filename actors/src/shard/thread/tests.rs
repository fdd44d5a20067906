//! The shard loop on a stepped clock, then once on a real thread (counting, never timing).

use std::time::{Duration, Instant};

use chamade_media::SampleRate;
use chamade_media::analysis::sine;
use chamade_media::mixer::MixMode;
use chamade_media::ring::Pull;
use crossbeam_channel::bounded;

use super::*;
use crate::ids::ParticipantId;
use crate::shard::{Disposed, LegEnds, ParticipantMedia};

/// A clock that jumps to each deadline at once, arriving `lateness[i]` late on the i-th
/// sleep, and closes the command channel (ending the loop) after a given number of sleeps.
struct SteppedClock {
    now: Duration,
    lateness: Vec<Duration>,
    sleeps: usize,
    stop_after: usize,
    sender: Option<Sender<ShardCommand>>,
}

impl Clock for SteppedClock {
    fn now(&mut self) -> Duration {
        self.now
    }

    fn sleep_until(&mut self, deadline: Duration) {
        let late = self.lateness.get(self.sleeps).copied().unwrap_or_default();
        self.now = self.now.max(deadline) + late;
        self.sleeps += 1;
        if self.sleeps >= self.stop_after {
            self.sender = None;
        }
    }
}

fn participant(room_rate: SampleRate, rate: SampleRate) -> (Box<ParticipantMedia>, LegEnds) {
    let (media, ends) =
        ParticipantMedia::new(room_rate, rate, rate, MixMode::Full).expect("supported rates");
    (Box::new(media), ends)
}

#[test]
fn loop_on_a_stepped_clock_counts_misses_and_catches_up() {
    let (tx, rx) = bounded(16);
    let (disposal, disposed) = bounded(16);
    let mut core = ShardCore::new(disposal);
    let rate = SampleRate::HZ_48000;
    tx.send(ShardCommand::AddRoom {
        room: RoomId(1),
        media: Box::new(RoomMedia::new(rate, 2)),
    })
    .expect("open");
    let (media, mut leg) = participant(rate, SampleRate::HZ_16000);
    tx.send(ShardCommand::AddParticipant {
        room: RoomId(1),
        participant: ParticipantId(1),
        media,
    })
    .expect("open");
    // Sleeps 0–9 on time, sleep 10 arrives 3.5 ticks late, sleep 11 arrives 100 ticks late,
    // then on time until the 20th sleep closes the channel.
    let mut lateness = vec![Duration::ZERO; 20];
    lateness[3] = Duration::from_millis(7);
    lateness[10] = TICK * 3 + TICK / 2;
    lateness[11] = TICK * 100;
    let mut clock = SteppedClock {
        now: Duration::ZERO,
        lateness,
        sleeps: 0,
        stop_after: 20,
        sender: Some(tx),
    };
    MixerShard::run(&mut core, &rx, &mut clock, 5);

    let s = core.stats().snapshot();
    // 19 wakes tick (the 20th finds the channel closed): 17 run one tick each, the wake
    // 3.5 ticks late runs 4, the wake 100 ticks late runs 5 (the bound) and skips 96.
    assert_eq!(s.ticks, 17 + 4 + 5);
    assert_eq!(s.deadline_misses, 3 + 100);
    assert_eq!(s.skipped_ticks, 96);
    assert_eq!(s.tick_us.iter().sum::<u64>(), s.ticks);
    // One frame per tick reached the leg, and the shard handed its room back on the way out.
    let out = leg.output.as_mut().expect("listens");
    let mut frame = [0i16; 320];
    let mut frames = 0;
    while out.pull_frame(&mut frame) == Pull::Frame {
        frames += 1;
    }
    assert_eq!(frames, s.ticks);
    assert!(matches!(
        disposed.try_iter().collect::<Vec<_>>().as_slice(),
        [Disposed::Room { .. }]
    ));
    assert_eq!(core.rooms(), 0);
}

#[test]
fn real_shard_thread_mixes_until_stopped() {
    let shard = MixerShard::spawn(ShardIndex(0)).expect("spawn");
    let room = RoomId(7);
    let rate = SampleRate::HZ_48000;
    shard
        .send(ShardCommand::AddRoom {
            room,
            media: Box::new(RoomMedia::new(rate, 2)),
        })
        .expect("running");
    let (a, leg_a) = participant(rate, SampleRate::HZ_16000);
    let (b, mut leg_b) = participant(rate, SampleRate::HZ_24000);
    for (id, media) in [(1, a), (2, b)] {
        shard
            .send(ShardCommand::AddParticipant {
                room,
                participant: ParticipantId(id),
                media,
            })
            .expect("running");
    }
    let tone = sine(SampleRate::HZ_24000, 1000.0, -12.0, 24_000);
    leg_b.input.push_samples(&tone);

    let out = leg_a.output.as_ref().expect("listens");
    let deadline = Instant::now() + Duration::from_secs(5);
    while out.queued_samples() < 10 * SampleRate::HZ_16000.frame_samples() {
        assert!(Instant::now() < deadline, "no 10 frames within 5 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = Arc::clone(shard.stats());
    let s = stats.snapshot();
    assert_eq!((s.rooms, s.participants, s.rejected_commands), (1, 2, 0));
    shard.stop().expect("clean exit");
    // Read after the stop: a frame lands in the ring before its tick is counted.
    assert!(stats.snapshot().ticks >= 10);
    assert!(leg_b.stats.snapshot().frames_in >= 10);
}

#[test]
fn pool_spreads_rooms_over_shards_and_reports_unknown_shards() {
    let pool = MixerPool::start(2).expect("spawn");
    assert_eq!(pool.shard_count(), 2);
    let placed: Vec<ShardIndex> = (0..4)
        .map(|i| {
            pool.place_room(RoomId(i), SampleRate::HZ_48000, 4)
                .expect("running")
        })
        .collect();
    assert_eq!(placed.iter().filter(|s| s.0 == 0).count(), 2);
    assert_eq!(placed.iter().filter(|s| s.0 == 1).count(), 2);
    let err = pool
        .send(ShardIndex(5), ShardCommand::RemoveRoom { room: RoomId(0) })
        .expect_err("no such shard");
    assert!(!err.is_transient());
    assert!(matches!(
        err.into_command(),
        ShardCommand::RemoveRoom { room: RoomId(0) }
    ));
    assert_eq!(pool.stats().len(), 2);
    pool.stop().expect("clean exit");
}

#[test]
fn a_stopped_shard_refuses_commands_with_the_command_back() {
    let mut shard = MixerShard::spawn(ShardIndex(3)).expect("spawn");
    shard.shut_down().expect("clean exit");
    let err = shard
        .send(ShardCommand::RemoveRoom { room: RoomId(1) })
        .expect_err("stopped");
    assert!(matches!(err, ShardSendError::Stopped(_)));
}
