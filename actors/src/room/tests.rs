use super::*;

#[test]
fn outbound_calls_connect_then_end() {
    let mut r = RoomState::new(Direction::Outbound);
    assert_eq!(r.state(), CallState::Connecting);
    assert_eq!(
        r.connected().unwrap(),
        vec![RoomEvent::State {
            state: CallState::Active
        }]
    );
    assert!(
        r.connected().unwrap().is_empty(),
        "already active: no duplicate event"
    );
    assert_eq!(
        r.hang_up(),
        vec![RoomEvent::State {
            state: CallState::Ended
        }]
    );
    assert!(r.hang_up().is_empty(), "hanging up twice is a no-op");
    assert!(r.accept().is_err());
}

#[test]
fn inbound_calls_ring_then_are_accepted_refused_or_missed() {
    let mut r = RoomState::new(Direction::Inbound);
    assert_eq!(r.state(), CallState::Ringing);
    assert_eq!(
        r.accept().unwrap(),
        vec![RoomEvent::State {
            state: CallState::Active
        }]
    );
    assert!(matches!(
        r.refuse(),
        Err(RoomError::WrongState {
            current: CallState::Active,
            ..
        })
    ));

    let mut r = RoomState::new(Direction::Inbound);
    assert_eq!(
        r.refuse().unwrap(),
        vec![RoomEvent::State {
            state: CallState::Refused
        }]
    );
    assert!(r.accept().is_err());

    let mut r = RoomState::new(Direction::Inbound);
    assert_eq!(
        r.missed(),
        vec![RoomEvent::State {
            state: CallState::Missed
        }]
    );
    let mut r = RoomState::new(Direction::Inbound);
    assert_eq!(
        r.hang_up(),
        vec![RoomEvent::State {
            state: CallState::Missed
        }]
    );
}

#[test]
fn link_failure_is_disconnected_when_up_and_error_before() {
    let mut up = RoomState::new(Direction::Outbound);
    up.connected().unwrap();
    let ev = up.link_failed("gone");
    assert_eq!(
        ev[0],
        RoomEvent::Error {
            code: "bridge_disconnected".into(),
            message: "gone".into()
        }
    );
    assert_eq!(up.state(), CallState::Disconnected);
    let mut down = RoomState::new(Direction::Outbound);
    down.link_failed("refused");
    assert_eq!(down.state(), CallState::Error);
}

#[test]
fn transcript_delta_returns_only_new_lines() {
    let mut r = RoomState::new(Direction::Outbound);
    r.transcribed("Alice", "Hello everyone");
    r.transcribed("Bob", "Hi Alice");
    let (lines, total) = r.transcript_since(0);
    assert_eq!(total, 2);
    assert_eq!(lines[0].render(), "[Alice] Hello everyone");
    let (lines, total) = r.transcript_since(1);
    assert_eq!((lines.len(), total), (1, 2));
    let (lines, _) = r.transcript_since(99);
    assert!(lines.is_empty());
}

#[test]
fn chat_is_bounded_and_checked() {
    let mut r = RoomState::new(Direction::Outbound);
    assert_eq!(r.chatted("Bob", ""), Err(RoomError::BadChatText));
    assert_eq!(
        r.chatted("Bob", &"x".repeat(10_001)),
        Err(RoomError::BadChatText)
    );
    for i in 0..MAX_CHAT_LINES + 5 {
        r.chatted("Bob", &i.to_string()).unwrap();
    }
    assert_eq!(r.chat().count(), MAX_CHAT_LINES);
    assert_eq!(r.chat().next().unwrap().1, "5");
    r.hang_up();
    assert!(r.chatted("Bob", "late").is_err());
}

#[test]
fn members_join_and_leave_with_events() {
    let mut r = RoomState::new(Direction::Outbound);
    let (a, ev) = r.join("Agent A", ParticipantKind::Agent).unwrap();
    assert_eq!(
        ev,
        vec![RoomEvent::ParticipantJoined {
            participant_id: a,
            name: "Agent A".into(),
            kind: ParticipantKind::Agent
        }]
    );
    let (b, _) = r.join("Alice", ParticipantKind::Browser).unwrap();
    assert_ne!(a, b);
    assert_eq!(r.members().len(), 2);
    assert_eq!(
        r.leave(a).unwrap()[0],
        RoomEvent::ParticipantLeft {
            participant_id: a,
            name: "Agent A".into(),
            kind: ParticipantKind::Agent
        }
    );
    assert_eq!(r.leave(a), Err(RoomError::UnknownParticipant(a)));
    r.hang_up();
    assert!(r.join("late", ParticipantKind::Agent).is_err());
}

#[test]
fn events_serialise_as_the_spec_shows() {
    let j = |e: &RoomEvent| serde_json::to_string(e).unwrap();
    assert_eq!(
        j(&RoomEvent::State {
            state: CallState::Active
        }),
        r#"{"type":"call_state","state":"active"}"#
    );
    assert_eq!(
        j(&RoomEvent::Transcript {
            speaker: "Alice".into(),
            text: "Hello".into()
        }),
        r#"{"type":"call_transcript","speaker":"Alice","text":"Hello"}"#
    );
    assert_eq!(
        j(&RoomEvent::Chat {
            sender: "Bob".into(),
            text: "Hi".into()
        }),
        r#"{"type":"call_chat","sender":"Bob","text":"Hi"}"#
    );
    assert_eq!(
        j(&RoomEvent::Dtmf { digit: "#".into() }),
        r##"{"type":"call_dtmf","digit":"#"}"##
    );
    assert_eq!(
        j(&RoomEvent::Error {
            code: "bridge_disconnected".into(),
            message: "m".into()
        }),
        r#"{"type":"call_error","code":"bridge_disconnected","message":"m"}"#
    );
    assert_eq!(
        j(&RoomEvent::ParticipantJoined {
            participant_id: 3,
            name: "A".into(),
            kind: ParticipantKind::Phone
        }),
        r#"{"type":"participant_joined","participant_id":3,"name":"A","kind":"phone"}"#
    );
}

mod actor {
    use actix::prelude::*;

    use crate::room::CallState;
    use crate::room::{
        Command, Delivered, Direction, Join, ParticipantKind, Room, RoomEvent, Snapshot, Subscribe,
    };

    /// Collects delivered events.
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<RoomEvent>>>);
    impl Actor for Sink {
        type Context = Context<Self>;
    }
    impl Handler<Delivered> for Sink {
        type Result = ();
        fn handle(&mut self, msg: Delivered, _: &mut Context<Self>) {
            self.0.lock().unwrap().push(msg.0);
        }
    }

    #[actix_rt::test]
    async fn every_subscriber_gets_the_events_and_the_room_stops_at_the_end() {
        let room = Room::new(Direction::Outbound).start();
        let seen_a = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen_b = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let a = Sink(seen_a.clone()).start();
        let b = Sink(seen_b.clone()).start();
        let (_, state) = room.send(Subscribe(a.recipient())).await.unwrap();
        assert_eq!(state, CallState::Connecting);
        room.send(Subscribe(b.recipient())).await.unwrap();
        assert_eq!(
            room.send(Command::Connected).await.unwrap(),
            Ok(CallState::Active)
        );
        let id = room
            .send(Join {
                name: "Agent".into(),
                kind: ParticipantKind::Agent,
            })
            .await
            .unwrap()
            .unwrap();
        room.send(Command::Chat {
            sender: "Bob".into(),
            text: "Hi".into(),
        })
        .await
        .unwrap()
        .unwrap();
        let snap = room.send(Snapshot { since: 0 }).await.unwrap();
        assert_eq!(snap.members.len(), 1);
        assert_eq!(snap.members[0].participant_id, id);
        assert_eq!(
            room.send(Command::HangUp).await.unwrap(),
            Ok(CallState::Ended)
        );
        // Let the sinks drain their mailboxes.
        for _ in 0..10 {
            actix_rt::task::yield_now().await;
        }
        for seen in [seen_a, seen_b] {
            let seen = seen.lock().unwrap();
            assert_eq!(
                seen.first(),
                Some(&RoomEvent::State {
                    state: CallState::Active
                })
            );
            assert_eq!(
                seen.last(),
                Some(&RoomEvent::State {
                    state: CallState::Ended
                })
            );
            assert!(seen.iter().any(|e| matches!(e, RoomEvent::Chat { .. })));
            assert_eq!(seen.len(), 4);
        }
        // The room stopped after the terminal state: further messages fail.
        actix_rt::task::yield_now().await;
        assert!(room.send(Snapshot { since: 0 }).await.is_err());
    }
}
