//! What a room and a participant bring to a shard: every ring, resampler and buffer the
//! tick will touch, built by the control plane before the command is sent.
//!
//! The tick thread never allocates, so nothing here is built lazily. A participant that
//! listens even brings a spare shared-mix resampler for its output rate: if it is the first
//! listener at that rate in its room, the room adopts the spare as the rate's shared lane;
//! otherwise the spare rides along unused and leaves with it. Heavy drops go the other way,
//! over the disposal channel (see [`Disposed`](super::Disposed)).

use std::fmt;
use std::sync::Arc;

use chamade_media::SampleRate;
use chamade_media::mixer::{MixMinus, MixMode, Slot};
use chamade_media::resample::{ResampleError, Resampler};
use chamade_media::ring::{PcmConsumer, PcmProducer, RingConfig, pcm_ring};

use super::stats::{ParticipantStats, RoomStats};
use crate::ids::ParticipantId;

/// Capacity of an output ring. A reader that keeps up holds a frame or two; the rest is
/// slack for a reader that stalls briefly, which should `trim_to` its target latency.
pub const OUTPUT_RING_MS: u64 = 1_000;

/// Whether a mode receives the mix (mirrors the mixer's own rule).
pub(crate) fn listens(mode: MixMode) -> bool {
    !matches!(mode, MixMode::SendOnly)
}

/// Whether a mode contributes to the mix.
pub(crate) fn talks(mode: MixMode) -> bool {
    !matches!(mode, MixMode::ListenOnly)
}

/// The shared-mix resampler of one output rate in one room: every listener at that rate who
/// did not talk this tick hears the same frame, so it is resampled once.
///
/// Opaque: it only travels from a participant to its room and, when the room's last
/// listener at its rate leaves, to the disposal channel.
pub struct SharedLane {
    pub(crate) rate: SampleRate,
    pub(crate) resampler: Resampler,
    pub(crate) buf: Box<[i16]>,
    /// Tick that last produced `buf`; resampler history is only valid if it is the previous.
    pub(crate) last_fed: u64,
    /// The resampler's history is all zeros, so a silent mix resamples to silence for free.
    pub(crate) quiet: bool,
}

impl fmt::Debug for SharedLane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLane")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

/// The way out of the shard for a participant that listens.
pub(crate) struct OutputPath {
    pub(crate) ring: PcmProducer,
    /// Room rate → the participant's rate, for its private mix-minus.
    pub(crate) resampler: Resampler,
    pub(crate) buf: Box<[i16]>,
    pub(crate) last_fed: u64,
    /// A shared lane for this rate, held until the room needs it (`None` while the room
    /// uses the one this participant brought, and for a rate equal to the room's).
    pub(crate) spare_lane: Option<Box<SharedLane>>,
}

/// One participant's media, owned by the shard while it is in a room.
///
/// Built with [`ParticipantMedia::new`] on the control plane; the leg keeps the other ends
/// ([`LegEnds`]).
pub struct ParticipantMedia {
    pub(crate) mode: MixMode,
    pub(crate) room_rate: SampleRate,
    pub(crate) rate_in: SampleRate,
    pub(crate) rate_out: SampleRate,
    pub(crate) input: PcmConsumer,
    /// The leg's rate → the room's rate.
    pub(crate) in_resampler: Resampler,
    pub(crate) in_buf: Box<[i16]>,
    /// Tick of the last frame fed to `in_resampler`.
    pub(crate) in_last_fed: u64,
    /// Tick of the last pull that carried audio: the tick after it flushes the resampler's
    /// delayed tail with one frame of silence.
    pub(crate) in_last_audio: u64,
    pub(crate) output: Option<OutputPath>,
    pub(crate) stats: Arc<ParticipantStats>,
}

/// The leg's ends of a participant's media.
pub struct LegEnds {
    /// Where the leg writes its audio, at the participant's input rate, in chunks of any
    /// size. The ring holds 30 s so a whole utterance can be queued at once.
    pub input: PcmProducer,
    /// Where the leg reads what the participant hears (everyone but itself) at its output
    /// rate, one 20 ms frame per tick; `None` for a send-only participant.
    ///
    /// The shard never blocks on it: when it is full the new frame is dropped and counted as
    /// an output overrun. A reader that can fall behind should call
    /// [`PcmConsumer::trim_to`] before pulling, with its latency target (say two frames), so
    /// that it hears the present rather than a backlog.
    pub output: Option<PcmConsumer>,
    /// The participant's counters, shared with the shard.
    pub stats: Arc<ParticipantStats>,
}

impl fmt::Debug for LegEnds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegEnds")
            .field("rate_in", &self.input.rate())
            .field("rate_out", &self.output.as_ref().map(PcmConsumer::rate))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ParticipantMedia {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParticipantMedia")
            .field("mode", &self.mode)
            .field("room_rate", &self.room_rate)
            .field("rate_in", &self.rate_in)
            .field("rate_out", &self.rate_out)
            .field("listens", &self.output.is_some())
            .finish_non_exhaustive()
    }
}

impl ParticipantMedia {
    /// Builds everything a participant needs in a room mixing at `room_rate`: the leg
    /// writes at `rate_in` and reads at `rate_out`. A participant built `SendOnly` gets no
    /// output ring and can never be switched to listening.
    pub fn new(
        room_rate: SampleRate,
        rate_in: SampleRate,
        rate_out: SampleRate,
        mode: MixMode,
    ) -> Result<(ParticipantMedia, LegEnds), ResampleError> {
        Self::with_output_ms(room_rate, rate_in, rate_out, mode, OUTPUT_RING_MS)
    }

    /// [`new`](Self::new) with an output ring of `output_ms` instead of
    /// [`OUTPUT_RING_MS`] (at least one frame).
    pub fn with_output_ms(
        room_rate: SampleRate,
        rate_in: SampleRate,
        rate_out: SampleRate,
        mode: MixMode,
        output_ms: u64,
    ) -> Result<(ParticipantMedia, LegEnds), ResampleError> {
        Self::with_rings(
            room_rate,
            rate_in,
            rate_out,
            mode,
            // A leg that streams in real time (an agent's TTS) must not accumulate the
            // lateness of its chunks.
            RingConfig::streaming_playout(rate_in),
            output_ms,
        )
    }

    /// For a leg that writes exactly one frame per tick, just before the mix (an
    /// [`Endpoint`](super::Endpoint)): rings of `ring_ms` both ways instead of an agent's
    /// long playout ring, which such a leg never fills and whose pages would only be
    /// touched, one by one, as it wraps.
    pub fn paced(
        room_rate: SampleRate,
        rate: SampleRate,
        mode: MixMode,
        ring_ms: u64,
    ) -> Result<(ParticipantMedia, LegEnds), ResampleError> {
        Self::with_rings(
            room_rate,
            rate,
            rate,
            mode,
            RingConfig::with_capacity_ms(rate, ring_ms),
            ring_ms,
        )
    }

    pub(crate) fn with_rings(
        room_rate: SampleRate,
        rate_in: SampleRate,
        rate_out: SampleRate,
        mode: MixMode,
        input_ring: RingConfig,
        output_ms: u64,
    ) -> Result<(ParticipantMedia, LegEnds), ResampleError> {
        let (producer, input) = pcm_ring(input_ring);
        let in_resampler = Resampler::new(rate_in, room_rate)?;
        let (output, reader) = if listens(mode) {
            let (ring, reader) = pcm_ring(RingConfig::with_capacity_ms(rate_out, output_ms));
            let spare_lane = if rate_out == room_rate {
                None
            } else {
                Some(Box::new(SharedLane {
                    rate: rate_out,
                    resampler: Resampler::new(room_rate, rate_out)?,
                    buf: frame_buf(rate_out),
                    last_fed: 0,
                    quiet: true,
                }))
            };
            let path = OutputPath {
                ring,
                resampler: Resampler::new(room_rate, rate_out)?,
                buf: frame_buf(rate_out),
                last_fed: 0,
                spare_lane,
            };
            (Some(path), Some(reader))
        } else {
            (None, None)
        };
        let stats = Arc::new(ParticipantStats::new(
            Arc::clone(producer.stats()),
            reader.as_ref().map(|r| Arc::clone(r.stats())),
        ));
        let media = ParticipantMedia {
            mode,
            room_rate,
            rate_in,
            rate_out,
            input,
            in_resampler,
            in_buf: frame_buf(rate_in),
            in_last_fed: 0,
            in_last_audio: 0,
            output,
            stats: Arc::clone(&stats),
        };
        let ends = LegEnds {
            input: producer,
            output: reader,
            stats,
        };
        Ok((media, ends))
    }

    /// How the participant takes part in the mix now.
    pub fn mode(&self) -> MixMode {
        self.mode
    }

    /// The room rate this media was built for; a room at another rate refuses it.
    pub fn room_rate(&self) -> SampleRate {
        self.room_rate
    }

    /// The rate the leg writes at.
    pub fn rate_in(&self) -> SampleRate {
        self.rate_in
    }

    /// The rate the leg reads at.
    pub fn rate_out(&self) -> SampleRate {
        self.rate_out
    }

    /// Whether it has an output ring (it was not built send-only).
    pub fn has_output(&self) -> bool {
        self.output.is_some()
    }

    /// The participant's counters.
    pub fn stats(&self) -> &Arc<ParticipantStats> {
        &self.stats
    }
}

/// A participant seated in a room.
pub(crate) struct Member {
    pub(crate) id: ParticipantId,
    pub(crate) slot: Slot,
    pub(crate) media: Box<ParticipantMedia>,
    /// The endpoint carrying its audio on this shard (slot index), and whether that
    /// endpoint can forward frames as they arrive.
    pub(crate) endpoint: Option<(usize, bool)>,
    /// It has sent audio: an agent counts as a voice from its first frame on, so a socket
    /// that only listens does not turn a two-voice room into a mix.
    pub(crate) heard: bool,
    /// The one voice it hears, forwarded to it as that voice's frames arrive (its output is
    /// then no longer produced by the tick).
    pub(crate) served_by: Option<ParticipantId>,
    /// Its endpoint forwards: its frames reach the participants it serves on arrival.
    pub(crate) forwards: bool,
    /// Someone else still hears it through the ticked mix (a listener of two voices), so
    /// its forwarded frames are also written into its mixer input.
    pub(crate) feeds_mix: bool,
    /// Tick count when a forwarded frame last reached it.
    pub(crate) fwd_last: u64,
    /// A voice without a leg (an agent) that serves listeners found its queue dry in the
    /// middle of a stream and played nothing for that slot: its next frame is late, and
    /// when it and the one after are both queued at a tick, both leave then, so a frame
    /// that missed its tick costs that frame 20 ms instead of adding 20 ms for good.
    pub(crate) late_slot: bool,
}

impl Member {
    pub(crate) fn new(id: ParticipantId, slot: Slot, media: Box<ParticipantMedia>) -> Member {
        Member {
            id,
            slot,
            media,
            endpoint: None,
            heard: false,
            served_by: None,
            forwards: false,
            feeds_mix: false,
            fwd_last: 0,
            late_slot: false,
        }
    }

    /// Whether it contributes a voice: its mode talks, and it is a network leg (which always
    /// sends) or has sent audio.
    pub(crate) fn is_voice(&self) -> bool {
        talks(self.media.mode) && (self.endpoint.is_some() || self.heard)
    }

    /// Whether it hears the room now.
    pub(crate) fn listens_now(&self) -> bool {
        listens(self.media.mode) && self.media.output.is_some()
    }
}

/// One room's mixer and seats, owned by a shard.
///
/// Built with [`RoomMedia::new`] on the control plane so that adding a room allocates
/// nothing on the shard thread.
pub struct RoomMedia {
    pub(crate) rate: SampleRate,
    pub(crate) max_participants: usize,
    pub(crate) mixer: MixMinus,
    pub(crate) members: Vec<Member>,
    // Boxed so that a lane moves between a participant, the room and the disposal channel
    // as a pointer: unboxing it on the way out would allocate on the tick thread.
    #[allow(clippy::vec_box)]
    pub(crate) lanes: Vec<Box<SharedLane>>,
    pub(crate) stats: Arc<RoomStats>,
    /// Who is a voice or who hears whom changed: the forwarding plan is redone before the
    /// next mix.
    pub(crate) plan_dirty: bool,
}

impl fmt::Debug for RoomMedia {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomMedia")
            .field("rate", &self.rate)
            .field("participants", &self.members.len())
            .field("max_participants", &self.max_participants)
            .finish_non_exhaustive()
    }
}

impl RoomMedia {
    /// A room mixing at `rate` for up to `max_participants`; every table is reserved here.
    pub fn new(rate: SampleRate, max_participants: usize) -> RoomMedia {
        RoomMedia {
            rate,
            max_participants,
            mixer: MixMinus::new(rate.frame_samples(), max_participants),
            members: Vec::with_capacity(max_participants),
            lanes: Vec::with_capacity(max_participants),
            stats: Arc::new(RoomStats::default()),
            plan_dirty: false,
        }
    }

    /// The room's counters; take a handle before sending the room to its shard.
    pub fn stats(&self) -> &Arc<RoomStats> {
        &self.stats
    }

    /// The mixing rate.
    pub fn rate(&self) -> SampleRate {
        self.rate
    }

    /// Participants seated.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether nobody is seated: such a room costs the tick nothing.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The seated participants' ids, in no particular order.
    pub fn participants(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.members.iter().map(|m| m.id)
    }

    /// Shared lanes held: one per distinct listener rate other than the room's, the number
    /// of shared-mix resamples a busy tick of this room costs at most.
    pub fn shared_lanes(&self) -> usize {
        self.lanes.len()
    }
}

fn frame_buf(rate: SampleRate) -> Box<[i16]> {
    vec![0; rate.frame_samples()].into_boxed_slice()
}
