//! The server's handle on the mixer shards: opens a mixer room per call, seats agents in it
//! and takes them out again. Everything that allocates (rings, resamplers) is built here, on
//! the control plane, before a command reaches a shard.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chamade_actors::ids::{ParticipantId, RoomId};
use chamade_actors::shard::{
    Endpoint, LegEnds, MixerPool, ParticipantMedia, RoomMedia, RoomStats, ShardCommand, ShardIndex,
};
use chamade_media::SampleRate;
use chamade_media::mixer::MixMode;

/// Most participants one mixer room holds.
pub const MAX_ROOM_PARTICIPANTS: usize = 256;

/// Ring capacity, each way, of a leg that runs on its shard (see
/// [`MediaPlane::join_paced`]): it holds one frame at a time; the rest is slack.
const PACED_RING_MS: u64 = 200;

/// An agent's output ring: its session drops return audio beyond 200 ms anyway (a socket
/// that far behind should hear the present), so more would only be pages touched as the ring
/// wraps.
const AGENT_OUTPUT_RING_MS: u64 = 300;

/// Shard index bits in a mixer room id: the id names its shard, so no table is needed.
const SHARD_BITS: u32 = 8;

/// The mixer shards of this server.
pub struct MediaPlane {
    pool: MixerPool,
    next_room: AtomicU64,
}

/// An agent's seat in a mixer room: its ring ends and where it sits.
pub struct AgentLeg {
    /// The rings the agent writes to and reads from.
    pub ends: LegEnds,
    /// Origin of the room's shard tick grid: frames land in the output ring just after
    /// `grid + k × 20 ms`.
    pub grid: std::time::Instant,
    participant: u64,
}

impl AgentLeg {
    /// Asks the shard to drop everything the agent queued (barge-in); it happens at the
    /// top of the next tick, on the consumer's side of the ring.
    pub fn flush(&self) {
        self.ends.stats.request_flush();
    }

    /// The participant id it was seated under.
    pub fn participant(&self) -> u64 {
        self.participant
    }
}

/// Why audio could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The shards could not be started.
    #[error("cannot start the mixer: {0}")]
    Start(#[from] std::io::Error),
    /// A resampler could not be built for the requested rate.
    #[error("cannot carry audio at that rate: {0}")]
    Rate(String),
    /// The shard did not take the command (stopped or its queue is full).
    #[error("the mixer is unavailable: {0}")]
    Shard(String),
}

impl MediaPlane {
    /// Starts `shards` mixer threads.
    pub fn start(shards: usize) -> Result<MediaPlane, MediaError> {
        Ok(MediaPlane {
            pool: MixerPool::start(shards.clamp(1, 1 << SHARD_BITS))?,
            next_room: AtomicU64::new(1),
        })
    }

    fn shard_of(room: u64) -> ShardIndex {
        ShardIndex((room & ((1 << SHARD_BITS) - 1)) as usize)
    }

    /// Opens a mixer room at `rate` on the least loaded shard; returns its id and counters.
    pub fn open_room(&self, rate: SampleRate) -> Result<(u64, Arc<RoomStats>), MediaError> {
        let shard = self.pool.least_loaded();
        let id = (self.next_room.fetch_add(1, Ordering::Relaxed) << SHARD_BITS) | shard.0 as u64;
        let media = Box::new(RoomMedia::new(rate, MAX_ROOM_PARTICIPANTS));
        let stats = Arc::clone(media.stats());
        self.pool
            .send(
                shard,
                ShardCommand::AddRoom {
                    room: RoomId(id),
                    media,
                },
            )
            .map_err(|e| MediaError::Shard(e.to_string()))?;
        Ok((id, stats))
    }

    /// Closes a mixer room; its participants' rings are dropped off the tick thread.
    pub fn close_room(&self, room: u64) {
        let _ = self.pool.send(
            Self::shard_of(room),
            ShardCommand::RemoveRoom { room: RoomId(room) },
        );
    }

    /// Seats participant `participant` in `room` (mixing at `native`), writing and reading at
    /// `rate`.
    pub fn join(
        &self,
        room: u64,
        native: SampleRate,
        participant: u64,
        rate: SampleRate,
        mode: MixMode,
    ) -> Result<AgentLeg, MediaError> {
        let (media, ends) =
            ParticipantMedia::with_output_ms(native, rate, rate, mode, AGENT_OUTPUT_RING_MS)
                .map_err(|e| MediaError::Rate(e.to_string()))?;
        self.seat(room, participant, media, ends)
    }

    fn seat(
        &self,
        room: u64,
        participant: u64,
        media: ParticipantMedia,
        ends: LegEnds,
    ) -> Result<AgentLeg, MediaError> {
        self.pool
            .send(
                Self::shard_of(room),
                ShardCommand::AddParticipant {
                    room: RoomId(room),
                    participant: ParticipantId(participant),
                    media: Box::new(media),
                },
            )
            .map_err(|e| MediaError::Shard(e.to_string()))?;
        let grid = self
            .pool
            .grid_origin(Self::shard_of(room))
            .ok_or_else(|| MediaError::Shard(format!("no shard for room {room}")))?;
        Ok(AgentLeg {
            ends,
            grid,
            participant,
        })
    }

    /// Runs `endpoint` on the shard of `room`, around every mix, until it is done. Its
    /// participant must have been seated in `room` (by [`join`](Self::join)) before.
    pub fn attach(
        &self,
        room: u64,
        participant: u64,
        endpoint: Box<dyn Endpoint>,
    ) -> Result<(), MediaError> {
        self.pool
            .send(
                Self::shard_of(room),
                ShardCommand::AddEndpoint {
                    room: RoomId(room),
                    participant: ParticipantId(participant),
                    endpoint,
                },
            )
            .map_err(|e| MediaError::Shard(e.to_string()))
    }

    /// Seats a participant whose I/O will run on the shard as an [`Endpoint`] (an RTP or
    /// SIP leg): like [`join`](Self::join), with rings sized for one frame per tick.
    pub fn join_paced(
        &self,
        room: u64,
        native: SampleRate,
        participant: u64,
        rate: SampleRate,
        mode: MixMode,
    ) -> Result<AgentLeg, MediaError> {
        let (media, ends) = ParticipantMedia::paced(native, rate, mode, PACED_RING_MS)
            .map_err(|e| MediaError::Rate(e.to_string()))?;
        self.seat(room, participant, media, ends)
    }

    /// Takes a participant out of its room by id (when its leg is owned elsewhere).
    pub fn leave_leg(&self, room: u64, participant: u64) {
        let _ = self.pool.send(
            Self::shard_of(room),
            ShardCommand::RemoveParticipant {
                room: RoomId(room),
                participant: ParticipantId(participant),
            },
        );
    }

    /// Takes an agent out of its room.
    pub fn leave(&self, room: u64, leg: AgentLeg) {
        self.leave_leg(room, leg.participant);
    }

    /// Every shard's counters.
    pub fn stats(&self) -> Vec<chamade_actors::shard::ShardSnapshot> {
        self.pool.stats()
    }
}
