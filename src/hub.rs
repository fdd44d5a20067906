//! The per-user event hub: what happens outside any call WebSocket (an inbound call
//! ringing, later new DMs) is published here for the user's push channels (the MCP
//! server's channel mode, the events stream) to carry.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;
use tokio::sync::broadcast;

/// Events kept per user for a slow subscriber before the oldest are dropped.
const BACKLOG: usize = 256;

/// One broadcast channel per user, made on first use.
#[derive(Default)]
pub struct EventHub {
    users: Mutex<HashMap<String, broadcast::Sender<Value>>>,
}

impl EventHub {
    /// Subscribes to `user_id`'s events from now on.
    pub fn subscribe(&self, user_id: &str) -> broadcast::Receiver<Value> {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users
            .entry(user_id.to_string())
            .or_insert_with(|| broadcast::channel(BACKLOG).0)
            .subscribe()
    }

    /// Publishes `event` to `user_id`'s subscribers; answers how many there were. Channels
    /// nobody listens to any more are dropped here.
    pub fn publish(&self, user_id: &str, event: Value) -> usize {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let delivered = users
            .get(user_id)
            .map_or(0, |tx| tx.send(event).unwrap_or(0));
        if delivered == 0 {
            users.remove(user_id);
        }
        delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_reach_only_their_user() {
        let hub = EventHub::default();
        let mut alice = hub.subscribe("alice");
        let mut bob = hub.subscribe("bob");
        assert_eq!(hub.publish("alice", serde_json::json!({"n": 1})), 1);
        assert_eq!(alice.try_recv().ok(), Some(serde_json::json!({"n": 1})));
        assert!(bob.try_recv().is_err());
        assert_eq!(hub.publish("carol", serde_json::json!({})), 0);
    }
}
