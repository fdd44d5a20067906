//! RTP jitter buffer and PCM loss concealment.
//!
//! Packets from the network arrive late, early, twice or not at all, while the mixer pulls
//! exactly one 20 ms frame per tick. [`JitterBuffer`] sits between the two: it reorders by
//! RTP sequence number (across the 65535 → 0 wrap), drops duplicates and packets too late to
//! play, holds a target depth of audio, and says per tick whether a packet is due, lost or
//! not yet available. [`Concealer`] turns a lost frame of decoded PCM (G.711 legs) into a
//! faded repeat of the last good frame, then silence; Opus legs use the decoder's own PLC
//! instead.
//!
//! Each leg does this once per tick, after draining its received packets:
//!
//! ```text
//! for (seq, payload) in received { jitter.push(seq, payload); }
//! match jitter.pop() {
//!     Playout::Packet(p) => decode p (and, for PCM, concealer.good(&mut frame)),
//!     Playout::Lost      => conceal (Opus PLC or concealer.conceal),
//!     Playout::Buffering => conceal as well: it fades to silence on its own,
//! }
//! ```
//!
//! Time is the number of `pop` calls: packets pushed between two pops arrived in the same
//! tick. The buffer therefore reads no clock and needs none passed in, and arrival jitter is
//! measured in the same unit the playout runs on.
//!
//! Every packet is assumed to carry one 20 ms frame (`ptime` 20), which is what every leg of
//! the gateway negotiates.

mod buffer;
mod conceal;
#[cfg(test)]
mod tests;

pub use buffer::JitterBuffer;
pub use conceal::Concealer;

use std::fmt;

use crate::rate::FRAME_MS;

/// A length of audio counted in whole 20 ms frames: one RTP packet, one slot, one tick.
///
/// Depths and levels are frame counts rather than milliseconds because the buffer can only
/// move by whole packets; the newtype keeps them apart from sample and byte counts.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct FrameCount(u32);

impl FrameCount {
    /// A count of `frames` 20 ms frames.
    ///
    /// ```
    /// use chamade_media::jitter::FrameCount;
    /// assert_eq!(FrameCount::new(2).ms(), 40);
    /// ```
    pub const fn new(frames: u32) -> FrameCount {
        FrameCount(frames)
    }

    /// The number of frames.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The duration in milliseconds, for configuration and metrics that speak in time.
    pub const fn ms(self) -> u64 {
        self.0 as u64 * FRAME_MS as u64
    }

    /// Saturating conversion from the buffer's 64-bit sequence arithmetic.
    fn saturating_from(frames: u64) -> FrameCount {
        FrameCount(u32::try_from(frames).unwrap_or(u32::MAX))
    }
}

impl fmt::Display for FrameCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} frames ({} ms)", self.0, self.ms())
    }
}

/// How the buffer chooses its target depth.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum DepthMode {
    /// The target is always the configured depth: predictable latency, chosen per leg.
    Fixed,
    /// The target follows the arrival jitter seen over the last few seconds, between the
    /// configured minimum and maximum, so a clean network gets the minimum latency and a
    /// jittery one gets fewer losses.
    Adaptive,
}

/// Why a jitter buffer configuration cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JitterConfigError {
    /// A depth of zero frames would never let a packet wait for a reordered predecessor, and
    /// would leave nothing to play when the tick comes.
    #[error("the jitter buffer depth must be at least one frame")]
    ZeroDepth,
    /// The (minimum) depth is larger than the capacity that bounds it.
    #[error("jitter buffer depth of {depth} exceeds its maximum of {max}")]
    DepthAboveMax {
        /// The requested (minimum) depth.
        depth: FrameCount,
        /// The requested maximum.
        max: FrameCount,
    },
    /// The maximum is beyond [`JitterConfig::LIMIT`].
    #[error("jitter buffer maximum of {0} exceeds the limit of {limit}", limit = JitterConfig::LIMIT)]
    MaxAboveLimit(FrameCount),
}

/// A validated jitter buffer configuration: depths in frames and how the target is chosen.
///
/// Built through [`JitterConfig::fixed`] or [`JitterConfig::adaptive`], which refuse
/// impossible combinations, so a buffer never has to check its configuration again.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct JitterConfig {
    mode: DepthMode,
    min_depth: FrameCount,
    max_depth: FrameCount,
}

impl JitterConfig {
    /// 40 ms: absorbs one frame of jitter, the usual figure for a wired or good Wi-Fi peer.
    pub const DEFAULT_DEPTH: FrameCount = FrameCount(2);
    /// One second: beyond this, delay is worse for a conversation than dropping audio.
    pub const DEFAULT_MAX_DEPTH: FrameCount = FrameCount(50);
    /// Ten seconds: keeps the ring far below half the 16-bit sequence space, which the
    /// wrap-around arithmetic needs to tell old packets from new ones.
    pub const LIMIT: FrameCount = FrameCount(500);

    /// A buffer that always aims for `depth` frames and never holds more than `max_depth`.
    ///
    /// ```
    /// use chamade_media::jitter::{FrameCount, JitterConfig, JitterConfigError};
    /// let config = JitterConfig::fixed(FrameCount::new(3), FrameCount::new(50)).unwrap();
    /// assert_eq!(config.min_depth().ms(), 60);
    /// assert_eq!(
    ///     JitterConfig::fixed(FrameCount::new(0), FrameCount::new(50)),
    ///     Err(JitterConfigError::ZeroDepth)
    /// );
    /// ```
    pub fn fixed(
        depth: FrameCount,
        max_depth: FrameCount,
    ) -> Result<JitterConfig, JitterConfigError> {
        JitterConfig::build(DepthMode::Fixed, depth, max_depth)
    }

    /// A buffer whose target follows observed jitter between `min_depth` and `max_depth`.
    ///
    /// A `min_depth` of one frame starts playback as soon as one packet is buffered.
    ///
    /// ```
    /// use chamade_media::jitter::{DepthMode, FrameCount, JitterConfig};
    /// let config = JitterConfig::adaptive(FrameCount::new(1), FrameCount::new(25)).unwrap();
    /// assert_eq!(config.mode(), DepthMode::Adaptive);
    /// assert!(JitterConfig::adaptive(FrameCount::new(30), FrameCount::new(25)).is_err());
    /// ```
    pub fn adaptive(
        min_depth: FrameCount,
        max_depth: FrameCount,
    ) -> Result<JitterConfig, JitterConfigError> {
        JitterConfig::build(DepthMode::Adaptive, min_depth, max_depth)
    }

    fn build(
        mode: DepthMode,
        min_depth: FrameCount,
        max_depth: FrameCount,
    ) -> Result<JitterConfig, JitterConfigError> {
        if min_depth.get() == 0 {
            return Err(JitterConfigError::ZeroDepth);
        }
        if max_depth > JitterConfig::LIMIT {
            return Err(JitterConfigError::MaxAboveLimit(max_depth));
        }
        if min_depth > max_depth {
            return Err(JitterConfigError::DepthAboveMax {
                depth: min_depth,
                max: max_depth,
            });
        }
        Ok(JitterConfig {
            mode,
            min_depth,
            max_depth,
        })
    }

    /// How the target depth is chosen.
    pub const fn mode(&self) -> DepthMode {
        self.mode
    }

    /// The fixed depth, or the floor of an adaptive one.
    pub const fn min_depth(&self) -> FrameCount {
        self.min_depth
    }

    /// The most audio the buffer holds: its ring capacity and the ceiling of the target.
    pub const fn max_depth(&self) -> FrameCount {
        self.max_depth
    }
}

impl Default for JitterConfig {
    /// Fixed 40 ms depth, one second maximum.
    fn default() -> JitterConfig {
        JitterConfig {
            mode: DepthMode::Fixed,
            min_depth: JitterConfig::DEFAULT_DEPTH,
            max_depth: JitterConfig::DEFAULT_MAX_DEPTH,
        }
    }
}

/// What `push` did with a packet; the same events are also counted in [`JitterStats`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum PushOutcome {
    /// Stored for playout.
    Accepted,
    /// A copy of a packet already buffered or already played; the first copy is kept.
    Duplicate,
    /// Its playout slot has passed (played as lost or trimmed); it was dropped.
    TooLate,
    /// Its sequence number is far from the stream's; dropped unless the next packet follows
    /// it, which would confirm that the sender jumped (RFC 3550 §A.1 probation).
    OutOfWindow,
    /// Accepted as the start of a new run of sequence numbers after a confirmed jump or a
    /// long outage: anything still buffered from before was discarded.
    Resynced,
}

/// What to play for this tick.
///
/// Not `#[non_exhaustive]` on purpose: every caller must decide what to do with each case,
/// and a new case should break the build rather than fall through a wildcard.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Playout<T> {
    /// The packet due now.
    Packet(T),
    /// The packet due now is missing while later ones are here: conceal one frame. Its
    /// sequence number is consumed; if it arrives later it is refused as too late.
    Lost,
    /// Nothing is due: the buffer is filling before (re)starting, or is letting a gap fill
    /// while it grows. No sequence number is consumed. Conceal as for `Lost` (the concealer
    /// fades to silence by itself) or output silence.
    Buffering,
}

/// Counters of everything the buffer did, for per-leg metrics.
///
/// Plain numbers read on demand: the buffer is owned by one shard, so nothing needs atomics.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[non_exhaustive]
pub struct JitterStats {
    /// Packets offered to `push`, whatever became of them.
    pub received: u64,
    /// Packets handed out by `pop`.
    pub played: u64,
    /// Sequence numbers that never played because they had not arrived when due: reported
    /// as [`Playout::Lost`], or skipped when playback restarted after an underrun.
    pub lost: u64,
    /// Copies of packets already buffered or played.
    pub duplicates: u64,
    /// Packets that arrived after their slot had passed.
    pub late: u64,
    /// Packets ignored because their sequence number was far outside the stream's window.
    pub out_of_window: u64,
    /// Buffered packets discarded because the buffer was full (a sender running far ahead or
    /// a burst after a long stall) or because the stream restarted.
    pub overruns: u64,
    /// Frames (packets or gaps) dropped from the head to bring latency back to the target
    /// after it stayed above it for a whole trim window: how a fast sender clock is absorbed.
    pub trimmed: u64,
    /// Times the buffer ran dry while playing: a slow sender clock, a network stall, or the
    /// sender pausing (DTX, mute).
    pub underruns: u64,
    /// Ticks that returned [`Playout::Buffering`] after playback had started: the time
    /// inserted by underruns and by growing the buffer.
    pub stalled: u64,
    /// Times the sequence numbering restarted (confirmed jump or resumption after a long
    /// outage).
    pub resyncs: u64,
}
