//! Mixer shards: the media plane's threads, each mixing many rooms every 20 ms.
//!
//! A shard owns its rooms outright; the control plane changes them only by sending
//! [`ShardCommand`]s, which the shard drains at the top of each tick. Everything a command
//! brings (rings, resamplers, buffers) is built by the control plane beforehand
//! ([`RoomMedia::new`], [`ParticipantMedia::new`]), and everything a shard lets go of is sent
//! back over a disposal channel ([`Disposed`]), so a tick neither allocates nor frees.
//!
//! The engine, [`ShardCore`], has no clock: one call to [`ShardCore::tick`] is one 20 ms
//! tick, which is how tests and benches drive it. [`MixerShard`] runs it on a named thread
//! against an absolute deadline grid ([`TickSchedule`]); [`MixerPool`] places rooms.
//!
//! One tick, as run by the thread:
//!
//! ```text
//! wake at the grid deadline; count ticks missed by a whole period; run at most 5
//! per due tick:
//!   drain commands (try_recv until empty): add/remove room or participant, set mode,
//!                                          add endpoint
//!   redo the forwarding plan of every room whose voices or listeners changed
//!   forwarding endpoints: forward what they hold to the listeners they serve
//!   for each endpoint (an RTP or SIP leg): before_mix — read its socket, push one frame
//!   for each room with participants:
//!     play_paced: an agent that is the one voice its listener hears moves one frame of
//!       its queue straight to that listener's output ring (two when a frame that missed
//!       the last tick catches up; silence once the queue stays dry); endpoints among the
//!       listeners send it before after_mix
//!     for each participant the paced pass did not take:
//!       flush its input ring if its leg asked (barge-in)
//!       pull one 20 ms frame from its input ring at its own rate
//!       audio (and it talks)  → resample leg rate → room rate into the mixer's input slot
//!       nothing / held tail  → set_silent (free); one silent frame still flushes the
//!                              input resampler's tail after an utterance
//!     mix(): sum talkers in i32, shared = saturate(sum), private = saturate(sum − own)
//!     for each participant that listens:
//!       Private (it talked) → its own resampler room → its rate
//!       Shared              → the room's lane for its rate, resampled once per tick
//!                             (a silent mix after a flushed lane costs a fill)
//!       push the whole frame to its output ring, or count an output overrun if full
//!   for each endpoint: after_mix — pull the frame just mixed, send it
//!   endpoints that are done go to disposal
//!   record the tick's duration in the histogram
//! ```
//!
//! Between ticks, while a room holds at most two voices, the thread waits on the sockets of
//! its forwarding legs instead of sleeping: a frame bound for the one participant who hears
//! only that leg is decoded, resampled and pushed to its output ring as it arrives, and the
//! tick skips that participant's output (see `replan` and `route` in `core.rs`).
//!
//! Every listener the tick serves gets exactly one frame per tick, silent or not, so a leg can pace itself
//! on its output ring. Overrun policy on output rings: the shard cannot discard the oldest
//! samples of an SPSC ring it only writes, so a full ring loses the newest frame and the
//! reader is expected to [`trim_to`](chamade_media::ring::PcmConsumer::trim_to) its latency
//! target before pulling.

mod clock;
mod command;
mod core;
mod endpoint;
mod media;
mod stats;
mod thread;

pub use clock::{Clock, DEFAULT_MAX_TICKS_PER_WAKE, SystemClock, TICK, TickSchedule, Wake};
pub use command::{Disposed, Rejection, ShardCommand};
pub use core::{DEFAULT_ROOM_CAPACITY, ShardCore, disposal_channel};
/// The channel ends the shard API speaks (commands in, disposals out).
pub use crossbeam_channel::{Receiver, Sender};
pub use endpoint::{Endpoint, Step};
pub use media::{LegEnds, OUTPUT_RING_MS, ParticipantMedia, RoomMedia, SharedLane};
pub use stats::{
    ParticipantSnapshot, ParticipantStats, RoomSnapshot, RoomStats, ShardSnapshot, ShardStats,
    TICK_BUCKET_BOUNDS_US, TICK_BUCKETS,
};
pub use thread::{
    MixerPool, MixerShard, ShardConfig, ShardHandle, ShardIndex, ShardPanicked, ShardSendError,
};

#[cfg(test)]
mod tests;
