//! The JSON messages of the call WebSocket, as the spec names them.

use serde::{Deserialize, Serialize};

/// What an agent may send as a text frame.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Speak through hosted TTS.
    Say {
        /// What to say.
        text: String,
    },
    /// Chat into the call.
    SendChat {
        /// The message.
        text: String,
    },
    /// Base64 PCM, s16le mono, at `sample_rate` (or the declared rate).
    Audio {
        /// Base64 of the PCM bytes.
        audio: String,
        /// Rate of this chunk.
        #[serde(default)]
        sample_rate: Option<u32>,
    },
    /// Query the audio format, or declare a rate and opt into receiving the mix-minus.
    AudioConfig {
        /// The agent's rate.
        #[serde(default)]
        sample_rate: Option<u32>,
        /// Receive the room's audio as binary frames.
        #[serde(default)]
        receive: Option<bool>,
    },
    /// Play keys into the call's phone leg (RFC 4733 telephone-events).
    Dtmf {
        /// `0`–`9`, `*`, `#`, `A`–`D`; up to 64.
        digits: String,
    },
    /// Drop everything the agent queued (barge-in).
    StopSpeaking,
    /// A marker in the agent's audio: answered when playout reaches it.
    Mark {
        /// The agent's name for it.
        name: String,
    },
    /// Asks for a `call_stats` event now, and every `interval_ms` after (0 stops them).
    CallStats {
        /// Period of the events, 100..=60000 ms; absent keeps the current period.
        #[serde(default)]
        interval_ms: Option<u64>,
    },
}

/// `call_stats`: the agent's audio path, so it can pace its TTS without guessing.
#[derive(Debug, Serialize)]
pub struct CallStats {
    /// Always `call_stats`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// How the room moves audio now: `forwarding` (at most two voices: each one's frames
    /// go to the other as they arrive) or `mixing` (three or more: the 20 ms mix-minus
    /// tick).
    pub mode: &'static str,
    /// The agent's audio queued for playout, in ms.
    pub queued_ms: u64,
    /// Ticks where the agent's queue held part of a frame (it sent audio late).
    pub underruns: u64,
    /// Writes that did not fit the playout queue.
    pub overruns: u64,
    /// Samples dropped because the playout queue was full.
    pub samples_dropped: u64,
    /// Frames of the agent's audio played into the room.
    pub frames_played: u64,
    /// Frames of room audio produced for the agent.
    pub frames_received: u64,
    /// Return frames the mixer dropped because the agent's queue was full.
    pub return_overruns: u64,
    /// Return audio dropped because the socket fell behind, in ms.
    pub return_trimmed_ms: u64,
    /// The room's mixer: ticks mixed, ticks nobody talked in, talker frames, most talkers.
    pub room: RoomCounters,
    /// The call's phone leg, when it has one: RTP, RTCP and DTMF packets each way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<PhoneCounters>,
    /// Whether this WebSocket's TCP socket has `TCP_NODELAY`, as the kernel reports it (no
    /// Nagle delay on frames); absent when the connection is not plain TCP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_nodelay: Option<bool>,
}

/// The phone-leg part of `call_stats`.
#[derive(Debug, Serialize, Default)]
pub struct PhoneCounters {
    /// RTP packets taken from the phone.
    pub rtp_in: u64,
    /// RTP packets sent to the phone (audio and telephone-events).
    pub rtp_out: u64,
    /// RTCP packets received (sender and receiver reports, SDES, BYE).
    pub rtcp_in: u64,
    /// RTCP receiver reports sent.
    pub rtcp_out: u64,
    /// Keys received.
    pub dtmf_in: u64,
    /// Telephone-event packets sent.
    pub dtmf_out: u64,
}

/// The room part of `call_stats`.
#[derive(Debug, Serialize, Default)]
pub struct RoomCounters {
    /// Ticks the room was mixed.
    pub ticks: u64,
    /// Of those, ticks in which nobody talked.
    pub silent_ticks: u64,
    /// Talker frames mixed (a tick with two talkers counts two).
    pub talker_frames: u64,
    /// Most talkers in one tick.
    pub max_talkers: u64,
    /// Frames delivered by the forwarding fast path as they arrived, not on a tick.
    pub forwarded_frames: u64,
    /// Frames of an agent's audio that missed their tick and left with the next one
    /// instead of adding 20 ms of latency for the rest of the call.
    pub caught_up_frames: u64,
    /// Switches between forwarding and mixing so far.
    pub mode_switches: u64,
}

/// The reply to `audio_config`.
#[derive(Debug, Serialize)]
pub struct AudioConfigReply {
    /// Always `audio_config`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The rate the agent sends and receives at.
    pub sample_rate: u32,
    /// The room's rate.
    pub native_sample_rate: u32,
    /// Whether the gateway resamples for this agent.
    pub resampling: bool,
    /// Always `pcm_s16le`.
    pub format: &'static str,
    /// Always 1.
    pub channels: u8,
    /// Always 20.
    pub frame_duration_ms: u32,
    /// Bytes of one 20 ms frame at `sample_rate`.
    pub frame_bytes: usize,
    /// The audio path is up.
    pub ready: bool,
    /// Whether the agent receives the mix-minus.
    pub receive: bool,
    /// Audio queued for playout, in ms.
    pub queued_ms: u64,
    /// Ticks where the agent's queue held part of a frame so far.
    pub underruns: u64,
    /// Writes that did not fit the playout queue so far.
    pub overruns: u64,
}

/// `call_error` sent to this socket only.
#[derive(Debug, Serialize)]
pub struct ErrorReply<'a> {
    /// Always `call_error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Machine-readable cause.
    pub code: &'a str,
    /// Explanation.
    pub message: String,
}

impl<'a> ErrorReply<'a> {
    /// A `call_error` with `code`.
    pub fn new(code: &'a str, message: impl Into<String>) -> ErrorReply<'a> {
        ErrorReply {
            kind: "call_error",
            code,
            message: message.into(),
        }
    }
}

/// The answer to a `mark`.
#[derive(Debug, Serialize)]
pub struct MarkReply {
    /// Always `mark`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The agent's name for the marker.
    pub name: String,
    /// `played` or `cleared`.
    pub status: &'static str,
    /// Samples of the agent's audio actually played when the marker was reached.
    pub samples_played: u64,
}
