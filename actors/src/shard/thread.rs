//! The shard threads: one OS thread per shard running its [`ShardCore`] on the 20 ms grid,
//! a disposal thread per shard that frees what the shard is done with, and the pool that
//! places rooms on the least loaded shard.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use chamade_media::SampleRate;
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError, bounded};

use super::clock::{Clock, DEFAULT_MAX_TICKS_PER_WAKE, SystemClock, TICK, TickSchedule};
use super::command::ShardCommand;
use super::core::{DEFAULT_ROOM_CAPACITY, ShardCore};
use super::media::RoomMedia;
use super::stats::{ShardSnapshot, ShardStats};
use crate::ids::RoomId;

/// A shard's position in its pool; also the `N` of its thread name `mixer-shard-N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardIndex(pub usize);

impl fmt::Display for ShardIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mixer shard {}", self.0)
    }
}

/// Sizes and bounds of one shard thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardConfig {
    /// Commands that may wait for the next tick; a full queue refuses sends (`Busy`)
    /// rather than blocking the async control plane.
    pub command_capacity: usize,
    /// Items that may wait for the disposal thread before the shard drops them itself.
    pub disposal_capacity: usize,
    /// Rooms the shard's table is reserved for.
    pub room_capacity: usize,
    /// Most ticks run on one wake-up after a stall (see [`TickSchedule::wake`]).
    pub max_ticks_per_wake: u32,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            command_capacity: 4_096,
            disposal_capacity: 1_024,
            room_capacity: DEFAULT_ROOM_CAPACITY,
            max_ticks_per_wake: DEFAULT_MAX_TICKS_PER_WAKE,
        }
    }
}

/// Why a command did not reach a shard; the command comes back so the caller can retry or
/// drop it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardSendError {
    /// The shard thread has ended (stopped, or died on a bug): internal, not transient.
    #[error("the mixer shard has stopped")]
    Stopped(ShardCommand),
    /// The command queue is full: the shard is far behind. Transient.
    #[error("the mixer shard's command queue is full")]
    Busy(ShardCommand),
    /// The pool has no shard with this index: the caller's bug.
    #[error("there is no {0}")]
    UnknownShard(ShardIndex, ShardCommand),
}

impl ShardSendError {
    /// Whether sending again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ShardSendError::Busy(_))
    }

    /// The command that was not delivered.
    pub fn into_command(self) -> ShardCommand {
        match self {
            ShardSendError::Stopped(c)
            | ShardSendError::Busy(c)
            | ShardSendError::UnknownShard(_, c) => c,
        }
    }
}

/// A shard or disposal thread ended by panicking (a bug; the shard's rooms went silent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} panicked")]
pub struct ShardPanicked(pub ShardIndex);

/// The mixer shard thread.
#[derive(Debug)]
pub struct MixerShard;

impl MixerShard {
    /// Starts shard `index` with the default configuration.
    pub fn spawn(index: ShardIndex) -> io::Result<ShardHandle> {
        MixerShard::spawn_with(index, ShardConfig::default())
    }

    /// Starts the threads `mixer-shard-N` (the tick) and `mixer-disposal-N` (frees what the
    /// shard is done with).
    pub fn spawn_with(index: ShardIndex, config: ShardConfig) -> io::Result<ShardHandle> {
        let (sender, commands) = bounded(config.command_capacity.max(1));
        let (disposal_tx, disposal_rx) = bounded(config.disposal_capacity.max(1));
        let mut core = ShardCore::with_room_capacity(disposal_tx, config.room_capacity);
        let stats = Arc::clone(core.stats());
        let disposal = thread::Builder::new()
            .name(format!("mixer-disposal-{}", index.0))
            .spawn(move || disposal_rx.into_iter().for_each(drop))?;
        let max_ticks = config.max_ticks_per_wake;
        let origin = Instant::now();
        let shard = thread::Builder::new()
            .name(format!("mixer-shard-{}", index.0))
            .spawn(move || {
                MixerShard::run(
                    &mut core,
                    &commands,
                    &mut SystemClock::starting_at(origin),
                    max_ticks,
                );
            })?;
        Ok(ShardHandle {
            index,
            origin,
            sender: Some(sender),
            stats,
            sent: AtomicU64::new(0),
            shard: Some(shard),
            disposal: Some(disposal),
        })
    }

    /// The shard loop, on any clock: sleep until the next grid deadline, then for each due
    /// tick drain the commands and tick. Returns, after handing every room to disposal,
    /// once the command channel is closed and empty.
    pub fn run<C: Clock>(
        core: &mut ShardCore,
        commands: &Receiver<ShardCommand>,
        clock: &mut C,
        max_ticks_per_wake: u32,
    ) {
        let stats = Arc::clone(core.stats());
        let mut schedule = TickSchedule::new(clock.now() + TICK, TICK, max_ticks_per_wake);
        loop {
            // While legs forward, the wait for the next tick is spent watching their
            // sockets, in whole milliseconds; the last fraction is slept precisely.
            loop {
                let now = clock.now();
                let remaining = schedule.next().saturating_sub(now);
                if core.forwarding_endpoints() == 0
                    || !clock.is_real()
                    || remaining < ARRIVAL_WAIT_MIN
                {
                    break;
                }
                core.wait_for_arrivals(remaining);
            }
            clock.sleep_until(schedule.next());
            let wake = schedule.wake(clock.now());
            stats.add_deadline_misses(wake.missed);
            stats.add_skipped_ticks(wake.skipped);
            for _ in 0..wake.run {
                let started = clock.now();
                if !drain(core, commands) {
                    core.shutdown();
                    return;
                }
                core.tick();
                stats.record_tick_duration(clock.now().saturating_sub(started));
            }
        }
    }
}

/// Below this much time before a tick, the shard sleeps instead of waiting on sockets
/// (epoll counts whole milliseconds).
const ARRIVAL_WAIT_MIN: std::time::Duration = std::time::Duration::from_millis(1);

/// Applies every queued command; false once the channel is closed and empty.
fn drain(core: &mut ShardCore, commands: &Receiver<ShardCommand>) -> bool {
    loop {
        match commands.try_recv() {
            Ok(command) => core.apply(command),
            Err(TryRecvError::Empty) => return true,
            Err(TryRecvError::Disconnected) => return false,
        }
    }
}

/// The control plane's handle on one shard thread. Dropping it stops the shard.
#[derive(Debug)]
pub struct ShardHandle {
    index: ShardIndex,
    /// Origin of the tick grid: ticks fall due at `origin + k × 20 ms` (k ≥ 1).
    origin: Instant,
    sender: Option<Sender<ShardCommand>>,
    stats: Arc<ShardStats>,
    /// Commands accepted into the queue, to count those not yet drained.
    sent: AtomicU64,
    shard: Option<JoinHandle<()>>,
    disposal: Option<JoinHandle<()>>,
}

impl ShardHandle {
    /// The shard's index.
    pub fn index(&self) -> ShardIndex {
        self.index
    }

    /// Origin of the shard's tick grid: its ticks fall due at `origin + k × 20 ms`. A leg
    /// that reads its output ring just after those instants sees each frame as soon as it
    /// exists, without polling in between.
    pub fn grid_origin(&self) -> Instant {
        self.origin
    }

    /// The shard's counters.
    pub fn stats(&self) -> &Arc<ShardStats> {
        &self.stats
    }

    /// Queues a command for the top of the next tick. Never blocks.
    pub fn send(&self, command: ShardCommand) -> Result<(), ShardSendError> {
        let Some(sender) = self.sender.as_ref() else {
            return Err(ShardSendError::Stopped(command));
        };
        match sender.try_send(command) {
            Ok(()) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(TrySendError::Full(c)) => Err(ShardSendError::Busy(c)),
            Err(TrySendError::Disconnected(c)) => Err(ShardSendError::Stopped(c)),
        }
    }

    /// Rooms + participants + queued commands: what placement compares.
    fn load(&self) -> u64 {
        self.stats.load(self.sent.load(Ordering::Relaxed))
    }

    /// Closes the command channel (the shard applies what is queued, disposes of its rooms
    /// and ends within a tick) and waits for both threads.
    pub fn stop(mut self) -> Result<(), ShardPanicked> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<(), ShardPanicked> {
        self.sender = None;
        let mut result = Ok(());
        for handle in [self.shard.take(), self.disposal.take()]
            .into_iter()
            .flatten()
        {
            if handle.join().is_err() {
                result = Err(ShardPanicked(self.index));
            }
        }
        result
    }
}

impl Drop for ShardHandle {
    fn drop(&mut self) {
        // A panic was already reported by the panicking thread; nothing more to do here.
        let _ = self.shut_down();
    }
}

/// Several shards (one per core by default), with rooms placed on the least loaded.
#[derive(Debug)]
pub struct MixerPool {
    shards: Vec<ShardHandle>,
}

impl MixerPool {
    /// Starts `n_shards` shards (at least one) with the default configuration.
    pub fn start(n_shards: usize) -> io::Result<MixerPool> {
        MixerPool::start_with(n_shards, ShardConfig::default())
    }

    /// Starts `n_shards` shards (at least one) with `config`.
    pub fn start_with(n_shards: usize, config: ShardConfig) -> io::Result<MixerPool> {
        let shards = (0..n_shards.max(1))
            .map(|i| MixerShard::spawn_with(ShardIndex(i), config))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(MixerPool { shards })
    }

    /// Shards in the pool.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard with the fewest rooms + participants (counting queued commands, so that
    /// rooms placed in a burst spread out before the shards have applied them).
    pub fn least_loaded(&self) -> ShardIndex {
        self.shards
            .iter()
            .min_by_key(|s| s.load())
            .map_or(ShardIndex(0), ShardHandle::index)
    }

    /// Builds a room mixing at `rate` for up to `max_participants` here, on the control
    /// plane, and adds it to the least loaded shard. Participants of the room must then be
    /// sent to the returned shard.
    pub fn place_room(
        &self,
        room: RoomId,
        rate: SampleRate,
        max_participants: usize,
    ) -> Result<ShardIndex, ShardSendError> {
        let shard = self.least_loaded();
        let media = Box::new(RoomMedia::new(rate, max_participants));
        self.send(shard, ShardCommand::AddRoom { room, media })?;
        Ok(shard)
    }

    /// Queues a command on one shard.
    pub fn send(&self, shard: ShardIndex, command: ShardCommand) -> Result<(), ShardSendError> {
        match self.shards.get(shard.0) {
            Some(handle) => handle.send(command),
            None => Err(ShardSendError::UnknownShard(shard, command)),
        }
    }

    /// The tick-grid origin of one shard (see [`ShardHandle::grid_origin`]).
    pub fn grid_origin(&self, shard: ShardIndex) -> Option<Instant> {
        self.shards.get(shard.0).map(ShardHandle::grid_origin)
    }

    /// One shard's live counters.
    pub fn shard_stats(&self, shard: ShardIndex) -> Option<&Arc<ShardStats>> {
        self.shards.get(shard.0).map(ShardHandle::stats)
    }

    /// Every shard's counters, in index order.
    pub fn stats(&self) -> Vec<ShardSnapshot> {
        self.shards.iter().map(|s| s.stats.snapshot()).collect()
    }

    /// Stops every shard and waits for them; reports the first that panicked.
    pub fn stop(self) -> Result<(), ShardPanicked> {
        let mut result = Ok(());
        for shard in self.shards {
            let stopped = shard.stop();
            if result.is_ok() {
                result = stopped;
            }
        }
        result
    }
}

#[cfg(test)]
mod tests;
