//! The room actor: owns a call's [`RoomState`] and fans its events out to subscribers.

use std::collections::HashMap;

use actix::prelude::*;
use std::sync::Arc;

use chamade_media::SampleRate;

use crate::shard::RoomStats;

use super::{
    CallState, Direction, Member, ParticipantKind, RoomError, RoomEvent, RoomState, TranscriptLine,
};

/// An event delivered to one subscriber (a call WebSocket, the persistence sink, …).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Delivered(pub RoomEvent);

/// The actor of one live call.
pub struct Room {
    state: RoomState,
    subscribers: HashMap<u64, Recipient<Delivered>>,
    next_subscriber: u64,
    media: Option<(u64, Arc<RoomStats>)>,
    rate: SampleRate,
}

impl Room {
    /// A room for a new call.
    pub fn new(direction: Direction) -> Room {
        Room {
            state: RoomState::new(direction),
            subscribers: HashMap::new(),
            next_subscriber: 1,
            media: None,
            rate: SampleRate::HZ_48000,
        }
    }

    /// Names the mixer room that carries this call's audio, its counters and its rate.
    pub fn with_media(mut self, media_room: u64, stats: Arc<RoomStats>, rate: SampleRate) -> Room {
        self.media = Some((media_room, stats));
        self.rate = rate;
        self
    }

    fn fan_out(&mut self, events: &[RoomEvent]) {
        // A subscriber whose mailbox is gone is dropped here; a full one misses the event
        // rather than stalling the room.
        self.subscribers.retain(|_, r| {
            events
                .iter()
                .all(|e| !matches!(r.try_send(Delivered(e.clone())), Err(SendError::Closed(_))))
        });
    }
}

impl Actor for Room {
    type Context = Context<Self>;
}

/// What a room looks like now.
#[derive(Debug, Clone)]
pub struct RoomSnapshot {
    /// Current state.
    pub state: CallState,
    /// Transcript lines from the requested index on.
    pub transcript: Vec<TranscriptLine>,
    /// Total transcript lines.
    pub transcript_length: usize,
    /// Who is in the room.
    pub members: Vec<Member>,
    /// The mixer room carrying the call's audio, if it has audio.
    pub media_room: Option<u64>,
    /// That mixer room's counters.
    pub media_stats: Option<Arc<RoomStats>>,
    /// The room's native mixing rate.
    pub rate: SampleRate,
}

/// Reads the room, with transcript lines from index `since`.
#[derive(Debug, Message)]
#[rtype(result = "RoomSnapshot")]
pub struct Snapshot {
    /// First transcript line wanted.
    pub since: usize,
}

impl Handler<Snapshot> for Room {
    type Result = MessageResult<Snapshot>;
    fn handle(&mut self, msg: Snapshot, _: &mut Context<Self>) -> Self::Result {
        let (lines, total) = self.state.transcript_since(msg.since);
        MessageResult(RoomSnapshot {
            state: self.state.state(),
            transcript: lines.to_vec(),
            transcript_length: total,
            members: self.state.members().to_vec(),
            media_room: self.media.as_ref().map(|(id, _)| *id),
            media_stats: self.media.as_ref().map(|(_, s)| Arc::clone(s)),
            rate: self.rate,
        })
    }
}

/// Subscribes to the room's events; answers the subscription id and the current state.
#[derive(Message)]
#[rtype(result = "(u64, CallState)")]
pub struct Subscribe(pub Recipient<Delivered>);

impl Handler<Subscribe> for Room {
    type Result = MessageResult<Subscribe>;
    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Self::Result {
        let id = self.next_subscriber;
        self.next_subscriber += 1;
        self.subscribers.insert(id, msg.0);
        MessageResult((id, self.state.state()))
    }
}

/// Stops delivering events to a subscriber.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Unsubscribe(pub u64);

impl Handler<Unsubscribe> for Room {
    type Result = ();
    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) {
        self.subscribers.remove(&msg.0);
    }
}

/// A command that changes the room, answered with the new state or why it does not apply.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<CallState, RoomError>")]
#[non_exhaustive]
pub enum Command {
    /// The platform side is up.
    Connected,
    /// The agent accepts a ringing call.
    Accept,
    /// The agent refuses a ringing call.
    Refuse,
    /// Nobody answered.
    Missed,
    /// Either side hangs up.
    HangUp,
    /// The platform link failed.
    LinkFailed(String),
    /// A chat message in the call.
    Chat {
        /// Who wrote it.
        sender: String,
        /// What was written.
        text: String,
    },
    /// A transcript line.
    Transcribed {
        /// Who spoke.
        speaker: String,
        /// What was said.
        text: String,
    },
    /// Someone leaves.
    Leave(u64),
    /// A phone participant pressed a key.
    Dtmf(char),
}

impl Handler<Command> for Room {
    type Result = Result<CallState, RoomError>;
    fn handle(&mut self, cmd: Command, ctx: &mut Context<Self>) -> Self::Result {
        let s = &mut self.state;
        let events = match cmd {
            Command::Connected => s.connected()?,
            Command::Accept => s.accept()?,
            Command::Refuse => s.refuse()?,
            Command::Missed => s.missed(),
            Command::HangUp => s.hang_up(),
            Command::LinkFailed(m) => s.link_failed(&m),
            Command::Chat { sender, text } => s.chatted(&sender, &text)?,
            Command::Transcribed { speaker, text } => s.transcribed(&speaker, &text),
            Command::Leave(id) => s.leave(id)?,
            Command::Dtmf(digit) => s.dtmf(digit),
        };
        self.fan_out(&events);
        let state = self.state.state();
        if state.is_terminal() {
            // Subscribers have their final event; the room's work is done.
            ctx.stop();
        }
        Ok(state)
    }
}

/// Someone joins; answers their participant id.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64, RoomError>")]
pub struct Join {
    /// Display name.
    pub name: String,
    /// What kind of leg.
    pub kind: ParticipantKind,
}

impl Handler<Join> for Room {
    type Result = Result<u64, RoomError>;
    fn handle(&mut self, msg: Join, _: &mut Context<Self>) -> Self::Result {
        let (id, events) = self.state.join(&msg.name, msg.kind)?;
        self.fan_out(&events);
        Ok(id)
    }
}
