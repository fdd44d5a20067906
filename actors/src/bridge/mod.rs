//! Platform bridges: each turns a platform's media into PCM frames for a participant's rings
//! and back. A bridge never mixes. The sans-IO parts live here; sockets and tasks are the
//! server's.

pub mod rtp;
pub mod sip;
pub mod webrtc;
