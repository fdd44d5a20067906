//! Identifiers of the call tree's members.
//!
//! Each is a newtype so that a room id can never be passed where a participant id is
//! expected; the numbers themselves are chosen by the control plane and mean nothing to the
//! media plane beyond equality.

use std::fmt;

/// One call's mixing room: the unit a shard owns and ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(pub u64);

/// One leg in a room (an agent WebSocket, a SIP leg, a browser peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(pub u64);

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "room {}", self.0)
    }
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "participant {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_display_their_kind() {
        assert_eq!(RoomId(7).to_string(), "room 7");
        assert_eq!(ParticipantId(3).to_string(), "participant 3");
    }
}
