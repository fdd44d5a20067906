//! Lock-free single-producer/single-consumer PCM rings with re-framing.
//!
//! A leg (the agent WebSocket, an RTP socket, a WebRTC track) writes audio in whatever
//! chunks it receives; the mixer tick pulls exactly one 20 ms frame. The ring in between
//! is a playout queue: an agent may push an 11-second utterance in one WebSocket frame and
//! expects it played in real time, so the default capacity is 30 s.
//!
//! **Overrun policy.** The producer never blocks. With a split SPSC ring the producer cannot
//! discard the oldest samples (they belong to the consumer side), so when a write does not
//! fit, the samples that do not fit — the newest ones, the end of the write — are dropped and
//! counted. For a playout queue this is also the right choice: the oldest audio is what is
//! being heard now, and cutting it would make the listener hear a jump; dropping the tail of
//! an over-long utterance keeps what is playing continuous. Where a reader must stay close to
//! real time instead (an output ring read by a slow leg), the consumer calls
//! [`PcmConsumer::trim_to`] before pulling, which drops the oldest audio on the consumer's
//! side and counts it.
//!
//! **Underruns.** A pull that finds part of a frame is an underrun: the writer was late in
//! the middle of a stream. The partial tail is held for a short grace (one tick by default),
//! in case the rest arrives, then played padded with silence, so the end of an utterance
//! that is not a whole number of frames is still heard. A pull that finds nothing at all is
//! an idle pull (a participant who is not talking), counted separately.
//!
//! **Standing latency.** A writer that streams in real time, one frame every 20 ms, is
//! sometimes a little late: that tick pulls nothing, and from then on one frame more stays
//! queued for good, because the ring drains exactly as fast as it fills. A writer that
//! stalls and then catches up leaves the whole stall standing, and the queue only ever
//! grows to the worst stall seen (a ratchet). A ring built with a standing guard
//! ([`RingConfig::streaming_playout`]) watches the least audio left after each pull over
//! five seconds: when the writer streamed in small chunks that kept pace with playout all
//! that time and never let the queue fall below that level, the level is standing latency,
//! and it is dropped (the oldest samples, counted as trimmed). A writer that stopped in the
//! last pulls of the window is not dropped from: what it left is the end of its stream
//! draining (a lead it kept on purpose), not latency. A long utterance queued at
//! once is never cut: its writes are large, what comes after it does not keep pace, and its
//! queue is far above the guard's ceiling.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ringbuf::HeapRb;
use ringbuf::traits::{Consumer, Observer, Producer, Split};

use crate::rate::SampleRate;

/// Default capacity of a playout ring: room for a long utterance pushed all at once.
pub const DEFAULT_CAPACITY_MS: u64 = 30_000;

/// The ring of a streaming playout ([`RingConfig::streaming_playout`]): twenty ticks' pull
/// while the producer tops it up every tick, and twice the most standing latency the guard
/// drops. Its pages are all written within its first pass, so its size is what every
/// streaming call holds.
pub const STREAMING_RING_MS: u64 = 400;

/// Samples converted from bytes per step of [`PcmProducer::push_bytes`].
const CONVERT_CHUNK: usize = 256;

/// Default number of ticks a partial frame waits for its remainder before it is played padded.
pub const DEFAULT_TAIL_GRACE_TICKS: u32 = 1;

/// How a ring is sized and how it treats a partial last frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Rate of the samples the ring carries: sets the frame size and duration maths.
    pub rate: SampleRate,
    /// Capacity in milliseconds of audio (rounded up to whole frames, at least one frame).
    pub capacity_ms: u64,
    /// Pulls a partial frame waits for the rest of its samples before it plays padded.
    pub tail_grace_ticks: u32,
    /// Whether the consumer drops standing latency (see the module documentation).
    pub standing_guard: bool,
    /// Audio beyond the ring's capacity that the producer keeps on its side until the ring
    /// has room, in milliseconds (0: none, what does not fit is dropped).
    pub overflow_ms: u64,
}

impl RingConfig {
    /// A playout ring at `rate` with the default 30 s capacity and one tick of tail grace.
    pub fn playout(rate: SampleRate) -> RingConfig {
        RingConfig {
            rate,
            capacity_ms: DEFAULT_CAPACITY_MS,
            tail_grace_ticks: DEFAULT_TAIL_GRACE_TICKS,
            standing_guard: false,
            overflow_ms: 0,
        }
    }

    /// An agent's playout ring: a writer that may stream in real time (so the consumer
    /// drops standing latency, and late chunks do not add up) or queue a long utterance at
    /// once. The ring holds [`STREAMING_RING_MS`]; the rest of an utterance, up to the
    /// usual 30 s, waits on the producer's side and moves in as the ring drains
    /// ([`PcmProducer::pump`]). A call that streams never touches more than the small ring.
    pub fn streaming_playout(rate: SampleRate) -> RingConfig {
        RingConfig {
            standing_guard: true,
            capacity_ms: STREAMING_RING_MS,
            overflow_ms: DEFAULT_CAPACITY_MS - STREAMING_RING_MS,
            ..RingConfig::playout(rate)
        }
    }

    /// A ring holding `ms` of audio at `rate`.
    pub fn with_capacity_ms(rate: SampleRate, ms: u64) -> RingConfig {
        RingConfig {
            capacity_ms: ms,
            ..RingConfig::playout(rate)
        }
    }

    fn capacity_samples(&self) -> usize {
        let frame = self.rate.frame_samples();
        let wanted = self.rate.ms_to_samples(self.capacity_ms).max(frame);
        wanted.div_ceil(frame) * frame
    }
}

/// Counters shared by both ends of a ring; either side (and the control plane) may read them.
///
/// All counts are monotonic. Positions derived from them (`samples_written`,
/// `samples_played + samples_flushed + samples_trimmed`) let callers place markers in the
/// stream and learn when playout passes them.
#[derive(Debug, Default)]
pub struct RingStats {
    samples_written: AtomicU64,
    samples_dropped: AtomicU64,
    overruns: AtomicU64,
    samples_played: AtomicU64,
    samples_flushed: AtomicU64,
    samples_trimmed: AtomicU64,
    underruns: AtomicU64,
    idle_pulls: AtomicU64,
    frames_pulled: AtomicU64,
    /// Writes that queued something.
    writes: AtomicU64,
    /// The largest write since the consumer last looked, in samples (the guard's reading).
    largest_write: AtomicU64,
}

/// A point-in-time copy of [`RingStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RingSnapshot {
    /// Samples accepted into the ring.
    pub samples_written: u64,
    /// Samples refused because the ring was full (the newest part of a write).
    pub samples_dropped: u64,
    /// Writes that did not fit entirely.
    pub overruns: u64,
    /// Samples handed to the consumer in pulled frames (padding excluded).
    pub samples_played: u64,
    /// Samples discarded by [`PcmConsumer::flush`] (barge-in).
    pub samples_flushed: u64,
    /// Oldest samples discarded by [`PcmConsumer::trim_to`] (slow reader) or by the
    /// standing guard (latency a stream's late chunks left behind).
    pub samples_trimmed: u64,
    /// Pulls that found part of a frame.
    pub underruns: u64,
    /// Pulls that found nothing.
    pub idle_pulls: u64,
    /// Pulls that delivered audio (full or padded).
    pub frames_pulled: u64,
}

impl RingStats {
    /// Reads every counter (each atomically; the set is not one atomic snapshot).
    pub fn snapshot(&self) -> RingSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RingSnapshot {
            samples_written: r(&self.samples_written),
            samples_dropped: r(&self.samples_dropped),
            overruns: r(&self.overruns),
            samples_played: r(&self.samples_played),
            samples_flushed: r(&self.samples_flushed),
            samples_trimmed: r(&self.samples_trimmed),
            underruns: r(&self.underruns),
            idle_pulls: r(&self.idle_pulls),
            frames_pulled: r(&self.frames_pulled),
        }
    }

    /// Samples the consumer has moved past: played, flushed or trimmed.
    ///
    /// Compared with a write position taken from `samples_written`, it tells whether playout
    /// has reached a marker.
    pub fn consumed_position(&self) -> u64 {
        self.samples_played.load(Ordering::Relaxed)
            + self.samples_flushed.load(Ordering::Relaxed)
            + self.samples_trimmed.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PushOutcome {
    /// Samples now queued.
    pub accepted: usize,
    /// Samples dropped because the ring was full.
    pub dropped: usize,
}

/// What a pull delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pull {
    /// A whole frame of queued audio.
    Frame,
    /// The last `n` samples of a stream, padded with silence to a frame.
    Partial(usize),
    /// Part of a frame is queued and is being held for its remainder; silence this tick.
    Underrun,
    /// Nothing queued; silence this tick.
    Idle,
}

impl Pull {
    /// Whether the pulled frame carries any queued audio (as opposed to pure silence).
    pub fn has_audio(self) -> bool {
        matches!(self, Pull::Frame | Pull::Partial(_))
    }
}

/// Creates a ring and returns its two ends.
///
/// ```
/// use chamade_media::{SampleRate, ring::{pcm_ring, RingConfig, Pull}};
/// let (mut tx, mut rx) = pcm_ring(RingConfig::playout(SampleRate::HZ_8000));
/// tx.push_bytes(&[1, 0, 2]);          // one sample, plus a byte held for its pair
/// tx.push_bytes(&[0; 319]);           // completes it, then 159 more samples
/// let mut frame = [0i16; 160];
/// assert_eq!(rx.pull_frame(&mut frame), Pull::Frame);
/// assert_eq!(frame[0], 1);
/// assert_eq!(frame[1], 2);
/// ```
pub fn pcm_ring(config: RingConfig) -> (PcmProducer, PcmConsumer) {
    let capacity = config.capacity_samples();
    let (prod, cons) = HeapRb::<i16>::new(capacity).split();
    let stats = Arc::new(RingStats::default());
    (
        PcmProducer {
            inner: prod,
            pending_byte: None,
            rate: config.rate,
            stats: Arc::clone(&stats),
            overflow: VecDeque::new(),
            overflow_limit: config.rate.ms_to_samples(config.overflow_ms),
        },
        PcmConsumer {
            inner: cons,
            rate: config.rate,
            tail_grace_ticks: config.tail_grace_ticks,
            partial_waits: 0,
            guard: config.standing_guard.then(StandingGuard::new),
            stats,
        },
    )
}

/// The writing end: owned by a leg. Never blocks.
pub struct PcmProducer {
    inner: ringbuf::HeapProd<i16>,
    pending_byte: Option<u8>,
    rate: SampleRate,
    stats: Arc<RingStats>,
    /// Samples written beyond the ring's capacity, waiting on the producer's side (a long
    /// utterance); allocated only while something waits.
    overflow: VecDeque<i16>,
    /// Most samples the overflow holds; 0 for a ring without one.
    overflow_limit: usize,
}

impl PcmProducer {
    /// Queues s16le bytes of any length; an odd trailing byte waits for its pair.
    pub fn push_bytes(&mut self, mut bytes: &[u8]) -> PushOutcome {
        let mut outcome = PushOutcome::default();
        if let Some(low) = self.pending_byte {
            let Some((&high, rest)) = bytes.split_first() else {
                return outcome;
            };
            self.pending_byte = None;
            bytes = rest;
            outcome = self.push_samples(&[i16::from_le_bytes([low, high])]);
        }
        let whole = bytes.len() / 2 * 2;
        if whole < bytes.len() {
            self.pending_byte = Some(bytes[whole]);
        }
        let pairs = &bytes[..whole];
        let n = pairs.len() / 2;
        // Convert through a small stack buffer so that the ring takes whole slices (a
        // per-sample iterator push costs several times more).
        let mut chunk = [0i16; CONVERT_CHUNK];
        let mut more = PushOutcome::default();
        for bytes in pairs.chunks(CONVERT_CHUNK * 2) {
            let samples = &mut chunk[..bytes.len() / 2];
            for (s, b) in samples.iter_mut().zip(bytes.chunks_exact(2)) {
                *s = i16::from_le_bytes([b[0], b[1]]);
            }
            let got = self.queue(samples);
            more.accepted += got.accepted;
            more.dropped += got.dropped;
        }
        debug_assert_eq!(more.accepted + more.dropped, n);
        self.account(more);
        PushOutcome {
            accepted: outcome.accepted + more.accepted,
            dropped: outcome.dropped + more.dropped,
        }
    }

    /// Queues samples; what does not fit is dropped and counted.
    pub fn push_samples(&mut self, samples: &[i16]) -> PushOutcome {
        let outcome = self.queue(samples);
        self.account(outcome);
        outcome
    }

    /// Into the ring, and what does not fit into the overflow (if the ring has one), in
    /// order: once anything waits in the overflow, new samples queue behind it.
    fn queue(&mut self, samples: &[i16]) -> PushOutcome {
        self.pump();
        let mut accepted = 0;
        if self.overflow.is_empty() {
            accepted = self.inner.push_slice(samples);
        }
        let rest = &samples[accepted..];
        let take = rest
            .len()
            .min(self.overflow_limit.saturating_sub(self.overflow.len()));
        self.overflow.extend(&rest[..take]);
        accepted += take;
        PushOutcome {
            accepted,
            dropped: samples.len() - accepted,
        }
    }

    /// Moves what waits in the overflow into the ring as far as it has room; returns the
    /// samples moved. A leg with an overflow calls it at least once a tick (the agent
    /// socket does it on every pump); writes do it too. An emptied overflow gives its memory
    /// back.
    pub fn pump(&mut self) -> usize {
        if self.overflow.is_empty() {
            return 0;
        }
        let (front, back) = self.overflow.as_slices();
        let mut moved = self.inner.push_slice(front);
        if moved == front.len() {
            moved += self.inner.push_slice(back);
        }
        self.overflow.drain(..moved);
        if self.overflow.is_empty() {
            self.overflow = VecDeque::new();
        }
        moved
    }

    /// Drops what waits in the overflow (barge-in: the ring itself is flushed by its
    /// consumer), counted as flushed so that playout positions stay right.
    pub fn discard_overflow(&mut self) -> usize {
        let n = self.overflow.len();
        self.overflow = VecDeque::new();
        RingStats::add(&self.stats.samples_flushed, n);
        n
    }

    fn account(&self, outcome: PushOutcome) {
        RingStats::add(&self.stats.samples_written, outcome.accepted);
        if outcome.accepted > 0 {
            RingStats::add(&self.stats.writes, 1);
            self.stats
                .largest_write
                .fetch_max(outcome.accepted as u64, Ordering::Relaxed);
        }
        if outcome.dropped > 0 {
            RingStats::add(&self.stats.samples_dropped, outcome.dropped);
            RingStats::add(&self.stats.overruns, 1);
        }
    }

    /// Whether a byte is held waiting for its pair.
    pub fn has_pending_byte(&self) -> bool {
        self.pending_byte.is_some()
    }

    /// Samples queued and not yet pulled, the overflow included.
    pub fn queued_samples(&self) -> usize {
        self.inner.occupied_len() + self.overflow.len()
    }

    /// Queued audio in milliseconds: lets an agent pace its TTS.
    pub fn queued_ms(&self) -> u64 {
        self.rate.samples_to_ms(self.queued_samples())
    }

    /// Room left, in samples, the overflow's included.
    pub fn free_samples(&self) -> usize {
        self.inner.vacant_len() + self.overflow_limit.saturating_sub(self.overflow.len())
    }

    /// The ring's rate.
    pub fn rate(&self) -> SampleRate {
        self.rate
    }

    /// The counters shared with the consumer.
    pub fn stats(&self) -> &Arc<RingStats> {
        &self.stats
    }
}

/// The reading end: owned by the mixer shard (input rings) or a leg (output rings).
pub struct PcmConsumer {
    inner: ringbuf::HeapCons<i16>,
    rate: SampleRate,
    tail_grace_ticks: u32,
    partial_waits: u32,
    guard: Option<StandingGuard>,
    stats: Arc<RingStats>,
}

/// Pulls in one window of the standing guard: five seconds, so that a writer late now and
/// then keeps the one frame that absorbs its lateness instead of losing and regaining it.
const GUARD_WINDOW_PULLS: u32 = 250;
/// Writes of at most this many frames count as streaming.
const GUARD_STREAM_WRITE_FRAMES: usize = 2;
/// A window with fewer writes than this was not a stream (a pause, a bulk utterance).
const GUARD_MIN_WRITES: u64 = (GUARD_WINDOW_PULLS / 2) as u64;
/// Standing latency above this is not a ratchet but audio queued on purpose: left alone.
const GUARD_MAX_STANDING_FRAMES: usize = 10;
/// The writer must have written within this many pulls of the window's end: what is left
/// when a stream has just ended is its last words draining, not standing latency.
const GUARD_STILL_WRITING_PULLS: u32 = 2;

/// The consumer's view of one window (see the module documentation).
#[derive(Debug)]
struct StandingGuard {
    pulls: u32,
    /// Least audio left after a pull in this window, in samples.
    least_left: usize,
    /// `writes` when the window began.
    writes_before: u64,
    /// `samples_written` when the window began.
    written_before: u64,
    /// `writes` as of the last pull, and the pull of this window in which it last grew.
    writes_seen: u64,
    last_write_pull: u32,
}

impl StandingGuard {
    fn new() -> StandingGuard {
        StandingGuard {
            pulls: 0,
            least_left: usize::MAX,
            writes_before: 0,
            written_before: 0,
            writes_seen: 0,
            last_write_pull: 0,
        }
    }
}

impl PcmConsumer {
    /// Fills `out` with exactly one 20 ms frame, or silence, and says which.
    ///
    /// `out` must be `rate.frame_samples()` long; a longer slice is filled only up to that
    /// length, a shorter one is treated as the frame size (the caller's bug, never a panic).
    pub fn pull_frame(&mut self, out: &mut [i16]) -> Pull {
        let n = self.rate.frame_samples().min(out.len());
        let out = &mut out[..n];
        let queued = self.inner.occupied_len();
        if queued >= n {
            self.inner.pop_slice(out);
            self.partial_waits = 0;
            RingStats::add(&self.stats.samples_played, n);
            RingStats::add(&self.stats.frames_pulled, 1);
            self.watch_standing(queued - n, n);
            return Pull::Frame;
        }
        self.watch_standing(0, n);
        if queued == 0 {
            out.fill(0);
            self.partial_waits = 0;
            RingStats::add(&self.stats.idle_pulls, 1);
            return Pull::Idle;
        }
        RingStats::add(&self.stats.underruns, 1);
        if self.partial_waits < self.tail_grace_ticks {
            self.partial_waits += 1;
            out.fill(0);
            return Pull::Underrun;
        }
        self.partial_waits = 0;
        let got = self.inner.pop_slice(&mut out[..queued]);
        out[got..].fill(0);
        RingStats::add(&self.stats.samples_played, got);
        RingStats::add(&self.stats.frames_pulled, 1);
        Pull::Partial(got)
    }

    /// The standing guard's step after a pull that left `left` samples queued.
    fn watch_standing(&mut self, left: usize, frame: usize) {
        let Some(guard) = self.guard.as_mut() else {
            return;
        };
        guard.least_left = guard.least_left.min(left);
        guard.pulls += 1;
        let writes = self.stats.writes.load(Ordering::Relaxed);
        if writes != guard.writes_seen {
            guard.writes_seen = writes;
            guard.last_write_pull = guard.pulls;
        }
        if guard.pulls < GUARD_WINDOW_PULLS {
            return;
        }
        let written = self.stats.samples_written.load(Ordering::Relaxed);
        let largest = self.stats.largest_write.swap(0, Ordering::Relaxed) as usize;
        // A stream: many small writes that together kept pace with playout (at least 90 %
        // of what was pulled), not a trickle beside an utterance queued earlier.
        let pace = u64::from(GUARD_WINDOW_PULLS) * frame as u64 * 9 / 10;
        let streamed = writes.saturating_sub(guard.writes_before) >= GUARD_MIN_WRITES
            && written.saturating_sub(guard.written_before) >= pace
            && largest <= GUARD_STREAM_WRITE_FRAMES * frame
            && guard.pulls - guard.last_write_pull <= GUARD_STILL_WRITING_PULLS;
        let standing = guard.least_left;
        if streamed && standing >= frame / 2 && standing <= GUARD_MAX_STANDING_FRAMES * frame {
            let dropped = self.inner.skip(standing);
            RingStats::add(&self.stats.samples_trimmed, dropped);
        }
        *guard = StandingGuard {
            writes_before: writes,
            written_before: written,
            writes_seen: writes,
            ..StandingGuard::new()
        };
    }

    /// Discards everything queued (barge-in): returns the samples dropped.
    pub fn flush(&mut self) -> usize {
        let n = self.inner.clear();
        self.partial_waits = 0;
        RingStats::add(&self.stats.samples_flushed, n);
        n
    }

    /// Drops the oldest samples so that at most `max_samples` stay queued; returns how many.
    ///
    /// A reader that fell behind (a slow WebSocket) calls this before pulling so that it hears
    /// the present rather than a growing backlog.
    pub fn trim_to(&mut self, max_samples: usize) -> usize {
        let queued = self.inner.occupied_len();
        if queued <= max_samples {
            return 0;
        }
        let n = self.inner.skip(queued - max_samples);
        RingStats::add(&self.stats.samples_trimmed, n);
        n
    }

    /// Samples queued and not yet pulled.
    pub fn queued_samples(&self) -> usize {
        self.inner.occupied_len()
    }

    /// Queued audio in milliseconds.
    pub fn queued_ms(&self) -> u64 {
        self.rate.samples_to_ms(self.queued_samples())
    }

    /// The ring's rate.
    pub fn rate(&self) -> SampleRate {
        self.rate
    }

    /// The counters shared with the producer.
    pub fn stats(&self) -> &Arc<RingStats> {
        &self.stats
    }
}

#[cfg(test)]
mod tests;
