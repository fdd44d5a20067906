//! The real-time audio core of chamade.
//!
//! Contract: pure, synchronous and deterministic. Nothing here reads a clock, sleeps, locks,
//! performs I/O or depends on an async runtime: time enters as a parameter (a tick count),
//! and every buffer is sized in a constructor so the per-frame calls (`pull`, `mix`,
//! `process`, `encode`, `pop`) allocate nothing. The mixer shards in `chamade-actors` call
//! into this crate from a 20 ms tick that must never wait.
//!
//! The pieces, in the order audio meets them:
//! - [`SampleRate`] and [`Frame`]: which rates can be carried and the 20 ms unit of work;
//! - [`ring`]: lock-free SPSC PCM rings that re-frame arbitrary writes into 20 ms pulls;
//! - [`jitter`]: reorders RTP, drops late and duplicate packets, conceals losses;
//! - [`g711`] and [`opus`]: the codecs of the SIP and WebRTC legs;
//! - [`resample`]: streaming conversion between any two supported rates;
//! - [`gate`]: tells a leg's speech from the silence it keeps sending;
//! - [`mixer`]: talker-aware mix-minus for any number of participants;
//! - [`analysis`]: tone generation and measurement used by tests and benches.
#![deny(missing_docs)]

pub mod analysis;
mod frame;
pub mod g711;
pub mod gate;
pub mod jitter;
pub mod mixer;
pub mod opus;
mod rate;
pub mod resample;
pub mod ring;

pub use frame::{Frame, FrameError, write_le_bytes};
pub use opus::CodecError;
pub use rate::{FRAME_MS, FRAMES_PER_SECOND, MAX_FRAME_SAMPLES, RateError, SampleRate};
