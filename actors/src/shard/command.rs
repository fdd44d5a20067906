//! What the control plane tells a shard, and what the shard hands back to be dropped.

use chamade_media::SampleRate;
use chamade_media::mixer::MixMode;

use super::endpoint::Endpoint;
use super::media::{ParticipantMedia, RoomMedia, SharedLane};
use crate::ids::{ParticipantId, RoomId};

/// A change to a shard's rooms, applied at the top of the next tick.
///
/// Commands that bring media carry it boxed and fully built, so applying one moves a
/// pointer and never allocates.
#[derive(Debug)]
#[non_exhaustive]
pub enum ShardCommand {
    /// Start mixing a room (built with [`RoomMedia::new`]).
    AddRoom {
        /// The room's id; must not be in use on this shard.
        room: RoomId,
        /// Its mixer and tables.
        media: Box<RoomMedia>,
    },
    /// Stop mixing a room; it comes back, with any participants left in it, as
    /// [`Disposed::Room`].
    RemoveRoom {
        /// The room to remove.
        room: RoomId,
    },
    /// Seat a participant (built with [`ParticipantMedia::new`] for the room's rate).
    AddParticipant {
        /// The room to join.
        room: RoomId,
        /// The participant's id; must not be in use in that room.
        participant: ParticipantId,
        /// Its rings and resamplers.
        media: Box<ParticipantMedia>,
    },
    /// Unseat a participant; its media comes back as [`Disposed::Participant`].
    RemoveParticipant {
        /// The room it is in.
        room: RoomId,
        /// The participant to remove.
        participant: ParticipantId,
    },
    /// Run a participant's network I/O on the shard, around every mix (see
    /// [`Endpoint`]). Its participant must be seated in `room` already or by a command
    /// queued before this one; an endpoint for an unknown room is refused.
    AddEndpoint {
        /// The room its participant sits in.
        room: RoomId,
        /// The participant whose audio it carries.
        participant: ParticipantId,
        /// The endpoint; it leaves the shard when it returns [`Step::Done`](super::Step).
        endpoint: Box<dyn Endpoint>,
    },
    /// Change how a participant takes part (mute = `ListenOnly`, deafen = `SendOnly`).
    SetMode {
        /// The room it is in.
        room: RoomId,
        /// The participant.
        participant: ParticipantId,
        /// The new mode; a listening mode is refused for media built send-only.
        mode: MixMode,
    },
}

impl ShardCommand {
    /// The room the command is about.
    pub fn room(&self) -> RoomId {
        match self {
            ShardCommand::AddRoom { room, .. }
            | ShardCommand::RemoveRoom { room }
            | ShardCommand::AddParticipant { room, .. }
            | ShardCommand::RemoveParticipant { room, .. }
            | ShardCommand::SetMode { room, .. }
            | ShardCommand::AddEndpoint { room, .. } => *room,
        }
    }
}

/// Why a command was not applied. Refusals are counted in `rejected_commands` and the
/// command itself comes back as [`Disposed::Rejected`]; the shard never panics on one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// No room with this id on the shard.
    #[error("no {0} on this shard")]
    UnknownRoom(RoomId),
    /// A room with this id already exists on the shard.
    #[error("{0} already exists on this shard")]
    DuplicateRoom(RoomId),
    /// No such participant in the room.
    #[error("no {participant} in {room}")]
    UnknownParticipant {
        /// The room.
        room: RoomId,
        /// The missing participant.
        participant: ParticipantId,
    },
    /// The participant id is already seated in the room.
    #[error("{participant} is already in {room}")]
    DuplicateParticipant {
        /// The room.
        room: RoomId,
        /// The duplicate id.
        participant: ParticipantId,
    },
    /// The room has reached its maximum.
    #[error("{room} is full ({max} participants)")]
    RoomFull {
        /// The room.
        room: RoomId,
        /// Its maximum.
        max: usize,
    },
    /// The media was built for another room rate.
    #[error("{room} mixes at {room_rate}, the media was built for {media_rate}")]
    RateMismatch {
        /// The room.
        room: RoomId,
        /// The room's rate.
        room_rate: SampleRate,
        /// The rate the media was built for.
        media_rate: SampleRate,
    },
    /// A listening mode was asked for a participant built send-only (it has no output ring).
    #[error("{participant} in {room} was built send-only and cannot listen")]
    NoOutput {
        /// The room.
        room: RoomId,
        /// The participant.
        participant: ParticipantId,
    },
}

/// Media the shard is done with, sent over the disposal channel so that freeing rings and
/// FFT plans happens off the tick thread (songbird's disposal thread).
#[derive(Debug)]
#[non_exhaustive]
pub enum Disposed {
    /// A removed room, with whatever participants were still seated in it.
    Room {
        /// Its id.
        room: RoomId,
        /// Its mixer, tables and remaining members.
        media: Box<RoomMedia>,
    },
    /// A removed participant.
    Participant {
        /// The room it left.
        room: RoomId,
        /// Its id.
        participant: ParticipantId,
        /// Its rings and resamplers.
        media: Box<ParticipantMedia>,
    },
    /// A room's shared lane for a rate nobody in the room reads any more.
    Lane(Box<SharedLane>),
    /// An endpoint that finished, or whose room went away; dropping it closes its sockets.
    Endpoint(Box<dyn Endpoint>),
    /// A command that could not be applied, with the reason.
    Rejected {
        /// Why.
        reason: Rejection,
        /// The command, with any media it carried.
        command: ShardCommand,
    },
}
