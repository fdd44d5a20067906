//! The events a room sends to every subscribed WebSocket, with the spec's JSON shapes.

use serde::{Deserialize, Serialize};

use super::CallState;

/// What kind of leg a participant is, as shown to agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantKind {
    /// An agent on the call WebSocket.
    Agent,
    /// A caller on a phone line.
    Phone,
    /// A person in a browser.
    Browser,
    /// A platform bot or another system's media leg.
    Bot,
}

/// An event on the call WebSocket (a text frame), serialised exactly as the spec shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum RoomEvent {
    /// `{"type":"call_state","state":"active"}`.
    #[serde(rename = "call_state")]
    State {
        /// The new state.
        state: CallState,
    },
    /// `{"type":"call_transcript","speaker":"Alice","text":"Hello"}`.
    #[serde(rename = "call_transcript")]
    Transcript {
        /// Who spoke.
        speaker: String,
        /// What was said.
        text: String,
    },
    /// `{"type":"call_chat","sender":"Bob","text":"Hi"}`.
    #[serde(rename = "call_chat")]
    Chat {
        /// Who wrote.
        sender: String,
        /// What was written.
        text: String,
    },
    /// `{"type":"call_error","code":"…","message":"…"}`.
    #[serde(rename = "call_error")]
    Error {
        /// Machine-readable cause (`bridge_disconnected`, …).
        code: String,
        /// Human-readable explanation.
        message: String,
    },
    /// `{"type":"call_dtmf","digit":"5"}`: a key the caller pressed (RFC 4733).
    #[serde(rename = "call_dtmf")]
    Dtmf {
        /// One of `0`–`9`, `*`, `#`, `A`–`D`.
        digit: String,
    },
    /// Someone joined the room.
    #[serde(rename = "participant_joined")]
    ParticipantJoined {
        /// Their id within the call.
        participant_id: u64,
        /// Display name.
        name: String,
        /// Agent, phone, browser or bot.
        kind: ParticipantKind,
    },
    /// Someone left the room.
    #[serde(rename = "participant_left")]
    ParticipantLeft {
        /// Their id within the call.
        participant_id: u64,
        /// Display name.
        name: String,
        /// Agent, phone, browser or bot.
        kind: ParticipantKind,
    },
}
