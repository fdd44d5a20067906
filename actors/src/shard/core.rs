//! The shard engine without a clock: rooms, commands and one 20 ms tick per call.
//!
//! Sans-time in the str0m sense: [`ShardCore::tick`] is "20 ms have passed", and whoever
//! calls it owns time — the [`MixerShard`](super::MixerShard) thread in production, a test
//! stepping by hand, or a bench.

use std::collections::HashMap;
use std::sync::Arc;

use chamade_media::mixer::{MixMinus, Output};
use chamade_media::resample::Resampler;
use chamade_media::ring::PcmProducer;
use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::command::{Disposed, Rejection, ShardCommand};
use super::endpoint::Endpoints;
use super::media::{Member, ParticipantMedia, RoomMedia, SharedLane, listens, talks};
use super::stats::{ParticipantStats, ShardStats};
use crate::ids::{ParticipantId, RoomId};

/// Rooms a shard reserves its room table for; past this, adding a room may grow the table
/// (one amortised allocation on the shard thread).
pub const DEFAULT_ROOM_CAPACITY: usize = 1_024;

/// Endpoints a shard reserves its table for; past this, adding one may grow the table.
const DEFAULT_ENDPOINT_CAPACITY: usize = 1_024;

/// A bounded disposal channel for [`ShardCore::new`]: the shard never blocks on it (when it
/// is full the shard drops the item itself and counts a disposal overflow).
pub fn disposal_channel(capacity: usize) -> (Sender<Disposed>, Receiver<Disposed>) {
    crossbeam_channel::bounded(capacity.max(1))
}

/// Whether something last done at tick `last` happened on the tick just before `now`.
/// Tick numbers start at 1, so 0 means "never".
fn follows(last: u64, now: u64) -> bool {
    last != 0 && last + 1 == now
}

/// Sends finished media to the disposal channel, or drops it here if nobody takes it.
struct Disposer {
    stats: Arc<ShardStats>,
    tx: Sender<Disposed>,
}

impl Disposer {
    fn dispose(&self, item: Disposed) {
        if let Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) =
            self.tx.try_send(item)
        {
            // Dropping here frees heap memory on the tick thread; counted so that a
            // too-small disposal queue shows up in the metrics.
            self.stats.disposal_overflow();
            drop(item);
        }
    }

    fn reject(&self, reason: Rejection, command: ShardCommand) {
        self.stats.rejected();
        self.dispose(Disposed::Rejected { reason, command });
    }
}

/// Many rooms' mixers, driven one tick at a time.
///
/// Applying a command and running a tick allocate nothing (beyond growing the room table
/// past its reserved capacity); media arrives built and leaves over the disposal channel.
pub struct ShardCore {
    rooms: HashMap<RoomId, Box<RoomMedia>>,
    participants: usize,
    /// Participants whose I/O runs around the mix (RTP and SIP legs).
    endpoints: Endpoints,
    disposer: Disposer,
    /// Ticks run so far; the tick in progress is `tick + 1`.
    tick: u64,
}

impl ShardCore {
    /// A shard that sends what it is done with to `disposal` (a bounded channel: when it is
    /// full, the shard drops the item itself and counts a disposal overflow).
    pub fn new(disposal: Sender<Disposed>) -> ShardCore {
        ShardCore::with_room_capacity(disposal, DEFAULT_ROOM_CAPACITY)
    }

    /// [`new`](Self::new) with the room table reserved for `rooms` rooms.
    pub fn with_room_capacity(disposal: Sender<Disposed>, rooms: usize) -> ShardCore {
        ShardCore {
            rooms: HashMap::with_capacity(rooms),
            participants: 0,
            endpoints: Endpoints::with_capacity(DEFAULT_ENDPOINT_CAPACITY),
            disposer: Disposer {
                stats: Arc::new(ShardStats::default()),
                tx: disposal,
            },
            tick: 0,
        }
    }

    /// The shard's counters, to share with the control plane.
    pub fn stats(&self) -> &Arc<ShardStats> {
        &self.disposer.stats
    }

    /// Rooms owned.
    pub fn rooms(&self) -> usize {
        self.rooms.len()
    }

    /// Participants seated, over all rooms.
    pub fn participants(&self) -> usize {
        self.participants
    }

    /// Ticks run.
    pub fn ticks(&self) -> u64 {
        self.tick
    }

    /// A room, for inspection.
    pub fn room(&self, room: RoomId) -> Option<&RoomMedia> {
        self.rooms.get(&room).map(|r| &**r)
    }

    /// Applies one command. Anything that cannot be applied is counted in
    /// `rejected_commands` and returned over the disposal channel with the reason.
    pub fn apply(&mut self, command: ShardCommand) {
        let d = &self.disposer;
        d.stats.command();
        match command {
            ShardCommand::AddRoom { room, media } => {
                if self.rooms.contains_key(&room) {
                    d.reject(
                        Rejection::DuplicateRoom(room),
                        ShardCommand::AddRoom { room, media },
                    );
                } else {
                    self.participants += media.len();
                    self.rooms.insert(room, media);
                }
            }
            ShardCommand::RemoveRoom { room } => match self.rooms.remove(&room) {
                Some(media) => {
                    self.participants -= media.len();
                    d.dispose(Disposed::Room { room, media });
                }
                None => d.reject(
                    Rejection::UnknownRoom(room),
                    ShardCommand::RemoveRoom { room },
                ),
            },
            ShardCommand::AddParticipant {
                room,
                participant,
                media,
            } => match self.rooms.get_mut(&room) {
                None => d.reject(
                    Rejection::UnknownRoom(room),
                    ShardCommand::AddParticipant {
                        room,
                        participant,
                        media,
                    },
                ),
                Some(r) => match seat(r, room, participant, media) {
                    Ok(()) => self.participants += 1,
                    Err((reason, media)) => d.reject(
                        reason,
                        ShardCommand::AddParticipant {
                            room,
                            participant,
                            media,
                        },
                    ),
                },
            },
            ShardCommand::RemoveParticipant { room, participant } => {
                let found = self.rooms.get_mut(&room).and_then(|r| {
                    let index = r.members.iter().position(|m| m.id == participant)?;
                    Some(unseat(r, index))
                });
                match found {
                    Some((media, lane)) => {
                        self.participants -= 1;
                        d.dispose(Disposed::Participant {
                            room,
                            participant,
                            media,
                        });
                        if let Some(lane) = lane {
                            d.dispose(Disposed::Lane(lane));
                        }
                    }
                    None => d.reject(
                        unknown(&self.rooms, room, participant),
                        ShardCommand::RemoveParticipant { room, participant },
                    ),
                }
            }
            ShardCommand::SetMode {
                room,
                participant,
                mode,
            } => {
                let member = self.rooms.get_mut(&room).and_then(|r| {
                    let m = r.members.iter_mut().find(|m| m.id == participant)?;
                    Some((&mut r.mixer, m))
                });
                let refused = match member {
                    None => Some(unknown(&self.rooms, room, participant)),
                    Some((_, m)) if listens(mode) && m.media.output.is_none() => {
                        Some(Rejection::NoOutput { room, participant })
                    }
                    Some((mixer, m)) => {
                        // Seated members always hold a live slot, so this cannot fail.
                        let _ = mixer.set_mode(m.slot, mode);
                        m.media.mode = mode;
                        None
                    }
                };
                if let Some(reason) = refused {
                    d.reject(
                        reason,
                        ShardCommand::SetMode {
                            room,
                            participant,
                            mode,
                        },
                    );
                }
            }
            ShardCommand::AddEndpoint { room, endpoint } => {
                if self.rooms.contains_key(&room) {
                    self.endpoints.add(endpoint);
                } else {
                    d.reject(
                        Rejection::UnknownRoom(room),
                        ShardCommand::AddEndpoint { room, endpoint },
                    );
                }
            }
        }
        d.stats.set_population(self.rooms.len(), self.participants);
    }

    /// Runs one 20 ms tick over every room that has participants.
    ///
    /// Endpoints run around the mix: every endpoint's `before_mix` (its input for this
    /// tick), then the rooms, then every endpoint's `after_mix` (the frame just mixed).
    pub fn tick(&mut self) {
        let now = self.tick + 1;
        self.tick = now;
        let disposer = &self.disposer;
        let dispose = |e| disposer.dispose(Disposed::Endpoint(e));
        self.endpoints.receive();
        self.endpoints
            .run(|e, watched| e.before_mix(watched), dispose);
        let stats = &*self.disposer.stats;
        for room in self.rooms.values_mut() {
            if !room.is_empty() {
                tick_room(room, now, stats);
            }
        }
        self.endpoints.run(|e, _| e.after_mix(), dispose);
        stats.tick_done();
    }

    /// Endpoints running on this shard.
    pub fn endpoints(&self) -> usize {
        self.endpoints.len()
    }

    /// Hands every room and endpoint to the disposal channel, as when the shard stops.
    pub fn shutdown(&mut self) {
        let disposer = &self.disposer;
        self.endpoints
            .drain(|e| disposer.dispose(Disposed::Endpoint(e)));
        for (room, media) in self.rooms.drain() {
            self.disposer.dispose(Disposed::Room { room, media });
        }
        self.participants = 0;
        self.disposer.stats.set_population(0, 0);
    }
}

fn unknown(
    rooms: &HashMap<RoomId, Box<RoomMedia>>,
    room: RoomId,
    participant: ParticipantId,
) -> Rejection {
    if rooms.contains_key(&room) {
        Rejection::UnknownParticipant { room, participant }
    } else {
        Rejection::UnknownRoom(room)
    }
}

/// Seats a participant, adopting its spare shared lane if its output rate is new to the
/// room. Allocates nothing: the member table and lane table were reserved for the room's
/// maximum, and the mixer refuses a participant beyond it before anything is pushed.
fn seat(
    r: &mut RoomMedia,
    room: RoomId,
    participant: ParticipantId,
    mut media: Box<ParticipantMedia>,
) -> Result<(), (Rejection, Box<ParticipantMedia>)> {
    if r.members.iter().any(|m| m.id == participant) {
        return Err((Rejection::DuplicateParticipant { room, participant }, media));
    }
    if media.room_rate != r.rate {
        let reason = Rejection::RateMismatch {
            room,
            room_rate: r.rate,
            media_rate: media.room_rate,
        };
        return Err((reason, media));
    }
    let slot = match r.mixer.join(media.mode) {
        Ok(slot) => slot,
        Err(_) => {
            let reason = Rejection::RoomFull {
                room,
                max: r.max_participants,
            };
            return Err((reason, media));
        }
    };
    let rate = media.rate_out;
    if let Some(out) = media.output.as_mut()
        && !r.lanes.iter().any(|l| l.rate == rate)
        && let Some(lane) = out.spare_lane.take()
    {
        r.lanes.push(lane);
    }
    r.members.push(Member {
        id: participant,
        slot,
        media,
    });
    Ok(())
}

/// Unseats the member at `index`. The room's shared lane for its rate stays while anyone
/// else reads at that rate; if the leaver had lent its lane to the room, it takes another
/// reader's spare instead, so exactly one lane leaves with it or with the room. Returns the
/// media and, when the leaver was the last reader at its rate, the retired lane.
fn unseat(r: &mut RoomMedia, index: usize) -> (Box<ParticipantMedia>, Option<Box<SharedLane>>) {
    let member = r.members.swap_remove(index);
    // A seated member always holds a live slot, so leaving cannot fail.
    let _ = r.mixer.leave(member.slot);
    let mut media = member.media;
    let rate = media.rate_out;
    let mut retired = None;
    if let Some(out) = media.output.as_mut()
        && rate != r.rate
    {
        let mut others = r
            .members
            .iter_mut()
            .filter(|m| m.media.rate_out == rate)
            .filter_map(|m| m.media.output.as_mut())
            .peekable();
        if others.peek().is_none() {
            if let Some(i) = r.lanes.iter().position(|l| l.rate == rate) {
                retired = Some(r.lanes.swap_remove(i));
            }
        } else if out.spare_lane.is_none()
            && let Some(other) = others.find(|o| o.spare_lane.is_some())
        {
            out.spare_lane = other.spare_lane.take();
        }
    }
    (media, retired)
}

/// One room's tick: pull and resample every input, mix, resample and push every output.
fn tick_room(room: &mut RoomMedia, now: u64, stats: &ShardStats) {
    let RoomMedia {
        mixer,
        members,
        lanes,
        ..
    } = room;
    for member in members.iter_mut() {
        pull_input(mixer, member, now, stats);
    }
    mixer.mix();
    let talkers = mixer.talkers().count() as u64;
    room.stats.record_tick(talkers);
    let no_talkers = talkers == 0;
    for member in members.iter_mut() {
        let p = &mut *member.media;
        let Some(out) = p.output.as_mut() else {
            continue;
        };
        let output = mixer.output(member.slot);
        let shared = matches!(output, Ok(Output::Shared(_)));
        let frame: &[i16] = match output {
            Ok(Output::Private(mix)) => private_frame(
                &mut out.resampler,
                &mut out.buf,
                &mut out.last_fed,
                mix,
                now,
                stats,
            ),
            Ok(Output::Shared(mix)) => match lanes.iter_mut().find(|l| l.rate == p.rate_out) {
                Some(lane) => lane_frame(lane, mix, no_talkers, now, stats),
                // Same rate as the room (a plain copy), or no lane (not expected): the
                // participant's own resampler serves.
                None => private_frame(
                    &mut out.resampler,
                    &mut out.buf,
                    &mut out.last_fed,
                    mix,
                    now,
                    stats,
                ),
            },
            Ok(Output::None) | Err(_) => continue,
        };
        push_frame(&mut out.ring, frame, &p.stats);
        p.stats.set_last_output(now, shared);
    }
}

/// Pulls one frame at the leg's rate (after a flush, if the leg asked for one) and hands it
/// to the mixer at the room's rate, or marks the participant silent (which costs the mixer
/// nothing).
///
/// The tick after an utterance ends, one frame of silence is still fed so that the
/// resampler's delayed tail (5 ms) is heard; after a gap, the resampler is reset, which is
/// exactly the history of silence the gap was.
fn pull_input(mixer: &mut MixMinus, member: &mut Member, now: u64, stats: &ShardStats) {
    let p = &mut *member.media;
    if p.stats.take_flush_request() {
        p.input.flush();
    }
    let audio = p.input.pull_frame(&mut p.in_buf).has_audio();
    if audio {
        p.stats.frame_in();
    } else {
        p.stats.frame_silent();
    }
    let flush_tail = !p.in_resampler.is_passthrough()
        && follows(p.in_last_fed, now)
        && p.in_last_fed == p.in_last_audio;
    if !talks(p.mode) || !(audio || flush_tail) {
        // Seated members always hold a live slot, so this cannot fail.
        let _ = mixer.set_silent(member.slot);
        return;
    }
    if !follows(p.in_last_fed, now) {
        p.in_resampler.reset();
    }
    p.in_last_fed = now;
    if audio {
        p.in_last_audio = now;
    }
    if let Ok(dst) = mixer.input_mut(member.slot)
        && p.in_resampler.process(&p.in_buf, dst).is_err()
    {
        stats.resample_error();
        let _ = mixer.set_silent(member.slot);
    }
}

/// The participant's own frame: its private mix-minus (or, as a fallback, the shared mix)
/// resampled to its rate; the mix itself when the rates match.
fn private_frame<'a>(
    resampler: &mut Resampler,
    buf: &'a mut [i16],
    last_fed: &mut u64,
    mix: &'a [i16],
    now: u64,
    stats: &ShardStats,
) -> &'a [i16] {
    if resampler.is_passthrough() {
        return mix;
    }
    if !follows(*last_fed, now) {
        // After listening through the shared lane, the history here is stale: start clean.
        resampler.reset();
    }
    *last_fed = now;
    stats.private_resample();
    if resampler.process(mix, buf).is_err() {
        stats.resample_error();
        buf.fill(0);
    }
    buf
}

/// The shared mix at the lane's rate, resampled on the first request of the tick and
/// reused for every other listener at that rate. Once the lane has flushed a silent mix its
/// history is zeros, and further silent ticks cost a fill instead of an FFT.
fn lane_frame<'a>(
    lane: &'a mut SharedLane,
    mix: &[i16],
    no_talkers: bool,
    now: u64,
    stats: &ShardStats,
) -> &'a [i16] {
    if lane.last_fed != now {
        if !follows(lane.last_fed, now) {
            lane.resampler.reset();
            lane.quiet = true;
        }
        lane.last_fed = now;
        if no_talkers && lane.quiet {
            lane.buf.fill(0);
        } else {
            stats.shared_resample();
            if lane.resampler.process(mix, &mut lane.buf).is_err() {
                stats.resample_error();
                lane.buf.fill(0);
            }
            lane.quiet = no_talkers;
        }
    }
    &lane.buf
}

/// Pushes a whole frame or nothing: a partial frame would shift every later frame
/// boundary for the reader. A full ring costs the reader this frame (an output overrun);
/// the shard never waits for a reader.
fn push_frame(ring: &mut PcmProducer, frame: &[i16], stats: &ParticipantStats) {
    if ring.free_samples() >= frame.len() {
        ring.push_samples(frame);
        stats.frame_out();
    } else {
        stats.output_overrun();
    }
}
