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
    /// Scratch lists of endpoint indices (ready to read, to flush), reserved up front.
    ready: Vec<usize>,
    flush: Vec<usize>,
}

/// Most datagrams one forwarding endpoint reads per wake-up between ticks.
const MAX_READS_PER_ARRIVAL: usize = 8;

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
            ready: Vec::with_capacity(DEFAULT_ENDPOINT_CAPACITY),
            flush: Vec::with_capacity(DEFAULT_ENDPOINT_CAPACITY),
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
                let endpoints = &mut self.endpoints;
                let found = self.rooms.get_mut(&room).and_then(|r| {
                    let index = r.members.iter().position(|m| m.id == participant)?;
                    if let Some((slot, _)) = r.members[index].endpoint {
                        endpoints.set_forwarding(slot, false);
                    }
                    r.plan_dirty = true;
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
                if refused.is_none()
                    && let Some(r) = self.rooms.get_mut(&room)
                {
                    r.plan_dirty = true;
                }
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
            ShardCommand::AddEndpoint {
                room,
                participant,
                endpoint,
            } => match self.rooms.get_mut(&room) {
                Some(r) => {
                    let can_forward = endpoint.can_forward();
                    let index = self.endpoints.add(room, participant, endpoint);
                    if let Some(m) = r.members.iter_mut().find(|m| m.id == participant) {
                        m.endpoint = Some((index, can_forward));
                        r.plan_dirty = true;
                    }
                }
                None => d.reject(
                    Rejection::UnknownRoom(room),
                    ShardCommand::AddEndpoint {
                        room,
                        participant,
                        endpoint,
                    },
                ),
            },
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
        self.endpoints.receive();
        for room in self.rooms.values_mut() {
            if room.plan_dirty {
                replan(room, &mut self.endpoints, now);
            }
        }
        // Whatever forwarding endpoints hold (read just now, or buffered while their room
        // mixed) leaves before the mix.
        self.ready.clear();
        self.ready.extend_from_slice(&self.endpoints.forwarding);
        for k in 0..self.ready.len() {
            let index = self.ready[k];
            self.forward_from(index, false);
        }
        let ShardCore {
            rooms,
            endpoints,
            disposer,
            flush,
            ..
        } = self;
        endpoints.run(
            |e, watched| e.before_mix(watched),
            |room, participant, e| endpoint_done(rooms, disposer, room, participant, e),
        );
        let stats = &*disposer.stats;
        flush.clear();
        for room in rooms.values_mut() {
            if !room.is_empty() {
                play_paced(room, now, stats, flush);
                tick_room(room, now, stats);
            }
        }
        // Endpoints that paced voices played to send what they got (one frame, or two when
        // a late frame catches up); `after_mix` then finds their rings empty.
        endpoints.flush_outputs(flush);
        endpoints.run(
            |e, _| e.after_mix(),
            |room, participant, e| endpoint_done(rooms, disposer, room, participant, e),
        );
        stats.tick_done();
    }

    /// Endpoints forwarding now: the shard waits on their sockets between ticks.
    pub fn forwarding_endpoints(&self) -> usize {
        self.endpoints.forwarding.len()
    }

    /// Between ticks: waits up to `timeout` for a forwarding endpoint's datagram and
    /// forwards what arrived, so that a frame bound for the one participant who hears it
    /// leaves as soon as it is decoded instead of at the next tick.
    pub fn wait_for_arrivals(&mut self, timeout: std::time::Duration) {
        let mut ready = std::mem::take(&mut self.ready);
        self.endpoints.wait_arrivals(timeout, &mut ready);
        for &index in &ready {
            self.forward_from(index, true);
        }
        self.ready = ready;
    }

    /// Reads a forwarding endpoint's socket (when `read`) and routes every frame it can
    /// release to the participants it serves; endpoints among those send at once.
    fn forward_from(&mut self, index: usize, read: bool) {
        let now = self.tick;
        let ShardCore {
            rooms,
            endpoints,
            disposer,
            flush,
            ..
        } = self;
        let Some(slot) = endpoints.slot_mut(index) else {
            return;
        };
        if read {
            for _ in 0..MAX_READS_PER_ARRIVAL {
                if !slot.endpoint.on_readable() {
                    break;
                }
            }
        }
        let Some(room) = rooms.get_mut(&slot.room) else {
            return;
        };
        let Some(src) = room.members.iter().position(|m| m.id == slot.participant) else {
            return;
        };
        if !room.members[src].forwards {
            return;
        }
        flush.clear();
        let stats = &*disposer.stats;
        slot.endpoint.forward(&mut |frame| {
            route(room, src, frame, now, stats, flush, Delivery::Arrived);
        });
        endpoints.flush_outputs(flush);
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

/// An endpoint that finished: its participant no longer has a leg on the shard (the
/// room's plan is redone), and the endpoint goes to disposal.
fn endpoint_done(
    rooms: &mut HashMap<RoomId, Box<RoomMedia>>,
    disposer: &Disposer,
    room: RoomId,
    participant: ParticipantId,
    endpoint: Box<dyn super::Endpoint>,
) {
    if let Some(r) = rooms.get_mut(&room)
        && let Some(m) = r.members.iter_mut().find(|m| m.id == participant)
    {
        m.endpoint = None;
        m.forwards = false;
        r.plan_dirty = true;
    }
    disposer.dispose(Disposed::Endpoint(endpoint));
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
    r.plan_dirty = true;
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
    r.members.push(Member::new(participant, slot, media));
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
        plan_dirty,
        ..
    } = room;
    for member in members.iter_mut() {
        if member.forwards {
            // Its frames went out as they arrived; its mixer input, if anyone still mixes
            // it, was written then.
            continue;
        }
        let was_voice = member.is_voice();
        pull_input(mixer, member, now, stats);
        if !was_voice && member.is_voice() {
            *plan_dirty = true;
        }
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
        if member.served_by.is_some() {
            // Its frames are forwarded as they arrive. Only when its voice has sent nothing
            // for two ticks does the tick fill in silence, to keep the reader's 20 ms
            // cadence without adding to a stream that merely jittered.
            if member.fwd_last + 2 < now {
                out.buf.fill(0);
                push_frame(&mut out.ring, &out.buf, &p.stats);
                p.stats.set_last_output(now, false);
            }
            continue;
        }
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
/// resampler's delayed tail (up to 5 ms) is heard; after a gap, the resampler is reset, which is
/// exactly the history of silence the gap was.
fn pull_input(mixer: &mut MixMinus, member: &mut Member, now: u64, stats: &ShardStats) {
    let p = &mut *member.media;
    if p.stats.take_flush_request() {
        p.input.flush();
    }
    let audio = p.input.pull_frame(&mut p.in_buf).has_audio();
    if audio {
        member.heard = true;
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

/// Decides who hears whom directly. A room with at most two voices forwards: a listener
/// whose only voice is a leg that can forward gets that voice's frames as they arrive; the
/// leg switches to forwarding and stays out of the tick's mix unless a third participant
/// (a listener of both voices) still needs it there. Everything else is mixed on the tick.
fn replan(room: &mut RoomMedia, endpoints: &mut Endpoints, now: u64) {
    room.plan_dirty = false;
    // The first two voices and whether each can forward; a third makes the room mix.
    let mut voices: [Option<(ParticipantId, bool)>; 2] = [None; 2];
    let mut count = 0;
    for m in &room.members {
        if m.is_voice() {
            if let Some(v) = voices.get_mut(count) {
                // A leg serves when it can forward; a voice without a leg (an agent) serves
                // with its paced queue, played on the tick (`play_paced`).
                *v = Some((m.id, m.endpoint.is_none_or(|(_, can)| can)));
            }
            count += 1;
        }
    }
    let forwarding = count <= 2;
    room.stats.set_forwarding(forwarding);
    for m in room.members.iter_mut() {
        let mut source = None;
        if forwarding && m.listens_now() {
            let mut others = voices.iter().flatten().filter(|(id, _)| *id != m.id);
            if let (Some(&(id, true)), None) = (others.next(), others.next()) {
                source = Some(id);
            }
        }
        if source.is_some() && m.served_by != source {
            // A grace of two ticks before the tick fills in silence for it.
            m.fwd_last = now;
        }
        m.served_by = source;
        m.media.stats.set_forwarded(source.is_some());
    }
    // A voice without a leg serves one listener at most: several listeners at one rate
    // share one resample of the mix (a lane), which routing to each would multiply.
    for i in 0..room.members.len() {
        let id = room.members[i].id;
        if room.members[i].endpoint.is_some() {
            continue;
        }
        let served = room
            .members
            .iter()
            .filter(|d| d.served_by == Some(id))
            .count();
        if served > 1 {
            for d in room.members.iter_mut().filter(|d| d.served_by == Some(id)) {
                d.served_by = None;
                d.media.stats.set_forwarded(false);
            }
        }
    }
    for i in 0..room.members.len() {
        let id = room.members[i].id;
        let serves = room.members.iter().any(|d| d.served_by == Some(id));
        let feeds_mix = serves
            && room
                .members
                .iter()
                .any(|l| l.id != id && l.listens_now() && l.served_by != Some(id));
        let m = &mut room.members[i];
        m.feeds_mix = feeds_mix;
        if !serves || feeds_mix {
            m.late_slot = false;
        }
        if m.forwards != serves {
            m.forwards = serves;
            if let Some((index, _)) = m.endpoint {
                endpoints.set_forwarding(index, serves);
            }
        }
    }
}

/// Routes one frame a forwarding leg released (at its own rate) to everyone it serves: to
/// the room's rate through the leg's input resampler, then to each listener's rate through
/// its output resampler, into its output ring. Agents are woken; endpoints are listed in
/// `flush` to send at once.
fn route(
    room: &mut RoomMedia,
    src: usize,
    frame: &[i16],
    now: u64,
    stats: &ShardStats,
    flush: &mut Vec<usize>,
    how: Delivery,
) {
    let RoomMedia {
        mixer,
        members,
        stats: room_stats,
        ..
    } = room;
    let Some(source) = members.get_mut(src) else {
        return;
    };
    let (id, slot, feeds_mix) = (source.id, source.slot, source.feeds_mix);
    let p = &mut *source.media;
    if p.in_last_fed.saturating_add(1) < now {
        p.in_resampler.reset();
    }
    p.in_last_fed = now;
    if how == Delivery::Silence {
        p.stats.frame_silent();
    } else {
        p.in_last_audio = now;
        p.stats.frame_in();
    }
    let Ok(room_frame) = mixer.input_mut(slot) else {
        return;
    };
    if p.in_resampler.process(frame, room_frame).is_err() {
        stats.resample_error();
        room_frame.fill(0);
    }
    for d in members.iter_mut() {
        if d.served_by != Some(id) {
            continue;
        }
        let p = &mut *d.media;
        let Some(out) = p.output.as_mut() else {
            continue;
        };
        let frame: &[i16] = if out.resampler.is_passthrough() {
            room_frame
        } else {
            if out.last_fed.saturating_add(1) < now {
                out.resampler.reset();
            }
            out.last_fed = now;
            stats.private_resample();
            if out.resampler.process(room_frame, &mut out.buf).is_err() {
                stats.resample_error();
                out.buf.fill(0);
            }
            &out.buf
        };
        push_frame(&mut out.ring, frame, &p.stats);
        p.stats.set_last_output(now, false);
        d.fwd_last = now;
        if how == Delivery::Arrived {
            room_stats.forwarded();
        }
        match d.endpoint {
            Some((index, _)) => flush_once(flush, index),
            None => p.stats.output_ready().notify_one(),
        }
    }
    if !feeds_mix {
        // Seated members always hold a live slot, so this cannot fail.
        let _ = mixer.set_silent(slot);
    }
}

/// How a frame reaches the listeners a voice serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// A leg's frame, the moment its datagram arrived (the fast path proper).
    Arrived,
    /// A frame of an agent's queue, on its tick.
    Paced,
    /// Silence after an agent's stream, fed once so the resamplers' tails are heard.
    Silence,
}

/// Plays the queue of every voice without a leg of its own (an agent) that serves
/// listeners: one frame per tick, straight into their output rings, as the one-voice mix
/// would have been.
///
/// A stream whose frame missed its tick (read late by the agent's worker, or sent late)
/// finds its queue dry at that tick. Played as a mix, the tick would send silence and the
/// late frame would wait a tick behind its successor for the rest of the stream: 20 ms of
/// standing latency from one late frame. Here that slot is held instead (nothing leaves for
/// it), and at the next tick where the late frame and its successor are both queued, both
/// leave: the late frame is 20 ms late once, and the stream is back on time. A slot held
/// for a frame that does not come is filled with silence at the next tick, so the listener
/// still gets exactly one frame per tick on average and its timeline never drifts. A voice
/// that someone also hears through the mix (a monitor) plays exactly one frame per tick.
fn play_paced(room: &mut RoomMedia, now: u64, stats: &ShardStats, flush: &mut Vec<usize>) {
    for src in 0..room.members.len() {
        let m = &mut room.members[src];
        if !m.forwards || m.endpoint.is_some() {
            continue;
        }
        let catch_up = m.late_slot && !m.feeds_mix;
        let p = &mut *m.media;
        if p.stats.take_flush_request() {
            p.input.flush();
        }
        // The frame buffer is lent out while `route` borrows the room.
        let mut buf = std::mem::take(&mut p.in_buf);
        let mut played = 0;
        for _ in 0..1 + usize::from(catch_up) {
            let input = &mut room.members[src].media.input;
            // The second frame only when it is all there: a partial one waits its turn.
            if played == 1 && input.queued_samples() < buf.len() {
                break;
            }
            if !input.pull_frame(&mut buf).has_audio() {
                break;
            }
            route(room, src, &buf, now, stats, flush, Delivery::Paced);
            played += 1;
        }
        let m = &mut room.members[src];
        m.media.in_buf = buf;
        match played {
            0 if !m.late_slot && !m.feeds_mix && follows(m.media.in_last_audio, now) => {
                // Dry in mid-stream: hold this slot for the late frame.
                m.late_slot = true;
                m.media.stats.frame_silent();
                let id = m.id;
                for d in room.members.iter_mut().filter(|d| d.served_by == Some(id)) {
                    d.fwd_last = now;
                }
            }
            0 => {
                let owed = 1 + usize::from(m.late_slot);
                m.late_slot = false;
                play_silence(room, src, owed, now, stats, flush);
            }
            1 => {}
            _ => {
                m.late_slot = false;
                room.stats.caught_up();
            }
        }
    }
}

/// `frames` frames of silence from a paced voice to everyone it serves. The first tick
/// after its audio feeds one through the resamplers so that their delayed tails are heard;
/// the rest are plain zeros (the resamplers restart clean on the next audio).
fn play_silence(
    room: &mut RoomMedia,
    src: usize,
    frames: usize,
    now: u64,
    stats: &ShardStats,
    flush: &mut Vec<usize>,
) {
    let p = &mut *room.members[src].media;
    let mut zeros = frames;
    if !p.in_resampler.is_passthrough()
        && follows(p.in_last_fed, now)
        && p.in_last_fed == p.in_last_audio
    {
        let mut buf = std::mem::take(&mut p.in_buf);
        buf.fill(0);
        route(room, src, &buf, now, stats, flush, Delivery::Silence);
        room.members[src].media.in_buf = buf;
        zeros -= 1;
    } else {
        p.stats.frame_silent();
    }
    let id = room.members[src].id;
    for d in room.members.iter_mut().filter(|d| d.served_by == Some(id)) {
        d.fwd_last = now;
        let p = &mut *d.media;
        let Some(out) = p.output.as_mut() else {
            continue;
        };
        if zeros == 0 {
            continue;
        }
        out.buf.fill(0);
        for _ in 0..zeros {
            push_frame(&mut out.ring, &out.buf, &p.stats);
        }
        p.stats.set_last_output(now, false);
        match d.endpoint {
            Some((index, _)) => flush_once(flush, index),
            None => p.stats.output_ready().notify_one(),
        }
    }
}

/// Lists an endpoint to flush, once per run of frames routed to it.
fn flush_once(flush: &mut Vec<usize>, index: usize) {
    if flush.last() != Some(&index) {
        flush.push(index);
    }
}
