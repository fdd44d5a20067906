//! The reordering buffer itself: a ring of slots indexed by extended sequence number.

use super::{DepthMode, FrameCount, JitterConfig, JitterStats, Playout, PushOutcome};

/// Extended sequence numbers start here so that a stream can move backwards (reordering
/// before playback starts, or a confirmed backward jump) without ever reaching zero.
const EXT_BASE: u64 = 1 << 40;

/// How far behind the playout head a packet may be and still be taken for a late member of
/// this stream rather than evidence that the sender restarted (RFC 3550 `MAX_MISORDER`).
const MAX_MISORDER: u64 = 100;

/// Ticks over which packet headroom is watched before one frame is trimmed: one second,
/// long enough that the jitter of the moment shows up and prevents a needless trim.
const TRIM_WINDOW: u64 = 50;

/// Ticks per bucket of the lowest transit time, the reference arrivals are compared to.
/// The reference covers one to two seconds, so a slowly drifting sender clock moves it
/// along without being mistaken for jitter for long.
const FLOOR_BUCKET: u64 = 50;

/// Ticks per bucket of the peak relative delay: jitter is remembered for two to four
/// seconds, which is how long an adaptive target stays grown after the network calms down.
const PEAK_BUCKET: u64 = 100;

/// How many recent sequence numbers remember whether they played, to tell a duplicate of
/// a played packet from a packet that arrived after being declared lost.
const HISTORY_BITS: u64 = u64::BITS as u64;

/// An RTP jitter buffer: reorders packets by sequence number and releases one per tick.
///
/// Generic over the payload: encoded Opus packets (whose decoder conceals losses itself) or
/// decoded G.711 [`Frame`](crate::Frame)s (concealed with a [`Concealer`](super::Concealer)).
/// Every slot is allocated in [`JitterBuffer::new`]; `push` and `pop` only move payloads in
/// and out. A payload discarded inside them (duplicate, late, trimmed) is dropped there, so
/// payloads should be cheap to drop.
///
/// Policy, in the order a packet meets it:
/// - the 16-bit sequence number is extended relative to the newest one seen, so
///   65535 → 0 is an ordinary step;
/// - a packet whose slot has passed is refused as a duplicate if that slot played, else as
///   too late;
/// - a packet far outside the window is refused until the next packet follows it, then the
///   stream restarts there (a long outage while the buffer is empty restarts at once);
/// - a packet that does not fit in `max_depth` discards the oldest frames until the level is
///   back at the target;
/// - playback starts once `target` frames are buffered, or `target - 1` ticks after the first
///   packet arrived, whichever is first;
/// - while playing, a missing packet is reported lost if at least `target` frames are
///   buffered; with fewer it waits (at most `target` ticks), which is how the buffer grows;
/// - an empty buffer counts an underrun and fills again before resuming;
/// - when, for a whole second, every packet arrived at least one frame before it was due and
///   undelayed packets waited longer than the target, one frame is trimmed from the head:
///   that frame was pure latency. This keeps a fast sender clock, a burst, or jitter that has
///   calmed down from adding latency for good. The target is thus both where playback
///   (re)starts and the floor trimming stops at; the level may sit above it after an
///   underrun while the jitter that caused the underrun lasts.
///
/// ```
/// use chamade_media::jitter::{JitterBuffer, JitterConfig, Playout, PushOutcome};
///
/// // The default holds 40 ms: two frames.
/// let mut jitter = JitterBuffer::new(JitterConfig::default());
/// // Tick 0: packets 7 and 8 arrive swapped.
/// assert_eq!(jitter.push(8, "b"), PushOutcome::Accepted);
/// assert_eq!(jitter.push(7, "a"), PushOutcome::Accepted);
/// assert_eq!(jitter.pop(), Playout::Packet("a"));
/// // Tick 1: packet 9 is lost in the network, 10 arrives.
/// jitter.push(10, "d");
/// assert_eq!(jitter.pop(), Playout::Packet("b"));
/// // Tick 2: 11 arrives; 9 is due and missing.
/// jitter.push(11, "e");
/// assert_eq!(jitter.pop(), Playout::Lost);
/// // Tick 3: 9 shows up after all, too late to play.
/// assert_eq!(jitter.push(9, "c"), PushOutcome::TooLate);
/// assert_eq!(jitter.pop(), Playout::Packet("d"));
/// assert_eq!(jitter.stats().lost, 1);
/// assert_eq!(jitter.stats().late, 1);
/// ```
#[derive(Debug)]
pub struct JitterBuffer<T> {
    config: JitterConfig,
    /// `slots[ext % capacity]` holds packet `ext`; only `next..next + capacity` may be filled.
    slots: Box<[Option<T>]>,
    capacity: u64,
    phase: Phase,
    /// Extended sequence number due at the next `pop`.
    next: u64,
    /// Newest extended sequence number accepted.
    highest: u64,
    /// Filled slots.
    held: u64,
    /// Bit `i` set: sequence number `next - 1 - i` was played.
    played_history: u64,
    /// Raw sequence number of the last out-of-window packet, awaiting confirmation.
    probe: Option<u16>,
    /// Number of `pop` calls so far: the buffer's clock.
    ticks: u64,
    /// Tick at which the first packet of the current fill was stored.
    fill_since: Option<u64>,
    /// Packets were last handed out by [`take_next`](Self::take_next): the next refill, when
    /// ticked playout resumes, waits for one frame instead of the target depth, since the
    /// stream was not late, only released as it arrived.
    quick_refill: bool,
    /// Consecutive ticks spent waiting for a missing head while playing.
    stall_run: u64,
    /// Least headroom (frames from the head to the packet, inclusive, when it arrived) of
    /// any packet in the current trim window: 1 means it arrived just in time.
    headroom_min: u64,
    /// Most headroom in the current trim window: the latency of an undelayed packet.
    headroom_max: u64,
    trim_ticks: u64,
    /// Lowest `arrival tick - sequence` seen recently: the transit of an undelayed packet.
    transit_floor: WindowMax,
    /// Highest delay relative to that floor seen recently: the jitter to absorb.
    jitter_peak: WindowMax,
    stats: JitterStats,
}

/// Where the buffer is in its cycle of filling and playing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// No packet since construction or `reset`.
    Idle,
    /// Collecting frames before playing. `fresh`: nothing has played since the stream
    /// (re)started, so an earlier packet may still move the head back.
    Filling { fresh: bool },
    /// Releasing one frame per tick.
    Playing,
}

impl<T> JitterBuffer<T> {
    /// Allocates every slot up front, so the per-tick calls never touch the heap.
    pub fn new(config: JitterConfig) -> JitterBuffer<T> {
        let capacity = u64::from(config.max_depth().get());
        let slots = (0..capacity).map(|_| None).collect();
        JitterBuffer {
            config,
            slots,
            capacity,
            phase: Phase::Idle,
            next: EXT_BASE,
            highest: EXT_BASE,
            held: 0,
            played_history: 0,
            probe: None,
            ticks: 0,
            fill_since: None,
            quick_refill: false,
            stall_run: 0,
            headroom_min: u64::MAX,
            headroom_max: 0,
            trim_ticks: 0,
            transit_floor: WindowMax::EMPTY,
            jitter_peak: WindowMax::EMPTY,
            stats: JitterStats::default(),
        }
    }

    /// Offers one received packet; call it for every packet that arrived since the last
    /// `pop`, in any order.
    ///
    /// ```
    /// use chamade_media::jitter::{JitterBuffer, JitterConfig, PushOutcome};
    /// let mut jitter = JitterBuffer::new(JitterConfig::default());
    /// assert_eq!(jitter.push(65_535, [0u8; 4]), PushOutcome::Accepted);
    /// assert_eq!(jitter.push(0, [1u8; 4]), PushOutcome::Accepted);
    /// assert_eq!(jitter.push(0, [1u8; 4]), PushOutcome::Duplicate);
    /// ```
    pub fn push(&mut self, seq: u16, payload: T) -> PushOutcome {
        self.stats.received += 1;
        if self.phase == Phase::Idle {
            self.restart(seq, payload);
            return PushOutcome::Accepted;
        }
        let ext = extend(self.highest, seq);
        let ahead = ext > self.highest + self.capacity;
        let behind = ext + self.capacity.max(MAX_MISORDER) < self.next;
        if ahead || behind {
            return self.out_of_window(seq, payload, ahead);
        }
        self.probe = None;
        if ext < self.next {
            let backfill = self.phase == (Phase::Filling { fresh: true })
                && ext + self.capacity > self.highest;
            if !backfill {
                return self.refuse_old(ext);
            }
            // Nothing has played yet: an earlier packet simply becomes the head. Slots between
            // it and the old head are empty because only `next..` is ever filled.
            self.next = ext;
        }
        if ext >= self.next + self.capacity {
            self.make_room(ext);
        }
        let index = self.index(ext);
        if self.slots[index].is_some() {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        self.slots[index] = Some(payload);
        self.held += 1;
        self.highest = self.highest.max(ext);
        self.observe_headroom(ext);
        if matches!(self.phase, Phase::Filling { .. }) && self.fill_since.is_none() {
            self.fill_since = Some(self.ticks);
        }
        self.observe_arrival(ext);
        PushOutcome::Accepted
    }

    /// Releases what to play for this tick; call it exactly once per 20 ms tick.
    ///
    /// ```
    /// use chamade_media::jitter::{JitterBuffer, JitterConfig, Playout};
    /// let mut jitter: JitterBuffer<u32> = JitterBuffer::new(JitterConfig::default());
    /// assert_eq!(jitter.pop(), Playout::Buffering); // nothing received yet
    /// jitter.push(1, 10);
    /// assert_eq!(jitter.pop(), Playout::Buffering); // 20 ms buffered, 40 ms wanted
    /// jitter.push(2, 20);
    /// assert_eq!(jitter.pop(), Playout::Packet(10));
    /// ```
    pub fn pop(&mut self) -> Playout<T> {
        self.rotate_windows();
        let target = self.target();
        let out = match self.phase {
            Phase::Idle => Playout::Buffering,
            Phase::Filling { fresh } => {
                let fill_target = if self.quick_refill { 1 } else { target };
                if self.ready(fill_target) {
                    self.quick_refill = false;
                    self.phase = Phase::Playing;
                    self.fill_since = None;
                    self.stall_run = 0;
                    self.restart_trim_window();
                    self.play(target)
                } else {
                    if !fresh {
                        self.stats.stalled += 1;
                    }
                    Playout::Buffering
                }
            }
            Phase::Playing => self.play(target),
        };
        if matches!(out, Playout::Packet(_)) {
            self.quick_refill = false;
        }
        self.ticks += 1;
        out
    }

    /// Releases the oldest packet held at once, without waiting for the target depth or for
    /// a missing predecessor (which counts as lost and is refused if it turns up): for a
    /// leg whose frames are forwarded as they arrive instead of played on the tick.
    ///
    /// The buffer's clock must still move once per tick, through
    /// [`skip_tick`](Self::skip_tick), so that its jitter estimate stays right for when
    /// ticked playout resumes; it then starts from the first packet that arrives.
    ///
    /// ```
    /// use chamade_media::jitter::{JitterBuffer, JitterConfig};
    /// let mut jitter = JitterBuffer::new(JitterConfig::default());
    /// jitter.push(1, "a");
    /// assert_eq!(jitter.take_next(), Some("a")); // no 40 ms wait
    /// jitter.push(3, "c"); // 2 is missing
    /// assert_eq!(jitter.take_next(), Some("c"));
    /// assert_eq!(jitter.take_next(), None);
    /// assert_eq!(jitter.stats().lost, 1);
    /// ```
    pub fn take_next(&mut self) -> Option<T> {
        let oldest = self.oldest_held()?;
        self.skip_to(oldest);
        let payload = self.slots[self.index(oldest)].take()?;
        self.held -= 1;
        self.played_history = (self.played_history << 1) | 1;
        self.next += 1;
        self.stats.played += 1;
        self.phase = Phase::Playing;
        self.fill_since = None;
        self.stall_run = 0;
        self.quick_refill = true;
        self.restart_trim_window();
        Some(payload)
    }

    /// Moves the buffer's clock on by one tick without releasing anything (see
    /// [`take_next`](Self::take_next)).
    pub fn skip_tick(&mut self) {
        self.rotate_windows();
        self.ticks += 1;
    }

    fn rotate_windows(&mut self) {
        if self.ticks > 0 && self.ticks.is_multiple_of(FLOOR_BUCKET) {
            self.transit_floor.rotate();
        }
        if self.ticks > 0 && self.ticks.is_multiple_of(PEAK_BUCKET) {
            self.jitter_peak.rotate();
        }
    }

    /// Forgets the stream (buffered packets, sequence and jitter history) but keeps the
    /// counters: for a new SSRC, where old and new sequence numbers are unrelated.
    pub fn reset(&mut self) {
        self.clear_slots();
        self.phase = Phase::Idle;
        self.probe = None;
        self.fill_since = None;
        self.stall_run = 0;
        self.transit_floor = WindowMax::EMPTY;
        self.jitter_peak = WindowMax::EMPTY;
    }

    /// Everything counted so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The configuration the buffer was built with.
    pub fn config(&self) -> &JitterConfig {
        &self.config
    }

    /// Frames from the one due next to the newest received, gaps included: the latency the
    /// buffer currently adds, for metrics and tests.
    pub fn level(&self) -> FrameCount {
        if self.phase == Phase::Idle {
            return FrameCount::default();
        }
        FrameCount::saturating_from(self.span_from(self.next))
    }

    /// The depth the buffer currently aims for: the configured depth when fixed, or what the
    /// recent jitter calls for when adaptive.
    pub fn target_depth(&self) -> FrameCount {
        FrameCount::saturating_from(self.target())
    }

    /// The largest delay of a packet relative to the least delayed one over the last two to
    /// four seconds, in frames: what an adaptive target follows, exposed for metrics.
    pub fn observed_jitter(&self) -> FrameCount {
        FrameCount::saturating_from(self.jitter_ticks())
    }

    /// Whether playback has started and not run dry since.
    pub fn is_playing(&self) -> bool {
        self.phase == Phase::Playing
    }

    fn target(&self) -> u64 {
        let min = u64::from(self.config.min_depth().get());
        let max = u64::from(self.config.max_depth().get());
        match self.config.mode() {
            DepthMode::Fixed => min,
            DepthMode::Adaptive => (1 + self.jitter_ticks()).clamp(min, max),
        }
    }

    fn jitter_ticks(&self) -> u64 {
        self.jitter_peak
            .get()
            .map_or(0, |peak| u64::try_from(peak).unwrap_or(0))
    }

    fn index(&self, ext: u64) -> usize {
        // The remainder is below `capacity`, which came from a `u32`.
        (ext % self.capacity) as usize
    }

    /// Frames from `from` to the newest packet, inclusive; zero if `from` is past it.
    fn span_from(&self, from: u64) -> u64 {
        (self.highest + 1).saturating_sub(from)
    }

    /// Starts a new run of sequence numbers at `seq`, discarding anything buffered.
    fn restart(&mut self, seq: u16, payload: T) {
        self.clear_slots();
        let ext = EXT_BASE + u64::from(seq);
        self.next = ext;
        self.highest = ext;
        let index = self.index(ext);
        self.slots[index] = Some(payload);
        self.held = 1;
        self.played_history = 0;
        self.probe = None;
        self.phase = Phase::Filling { fresh: true };
        self.fill_since = Some(self.ticks);
        self.transit_floor = WindowMax::EMPTY;
        self.jitter_peak = WindowMax::EMPTY;
        self.observe_arrival(ext);
    }

    fn clear_slots(&mut self) {
        if self.held > 0 {
            for slot in self.slots.iter_mut() {
                if slot.take().is_some() {
                    self.stats.overruns += 1;
                }
            }
        }
        self.held = 0;
    }

    /// A packet far from the stream: a sender restart if confirmed, otherwise a stray.
    fn out_of_window(&mut self, seq: u16, payload: T, ahead: bool) -> PushOutcome {
        let confirmed = self.probe == Some(seq.wrapping_sub(1));
        // Resuming after a long outage: the buffer ran dry and holds nothing to protect.
        let resuming = ahead && self.held == 0 && self.phase == (Phase::Filling { fresh: false });
        if confirmed || resuming {
            self.stats.resyncs += 1;
            self.restart(seq, payload);
            return PushOutcome::Resynced;
        }
        self.probe = Some(seq);
        self.stats.out_of_window += 1;
        PushOutcome::OutOfWindow
    }

    /// A packet whose slot has passed.
    fn refuse_old(&mut self, ext: u64) -> PushOutcome {
        let age = self.next - ext;
        if age <= HISTORY_BITS && (self.played_history >> (age - 1)) & 1 == 1 {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        self.stats.late += 1;
        self.observe_headroom(ext);
        self.observe_arrival(ext);
        PushOutcome::TooLate
    }

    /// Discards the oldest frames so `ext` fits, leaving the level at the target: a buffer
    /// this far behind has lost its latency budget, and catching up at once beats playing a
    /// second of stale audio.
    fn make_room(&mut self, ext: u64) {
        let new_next = ext + 1 - self.target().min(self.capacity);
        let skip = new_next.saturating_sub(self.next);
        if skip >= self.capacity {
            self.clear_slots();
            self.played_history = 0;
            self.next = new_next;
            return;
        }
        for _ in 0..skip {
            if self.advance_head(false) {
                self.stats.overruns += 1;
            }
        }
    }

    /// Moves the head on by one, dropping its packet if any; returns whether there was one.
    fn advance_head(&mut self, played: bool) -> bool {
        let index = self.index(self.next);
        let had = self.slots[index].take().is_some();
        if had {
            self.held -= 1;
        }
        self.played_history = (self.played_history << 1) | u64::from(played);
        self.next += 1;
        had
    }

    /// The oldest buffered packet's extended sequence number.
    fn oldest_held(&self) -> Option<u64> {
        if self.held == 0 {
            return None;
        }
        // Bounded by the capacity: every held packet lies in `next..next + capacity`.
        (self.next..=self.highest).find(|&ext| self.slots[self.index(ext)].is_some())
    }

    /// Whether filling is complete; if so, moves the head to the oldest buffered packet.
    fn ready(&mut self, target: u64) -> bool {
        let (Some(since), Some(oldest)) = (self.fill_since, self.oldest_held()) else {
            return false;
        };
        let enough = self.span_from(oldest) >= target;
        let waited = self.ticks - since + 1 >= target;
        if !(enough || waited) {
            return false;
        }
        self.skip_to(oldest);
        true
    }

    /// Moves the head forward to `oldest`, counting the sequence numbers passed over as lost.
    fn skip_to(&mut self, oldest: u64) {
        let skipped = oldest - self.next;
        self.stats.lost += skipped;
        self.played_history = if skipped >= HISTORY_BITS {
            0
        } else {
            self.played_history << skipped
        };
        self.next = oldest;
    }

    fn restart_trim_window(&mut self) {
        self.headroom_min = u64::MAX;
        self.headroom_max = 0;
        self.trim_ticks = 0;
    }

    /// Records how early a packet arrived relative to its playout, while playing.
    fn observe_headroom(&mut self, ext: u64) {
        if self.phase == Phase::Playing {
            let headroom = (ext + 1).saturating_sub(self.next);
            self.headroom_min = self.headroom_min.min(headroom);
            self.headroom_max = self.headroom_max.max(headroom);
        }
    }

    /// Trims one frame from the head if, over the last window, every packet arrived with at
    /// least a frame to spare and undelayed packets waited longer than the target: the frame
    /// is pure latency, and removing it would not have made any packet late.
    fn trim_if_surplus(&mut self, target: u64) {
        self.trim_ticks += 1;
        if self.trim_ticks < TRIM_WINDOW {
            return;
        }
        let surplus =
            self.headroom_min != u64::MAX && self.headroom_min >= 2 && self.headroom_max > target;
        if surplus && self.held > 0 {
            self.advance_head(false);
            self.stats.trimmed += 1;
        }
        self.restart_trim_window();
    }

    fn play(&mut self, target: u64) -> Playout<T> {
        self.trim_if_surplus(target);
        let index = self.index(self.next);
        if let Some(payload) = self.slots[index].take() {
            self.held -= 1;
            self.played_history = (self.played_history << 1) | 1;
            self.next += 1;
            self.stall_run = 0;
            self.stats.played += 1;
            return Playout::Packet(payload);
        }
        if self.held == 0 {
            self.stats.underruns += 1;
            self.stats.stalled += 1;
            self.phase = Phase::Filling { fresh: false };
            return Playout::Buffering;
        }
        if self.span_from(self.next) < target && self.stall_run < target {
            // Fewer frames than the target: wait for the gap rather than conceal it now.
            self.stall_run += 1;
            self.stats.stalled += 1;
            return Playout::Buffering;
        }
        self.advance_head(false);
        self.stall_run = 0;
        self.stats.lost += 1;
        Playout::Lost
    }

    /// Updates the jitter estimate with a packet that arrived in the current tick.
    fn observe_arrival(&mut self, ext: u64) {
        // Both values are far below `i64::MAX`: ticks count 20 ms steps and `ext` stays
        // within a few `u16` ranges of `EXT_BASE`.
        let transit = self.ticks as i64 - ext as i64;
        self.transit_floor.observe(-transit);
        let floor = self.transit_floor.get().map_or(transit, |neg| -neg);
        self.jitter_peak.observe(transit - floor);
    }
}

/// Extends a 16-bit sequence number to the 64-bit one nearest to `highest` (RFC 3550 §A.1).
fn extend(highest: u64, seq: u16) -> u64 {
    // Reinterpreting the wrapped difference as signed picks the nearer direction.
    let delta = i64::from(seq.wrapping_sub(highest as u16) as i16);
    highest.saturating_add_signed(delta)
}

/// The maximum of a value over a sliding window, approximated with two buckets: cheap, no
/// allocation, and forgetting old extremes within one to two bucket lengths.
#[derive(Clone, Copy, Debug)]
struct WindowMax {
    current: Option<i64>,
    previous: Option<i64>,
}

impl WindowMax {
    const EMPTY: WindowMax = WindowMax {
        current: None,
        previous: None,
    };

    fn observe(&mut self, value: i64) {
        self.current = Some(self.current.map_or(value, |c| c.max(value)));
    }

    fn rotate(&mut self) {
        self.previous = self.current.take();
    }

    fn get(&self) -> Option<i64> {
        match (self.current, self.previous) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}
