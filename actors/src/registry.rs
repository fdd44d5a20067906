//! The registry of live calls: which room actor serves which call, and whose call it is.
//! Every lookup names the owner, so one user can never reach another's room.

use std::collections::HashMap;

use actix::prelude::*;

use crate::room::Room;

struct Entry {
    owner: String,
    room: Addr<Room>,
}

/// The actor that maps call ids to room actors.
#[derive(Default)]
pub struct CallRegistry {
    calls: HashMap<String, Entry>,
}

impl CallRegistry {
    /// Drops entries whose room has stopped (a call that reached a terminal state).
    fn prune(&mut self) {
        self.calls.retain(|_, e| e.room.connected());
    }

    fn live_of(&self, owner: &str) -> usize {
        self.calls
            .values()
            .filter(|e| e.owner == owner && e.room.connected())
            .count()
    }
}

impl Actor for CallRegistry {
    type Context = Context<Self>;
}

/// The owner already has as many live calls as allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("concurrent call limit reached ({0})")]
pub struct LimitReached(pub usize);

/// Registers a new call's room, unless its owner is at the limit (checked and registered in
/// one step, so two concurrent requests cannot both pass the check).
#[derive(Message)]
#[rtype(result = "Result<(), LimitReached>")]
pub struct Register {
    /// The call.
    pub call_id: String,
    /// Its owner.
    pub owner: String,
    /// Its room.
    pub room: Addr<Room>,
    /// Most live calls the owner may have.
    pub limit: usize,
}

impl Handler<Register> for CallRegistry {
    type Result = Result<(), LimitReached>;
    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        if self.live_of(&msg.owner) >= msg.limit {
            return Err(LimitReached(msg.limit));
        }
        self.calls.insert(
            msg.call_id,
            Entry {
                owner: msg.owner,
                room: msg.room,
            },
        );
        Ok(())
    }
}

/// The room of one of the owner's live calls.
#[derive(Message)]
#[rtype(result = "Option<Addr<Room>>")]
pub struct Lookup {
    /// The call.
    pub call_id: String,
    /// Who asks: another owner's call is not found.
    pub owner: String,
}

impl Handler<Lookup> for CallRegistry {
    type Result = Option<Addr<Room>>;
    fn handle(&mut self, msg: Lookup, _: &mut Context<Self>) -> Self::Result {
        self.prune();
        self.calls
            .get(&msg.call_id)
            .filter(|e| e.owner == msg.owner)
            .map(|e| e.room.clone())
    }
}

/// The ids of the owner's live calls.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct LiveCalls {
    /// Whose calls.
    pub owner: String,
}

impl Handler<LiveCalls> for CallRegistry {
    type Result = Vec<String>;
    fn handle(&mut self, msg: LiveCalls, _: &mut Context<Self>) -> Self::Result {
        self.prune();
        self.calls
            .iter()
            .filter(|(_, e)| e.owner == msg.owner)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::{Command, Direction};

    #[actix_rt::test]
    async fn owners_see_only_their_calls_and_the_limit_holds() {
        let reg = CallRegistry::default().start();
        let room = Room::new(Direction::Outbound).start();
        let reg_msg = |id: &str, owner: &str, room: &Addr<Room>| Register {
            call_id: id.into(),
            owner: owner.into(),
            room: room.clone(),
            limit: 1,
        };
        assert_eq!(
            reg.send(reg_msg("c1", "alice", &room)).await.unwrap(),
            Ok(())
        );
        let other = Room::new(Direction::Outbound).start();
        assert_eq!(
            reg.send(reg_msg("c2", "alice", &other)).await.unwrap(),
            Err(LimitReached(1))
        );
        assert_eq!(
            reg.send(reg_msg("c3", "bob", &other)).await.unwrap(),
            Ok(())
        );
        let look = |id: &str, owner: &str| Lookup {
            call_id: id.into(),
            owner: owner.into(),
        };
        assert!(reg.send(look("c1", "alice")).await.unwrap().is_some());
        assert!(reg.send(look("c1", "bob")).await.unwrap().is_none());
        assert_eq!(
            reg.send(LiveCalls {
                owner: "alice".into()
            })
            .await
            .unwrap(),
            vec!["c1"]
        );
        // Ending the call stops the room and frees the slot.
        room.send(Command::HangUp).await.unwrap().unwrap();
        for _ in 0..10 {
            actix_rt::task::yield_now().await;
        }
        assert!(reg.send(look("c1", "alice")).await.unwrap().is_none());
        assert_eq!(
            reg.send(reg_msg("c4", "alice", &other)).await.unwrap(),
            Ok(())
        );
    }
}
