//! Counters a shard publishes for the control plane and the metrics exporter.
//!
//! Only the shard thread writes them, with relaxed atomic adds and stores: a reader gets
//! each counter exactly, but a [`ShardSnapshot`] is not one atomic picture of all of them.
//! That is enough for metrics and for load placement, and costs the tick no fence.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chamade_media::ring::{RingSnapshot, RingStats};

/// Upper bounds (exclusive, in µs) of the tick-duration histogram buckets; one more bucket
/// holds every tick of 20 ms or more, i.e. a tick that used its whole period.
///
/// Fixed, roughly log-spaced bounds let the tick record a duration with a handful of
/// comparisons and no allocation, and still give the load driver a p50/p99 to the bucket.
pub const TICK_BUCKET_BOUNDS_US: [u64; 9] =
    [50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000];

/// Number of histogram buckets: one per bound plus the overflow bucket.
pub const TICK_BUCKETS: usize = TICK_BUCKET_BOUNDS_US.len() + 1;

/// A shard's counters, shared between the shard thread (writer) and the control plane.
#[derive(Debug, Default)]
pub struct ShardStats {
    ticks: AtomicU64,
    deadline_misses: AtomicU64,
    skipped_ticks: AtomicU64,
    rooms: AtomicU64,
    participants: AtomicU64,
    commands: AtomicU64,
    rejected_commands: AtomicU64,
    shared_resamples: AtomicU64,
    private_resamples: AtomicU64,
    resample_errors: AtomicU64,
    disposal_overflows: AtomicU64,
    tick_us: [AtomicU64; TICK_BUCKETS],
    max_tick_us: AtomicU64,
}

/// A point-in-time copy of [`ShardStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShardSnapshot {
    /// Ticks run (each mixes every non-empty room once).
    pub ticks: u64,
    /// Ticks whose whole 20 ms period had passed before the thread woke to run them.
    pub deadline_misses: u64,
    /// Ticks given up after a long stall, beyond the bounded catch-up: lost audio time.
    pub skipped_ticks: u64,
    /// Rooms currently owned.
    pub rooms: u64,
    /// Participants currently mixed, over all rooms.
    pub participants: u64,
    /// Commands drained from the control plane, applied or rejected.
    pub commands: u64,
    /// Commands ignored because they named an unknown room or participant, or could not be
    /// applied (room full, rate mismatch, duplicate id).
    pub rejected_commands: u64,
    /// Shared-mix frames resampled: at most one per room, distinct listener rate and tick.
    pub shared_resamples: u64,
    /// Private frames resampled on the way out (talkers' mix-minus, or a fallback).
    pub private_resamples: u64,
    /// Frames replaced by silence because a resampler failed (not expected once built).
    pub resample_errors: u64,
    /// Disposals dropped on the shard thread because the disposal queue was full.
    pub disposal_overflows: u64,
    /// Tick durations by bucket; see [`TICK_BUCKET_BOUNDS_US`].
    pub tick_us: [u64; TICK_BUCKETS],
    /// Longest tick measured, in µs.
    pub max_tick_us: u64,
}

impl ShardSnapshot {
    /// The upper bound (µs) of the bucket holding quantile `q` (0.0–1.0) of tick durations,
    /// or `None` before any tick was measured. The overflow bucket reports `u64::MAX`.
    pub fn tick_quantile_us(&self, q: f64) -> Option<u64> {
        let total: u64 = self.tick_us.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.tick_us.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(TICK_BUCKET_BOUNDS_US.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        Some(u64::MAX)
    }
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl ShardStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> ShardSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ShardSnapshot {
            ticks: r(&self.ticks),
            deadline_misses: r(&self.deadline_misses),
            skipped_ticks: r(&self.skipped_ticks),
            rooms: r(&self.rooms),
            participants: r(&self.participants),
            commands: r(&self.commands),
            rejected_commands: r(&self.rejected_commands),
            shared_resamples: r(&self.shared_resamples),
            private_resamples: r(&self.private_resamples),
            resample_errors: r(&self.resample_errors),
            disposal_overflows: r(&self.disposal_overflows),
            tick_us: std::array::from_fn(|i| r(&self.tick_us[i])),
            max_tick_us: r(&self.max_tick_us),
        }
    }

    /// Rooms plus participants, plus commands sent but not yet drained: the load figure
    /// [`MixerPool`](super::MixerPool) places new rooms by.
    pub(crate) fn load(&self, commands_sent: u64) -> u64 {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let pending = commands_sent.saturating_sub(r(&self.commands));
        r(&self.rooms) + r(&self.participants) + pending
    }

    /// Records how long one tick took; called by the thread that owns the clock.
    pub fn record_tick_duration(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let bucket = TICK_BUCKET_BOUNDS_US
            .iter()
            .position(|&bound| us < bound)
            .unwrap_or(TICK_BUCKETS - 1);
        bump(&self.tick_us[bucket], 1);
        self.max_tick_us.fetch_max(us, Ordering::Relaxed);
    }

    pub(crate) fn tick_done(&self) {
        bump(&self.ticks, 1);
    }

    pub(crate) fn add_deadline_misses(&self, n: u64) {
        bump(&self.deadline_misses, n);
    }

    pub(crate) fn add_skipped_ticks(&self, n: u64) {
        bump(&self.skipped_ticks, n);
    }

    pub(crate) fn set_population(&self, rooms: usize, participants: usize) {
        self.rooms.store(rooms as u64, Ordering::Relaxed);
        self.participants
            .store(participants as u64, Ordering::Relaxed);
    }

    pub(crate) fn command(&self) {
        bump(&self.commands, 1);
    }

    pub(crate) fn rejected(&self) {
        bump(&self.rejected_commands, 1);
    }

    pub(crate) fn shared_resample(&self) {
        bump(&self.shared_resamples, 1);
    }

    pub(crate) fn private_resample(&self) {
        bump(&self.private_resamples, 1);
    }

    pub(crate) fn resample_error(&self) {
        bump(&self.resample_errors, 1);
    }

    pub(crate) fn disposal_overflow(&self) {
        bump(&self.disposal_overflows, 1);
    }
}

/// One participant's counters, shared by the shard (writer), the leg and the control plane,
/// plus the one request a leg makes of the shard without a command: flushing its input.
#[derive(Debug)]
pub struct ParticipantStats {
    flush_requested: AtomicBool,
    frames_in: AtomicU64,
    frames_silent: AtomicU64,
    frames_out: AtomicU64,
    output_overruns: AtomicU64,
    /// The last frame pushed to the output ring: its tick shifted left by one, plus 1 when
    /// it was the room's shared mix (see [`ParticipantStats::last_output`]).
    last_output: AtomicU64,
    /// Set while the participant hears one voice forwarded as it arrives, not the tick.
    forwarded: AtomicBool,
    /// Woken when a forwarded frame lands in the output ring between ticks, so that the
    /// reader sends it at once instead of at its next tick-aligned read.
    output_ready: tokio::sync::Notify,
    input_ring: Arc<RingStats>,
    output_ring: Option<Arc<RingStats>>,
}

/// A point-in-time copy of [`ParticipantStats`] and of its rings' counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParticipantSnapshot {
    /// Ticks whose pull from the input ring carried audio (whole or padded frame).
    pub frames_in: u64,
    /// Ticks whose pull found nothing or a held partial frame: the participant was silent.
    pub frames_silent: u64,
    /// Frames pushed to the output ring.
    pub frames_out: u64,
    /// Frames dropped because the output ring had no room for a whole frame.
    pub output_overruns: u64,
    /// The input ring's own counters (underruns, write overruns, idle pulls…).
    pub input_ring: RingSnapshot,
    /// The output ring's counters (samples the reader trimmed…), if it listens.
    pub output_ring: Option<RingSnapshot>,
}

impl ParticipantStats {
    /// The shard tick of the last frame pushed to the output ring, and whether it was the
    /// room's shared mix (the participant did not talk, so it hears everyone) rather than
    /// its private mix-minus. Legs that encode on the shard, right after the mix, use it to
    /// share one encode of the shared mix between every listener of the room that got it.
    pub fn last_output(&self) -> (u64, bool) {
        let v = self.last_output.load(Ordering::Relaxed);
        (v >> 1, v & 1 == 1)
    }

    pub(crate) fn set_last_output(&self, tick: u64, shared: bool) {
        self.last_output
            .store((tick << 1) | u64::from(shared), Ordering::Relaxed);
    }

    pub(crate) fn new(input_ring: Arc<RingStats>, output_ring: Option<Arc<RingStats>>) -> Self {
        ParticipantStats {
            flush_requested: AtomicBool::new(false),
            frames_in: AtomicU64::new(0),
            frames_silent: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            output_overruns: AtomicU64::new(0),
            last_output: AtomicU64::new(0),
            forwarded: AtomicBool::new(false),
            output_ready: tokio::sync::Notify::new(),
            input_ring,
            output_ring,
        }
    }

    /// Whether the participant's output is forwarded from a single voice as it arrives
    /// (frames then land between ticks, signalled through
    /// [`output_ready`](Self::output_ready)) rather than mixed on the tick.
    pub fn is_forwarded(&self) -> bool {
        self.forwarded.load(Ordering::Relaxed)
    }

    pub(crate) fn set_forwarded(&self, on: bool) {
        self.forwarded.store(on, Ordering::Relaxed);
    }

    /// Notified each time a forwarded frame lands in the output ring.
    pub fn output_ready(&self) -> &tokio::sync::Notify {
        &self.output_ready
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> ParticipantSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ParticipantSnapshot {
            frames_in: r(&self.frames_in),
            frames_silent: r(&self.frames_silent),
            frames_out: r(&self.frames_out),
            output_overruns: r(&self.output_overruns),
            input_ring: self.input_ring.snapshot(),
            output_ring: self.output_ring.as_deref().map(RingStats::snapshot),
        }
    }

    /// The input ring's counters, live: underruns and write overruns of the leg's audio.
    pub fn input_ring(&self) -> &RingStats {
        &self.input_ring
    }

    /// The output ring's counters, live, for a participant that listens.
    pub fn output_ring(&self) -> Option<&RingStats> {
        self.output_ring.as_deref()
    }

    /// Asks the shard to drop everything queued in the input ring (barge-in). Only the
    /// ring's consumer can discard queued audio, and that end lives on the shard, so the
    /// flush happens at the top of the next tick; samples written after it are kept only
    /// if they arrive after that tick's pull.
    pub fn request_flush(&self) {
        self.flush_requested.store(true, Ordering::Release);
    }

    /// Takes a pending flush request (shard side). A plain load first keeps the common
    /// case, no request, free of a read-modify-write.
    pub(crate) fn take_flush_request(&self) -> bool {
        self.flush_requested.load(Ordering::Relaxed)
            && self.flush_requested.swap(false, Ordering::Acquire)
    }

    pub(crate) fn frame_in(&self) {
        bump(&self.frames_in, 1);
    }

    pub(crate) fn frame_silent(&self) {
        bump(&self.frames_silent, 1);
    }

    pub(crate) fn frame_out(&self) {
        bump(&self.frames_out, 1);
    }

    pub(crate) fn output_overrun(&self) {
        bump(&self.output_overruns, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_durations_land_in_their_buckets() {
        let stats = ShardStats::default();
        stats.record_tick_duration(Duration::from_micros(10));
        stats.record_tick_duration(Duration::from_micros(50));
        stats.record_tick_duration(Duration::from_micros(999));
        stats.record_tick_duration(Duration::from_millis(25));
        let s = stats.snapshot();
        assert_eq!(s.tick_us, [1, 1, 0, 0, 1, 0, 0, 0, 0, 1]);
        assert_eq!(s.max_tick_us, 25_000);
        assert_eq!(s.tick_quantile_us(0.5), Some(100));
        assert_eq!(s.tick_quantile_us(0.75), Some(1_000));
        assert_eq!(s.tick_quantile_us(1.0), Some(u64::MAX));
        assert_eq!(ShardSnapshot::default().tick_quantile_us(0.5), None);
    }
}

/// One room's counters, written by its shard and read by the control plane (an agent sees
/// them in `call_stats`): how often the room was mixed, and how much of it was talk.
#[derive(Debug)]
pub struct RoomStats {
    ticks: AtomicU64,
    silent_ticks: AtomicU64,
    talker_frames: AtomicU64,
    max_talkers: AtomicU64,
    forwarding: AtomicBool,
    forwarded_frames: AtomicU64,
    caught_up_frames: AtomicU64,
    mode_switches: AtomicU64,
}

impl Default for RoomStats {
    /// A new room has no voices, so it starts forwarding: its first two voices are
    /// forwarded without a switch.
    fn default() -> Self {
        RoomStats {
            ticks: AtomicU64::new(0),
            silent_ticks: AtomicU64::new(0),
            talker_frames: AtomicU64::new(0),
            max_talkers: AtomicU64::new(0),
            forwarding: AtomicBool::new(true),
            forwarded_frames: AtomicU64::new(0),
            caught_up_frames: AtomicU64::new(0),
            mode_switches: AtomicU64::new(0),
        }
    }
}

/// A point-in-time copy of [`RoomStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoomSnapshot {
    /// Ticks the room was mixed (rooms with nobody seated are not).
    pub ticks: u64,
    /// Of those, ticks in which nobody talked.
    pub silent_ticks: u64,
    /// Talker frames mixed, over all ticks (a tick with two talkers counts two).
    pub talker_frames: u64,
    /// Most talkers in one tick.
    pub max_talkers: u64,
    /// Whether the room holds at most two voices and forwards each one's frames to the
    /// other as they arrive (the fast path), rather than mixing every voice on the tick.
    pub forwarding: bool,
    /// Frames delivered by the fast path, as they arrived.
    pub forwarded_frames: u64,
    /// Frames of an agent's paced audio that missed their tick and left with the next
    /// one, so that a late frame never leaves standing latency behind.
    pub caught_up_frames: u64,
    /// Switches between forwarding and mixing.
    pub mode_switches: u64,
}

impl RoomStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> RoomSnapshot {
        RoomSnapshot {
            ticks: self.ticks.load(Ordering::Relaxed),
            silent_ticks: self.silent_ticks.load(Ordering::Relaxed),
            talker_frames: self.talker_frames.load(Ordering::Relaxed),
            max_talkers: self.max_talkers.load(Ordering::Relaxed),
            forwarding: self.forwarding.load(Ordering::Relaxed),
            forwarded_frames: self.forwarded_frames.load(Ordering::Relaxed),
            caught_up_frames: self.caught_up_frames.load(Ordering::Relaxed),
            mode_switches: self.mode_switches.load(Ordering::Relaxed),
        }
    }

    /// Records the room's mode; a change counts as a switch.
    pub(crate) fn set_forwarding(&self, on: bool) {
        if self.forwarding.swap(on, Ordering::Relaxed) != on {
            self.mode_switches.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn forwarded(&self) {
        self.forwarded_frames.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn caught_up(&self) {
        self.caught_up_frames.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_tick(&self, talkers: u64) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
        if talkers == 0 {
            self.silent_ticks.fetch_add(1, Ordering::Relaxed);
        } else {
            self.talker_frames.fetch_add(talkers, Ordering::Relaxed);
            self.max_talkers.fetch_max(talkers, Ordering::Relaxed);
        }
    }
}
