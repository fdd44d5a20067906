//! The call WebSocket (`/api/call/{id}/stream`): the room's events as JSON text frames, the
//! agent's commands, and PCM both ways as binary frames.
//!
//! One task per socket selects over four sources: frames from the agent, events from the
//! room (through a small forwarding actor), a 10 ms audio pump that moves the mix-minus from
//! the agent's output ring to the socket, and a keep-alive timer. Nothing here mixes: audio
//! goes into the participant's input ring and comes out of its output ring; the mixer shard
//! does the rest.

pub mod protocol;
mod session;

pub use session::stream;
pub(crate) use session::{Forwarder, StopForwarder};

/// Largest binary or text frame the spec allows (1 MB, ~11 s of 48 kHz PCM).
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// Largest frame the codec reads at all; frames between this and [`MAX_FRAME_BYTES`] are
/// refused with a `call_error` while the socket stays up.
pub const CODEC_LIMIT_BYTES: usize = 4 << 20;
