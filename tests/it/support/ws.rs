//! A blocking client of the call WebSocket for tests.

use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use super::TestServer;

/// A blocking call WebSocket client.
pub type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// Opens the call WebSocket of `call_id` with `key` (read timeout 5 s, TCP_NODELAY).
pub fn connect(s: &TestServer, call_id: &str, key: &str) -> Ws {
    let url = format!(
        "{}/api/call/{call_id}/stream?api_key={key}",
        s.url.replace("http://", "ws://")
    );
    let (ws, _) = tungstenite::connect(url).expect("websocket connect");
    if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
        tcp.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        tcp.set_nodelay(true).expect("nodelay");
    }
    ws
}

/// Sends `v` as a text frame.
pub fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).expect("send");
}

/// Reads text frames until one matches `pred` (binary frames are skipped); panics after
/// `limit` frames or on a read error.
pub fn next_event(ws: &mut Ws, limit: usize, pred: impl Fn(&Value) -> bool) -> Value {
    let mut seen: Vec<Value> = Vec::new();
    for _ in 0..limit {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).expect("json event");
                if pred(&v) {
                    return v;
                }
                seen.push(v);
            }
            Ok(Message::Close(_)) => panic!("socket closed while waiting; events seen: {seen:?}"),
            Err(e) => panic!("socket read failed ({e}) while waiting; events seen: {seen:?}"),
            _ => {}
        }
    }
    panic!("no matching event in {limit} frames; events seen: {seen:?}")
}

/// Matches events of type `t`.
pub fn of_type(t: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == t
}
