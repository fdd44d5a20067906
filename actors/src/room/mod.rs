//! A call's control state: the state machine, its transcript and chat, who is in it, and the
//! events subscribers see. Sans-IO: methods take a command (and `now` where time matters)
//! and return the events to fan out; the room actor only delivers them.

mod actor;
mod events;
#[cfg(test)]
mod tests;

pub use actor::{Command, Delivered, Join, Room, RoomSnapshot, Snapshot, Subscribe, Unsubscribe};
pub use events::{ParticipantKind, RoomEvent};

use serde::{Deserialize, Serialize};

/// Where a call is in its life. Terminal states never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// Being set up on the platform (outbound calls, meeting joins).
    Connecting,
    /// Inbound and waiting for the agent to accept or refuse.
    Ringing,
    /// Audio and chat flow.
    Active,
    /// Hung up by either side.
    Ended,
    /// The agent refused an inbound call.
    Refused,
    /// Nobody answered an inbound call in time, or the caller gave up.
    Missed,
    /// The platform link dropped; the call cannot resume.
    Disconnected,
    /// Setting up failed.
    Error,
}

impl CallState {
    /// Whether the call is over.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            CallState::Ended
                | CallState::Refused
                | CallState::Missed
                | CallState::Disconnected
                | CallState::Error
        )
    }
}

/// Which way the call was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The agent called or joined.
    Outbound,
    /// Someone called the agent.
    Inbound,
}

/// Why a command does not apply in the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    /// The command needs another state (e.g. accepting a call that is not ringing).
    #[error("the call is {current:?}, not {expected}")]
    WrongState {
        /// The state the call is in.
        current: CallState,
        /// What the command needs.
        expected: &'static str,
    },
    /// Chat text outside 1..=10,000 characters.
    #[error("chat text must be 1 to 10000 characters")]
    BadChatText,
    /// No participant with that id.
    #[error("no participant {0}")]
    UnknownParticipant(u64),
}

/// One line of the transcript.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptLine {
    /// Who spoke.
    pub speaker: String,
    /// What was said.
    pub text: String,
}

impl TranscriptLine {
    /// The spec's rendering in `GET /api/call/{id}`: `"[Alice] Hello"`.
    pub fn render(&self) -> String {
        format!("[{}] {}", self.speaker, self.text)
    }
}

/// Someone or something in the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Unique within the call.
    pub participant_id: u64,
    /// Shown to the others.
    pub name: String,
    /// What kind of leg it is.
    pub kind: ParticipantKind,
}

/// The most chat lines a room keeps in memory (older ones stay in the database).
pub const MAX_CHAT_LINES: usize = 1_000;

/// The control state of one call.
#[derive(Debug, Clone)]
pub struct RoomState {
    state: CallState,
    direction: Direction,
    transcript: Vec<TranscriptLine>,
    chat: std::collections::VecDeque<(String, String)>,
    members: Vec<Member>,
    next_participant: u64,
}

impl RoomState {
    /// A new call: outbound calls start `connecting`, inbound ones `ringing`.
    pub fn new(direction: Direction) -> RoomState {
        RoomState {
            state: match direction {
                Direction::Outbound => CallState::Connecting,
                Direction::Inbound => CallState::Ringing,
            },
            direction,
            transcript: Vec::new(),
            chat: std::collections::VecDeque::new(),
            members: Vec::new(),
            next_participant: 1,
        }
    }

    /// The current state.
    pub fn state(&self) -> CallState {
        self.state
    }

    /// Which way the call was placed.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Transcript lines from index `since` on (the spec's delta pattern), and the total.
    pub fn transcript_since(&self, since: usize) -> (&[TranscriptLine], usize) {
        let all = &self.transcript[..];
        (all.get(since..).unwrap_or(&[]), all.len())
    }

    /// Everyone in the room, in joining order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Recent chat, oldest first, as `(sender, text)`.
    pub fn chat(&self) -> impl Iterator<Item = &(String, String)> {
        self.chat.iter()
    }

    fn transition(&mut self, to: CallState) -> Vec<RoomEvent> {
        if self.state == to {
            return Vec::new();
        }
        self.state = to;
        vec![RoomEvent::State { state: to }]
    }

    /// The platform link is up (or a `web` room is ready): `connecting` → `active`.
    pub fn connected(&mut self) -> Result<Vec<RoomEvent>, RoomError> {
        match self.state {
            CallState::Connecting => Ok(self.transition(CallState::Active)),
            CallState::Active => Ok(Vec::new()),
            current => Err(RoomError::WrongState {
                current,
                expected: "connecting",
            }),
        }
    }

    /// The agent accepts a ringing inbound call.
    pub fn accept(&mut self) -> Result<Vec<RoomEvent>, RoomError> {
        match self.state {
            CallState::Ringing => Ok(self.transition(CallState::Active)),
            current => Err(RoomError::WrongState {
                current,
                expected: "ringing",
            }),
        }
    }

    /// The agent refuses a ringing inbound call.
    pub fn refuse(&mut self) -> Result<Vec<RoomEvent>, RoomError> {
        match self.state {
            CallState::Ringing => Ok(self.transition(CallState::Refused)),
            current => Err(RoomError::WrongState {
                current,
                expected: "ringing",
            }),
        }
    }

    /// Nobody answered in time, or the caller hung up before an answer.
    pub fn missed(&mut self) -> Vec<RoomEvent> {
        if self.state == CallState::Ringing {
            self.transition(CallState::Missed)
        } else {
            Vec::new()
        }
    }

    /// Either side hangs up. Hanging up an ended call is a no-op, so it is idempotent.
    pub fn hang_up(&mut self) -> Vec<RoomEvent> {
        if self.state.is_terminal() {
            return Vec::new();
        }
        let to = if self.state == CallState::Ringing {
            CallState::Missed
        } else {
            CallState::Ended
        };
        self.transition(to)
    }

    /// The platform link failed: `disconnected` if the call was up, `error` if it never was.
    pub fn link_failed(&mut self, message: &str) -> Vec<RoomEvent> {
        if self.state.is_terminal() {
            return Vec::new();
        }
        let to = if self.state == CallState::Active {
            CallState::Disconnected
        } else {
            CallState::Error
        };
        let mut events = vec![RoomEvent::Error {
            code: if to == CallState::Disconnected {
                "bridge_disconnected"
            } else {
                "connect_failed"
            }
            .into(),
            message: message.to_string(),
        }];
        events.extend(self.transition(to));
        events
    }

    /// A transcript line (from hosted STT or a platform's captions).
    pub fn transcribed(&mut self, speaker: &str, text: &str) -> Vec<RoomEvent> {
        let line = TranscriptLine {
            speaker: speaker.to_string(),
            text: text.to_string(),
        };
        self.transcript.push(line);
        vec![RoomEvent::Transcript {
            speaker: speaker.to_string(),
            text: text.to_string(),
        }]
    }

    /// A chat message in the call, from anyone.
    pub fn chatted(&mut self, sender: &str, text: &str) -> Result<Vec<RoomEvent>, RoomError> {
        let len = text.chars().count();
        if len == 0 || len > 10_000 {
            return Err(RoomError::BadChatText);
        }
        if self.state.is_terminal() {
            return Err(RoomError::WrongState {
                current: self.state,
                expected: "a live call",
            });
        }
        if self.chat.len() == MAX_CHAT_LINES {
            self.chat.pop_front();
        }
        self.chat.push_back((sender.to_string(), text.to_string()));
        Ok(vec![RoomEvent::Chat {
            sender: sender.to_string(),
            text: text.to_string(),
        }])
    }

    /// A phone participant pressed a key.
    pub fn dtmf(&mut self, digit: char) -> Vec<RoomEvent> {
        if self.state.is_terminal() {
            return Vec::new();
        }
        vec![RoomEvent::Dtmf {
            digit: digit.to_string(),
        }]
    }

    /// Someone joins; returns their id and the event for the others.
    pub fn join(
        &mut self,
        name: &str,
        kind: ParticipantKind,
    ) -> Result<(u64, Vec<RoomEvent>), RoomError> {
        if self.state.is_terminal() {
            return Err(RoomError::WrongState {
                current: self.state,
                expected: "a live call",
            });
        }
        let id = self.next_participant;
        self.next_participant += 1;
        self.members.push(Member {
            participant_id: id,
            name: name.to_string(),
            kind,
        });
        Ok((
            id,
            vec![RoomEvent::ParticipantJoined {
                participant_id: id,
                name: name.to_string(),
                kind,
            }],
        ))
    }

    /// Someone leaves.
    pub fn leave(&mut self, participant_id: u64) -> Result<Vec<RoomEvent>, RoomError> {
        let at = self
            .members
            .iter()
            .position(|m| m.participant_id == participant_id)
            .ok_or(RoomError::UnknownParticipant(participant_id))?;
        let m = self.members.remove(at);
        Ok(vec![RoomEvent::ParticipantLeft {
            participant_id,
            name: m.name,
            kind: m.kind,
        }])
    }
}
