//! `GET /api/events`: the caller's event hub as a server-sent event stream, for agents that
//! want pushes (an inbound call ringing) without an MCP client. Each event is one `data:`
//! line of JSON; a comment line every 15 s keeps proxies from closing an idle stream.

use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use futures_util::stream;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::Caller;
use crate::error::ErrorBody;
use crate::state::AppState;

/// How often an idle stream gets a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Streams the caller's events (`call_invite`, …) as `text/event-stream`.
#[utoipa::path(
    responses(
        (status = 200, description = "an event stream: `data: {\"type\":\"call_invite\",…}`", content_type = "text/event-stream"),
        (status = 401, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
#[get("/events")]
pub async fn events(state: web::Data<AppState>, caller: Caller) -> HttpResponse {
    let rx = state.hub.subscribe(&caller.user_id);
    let body = stream::unfold(rx, |mut rx| async move {
        let chunk = match tokio::time::timeout(KEEP_ALIVE, rx.recv()).await {
            Ok(Ok(event)) => format!("data: {event}\n\n"),
            Ok(Err(RecvError::Lagged(n))) => {
                format!("event: lagged\ndata: {{\"type\":\"lagged\",\"missed\":{n}}}\n\n")
            }
            Ok(Err(RecvError::Closed)) => return None,
            Err(_) => ": keep-alive\n\n".to_string(),
        };
        Some((Ok::<_, actix_web::Error>(web::Bytes::from(chunk)), rx))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(body)
}
