//! WebRTC ways into a call: WHIP (RFC 9725) for any WebRTC client that talks, a WHEP-style
//! endpoint for one that only listens, and the browser join page (`join_url`) built on the
//! same WHIP endpoint.
//!
//! A call of platform `web` gets a join token when it is created: 24 random bytes, shown
//! once in `join_url`, kept only as a hash. The token admits people to that one call (WHIP,
//! the page and its event socket) and nothing else; the call's owner may use an API key
//! instead.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use actix::{Actor, Addr};
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, delete, post, web};
use actix_ws::{CloseCode, CloseReason, Message};
use chamade_actors::bridge::webrtc::{
    self, Direction, EndpointParts, PeerEnd, SharedEncoder, WebRtcEndpoint, WebRtcSettings,
};
use chamade_actors::room::{
    Command, Join, ParticipantKind, Room, RoomEvent, Snapshot, Subscribe, Unsubscribe,
};
use chamade_media::SampleRate;
use chamade_media::mixer::MixMode;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use utoipa::IntoParams;

use crate::api::calls::{Registry, live_room};
use crate::auth::Caller;
use crate::auth::secrets::{hash_token, random_token};
use crate::error::{ApiError, ErrorBody};
use crate::media_plane::MediaPlane;
use crate::rtp_leg::random_u32;
use crate::state::AppState;
use crate::ws::{Forwarder, StopForwarder};

/// Largest SDP offer accepted: a browser's audio offer is 2–6 KB.
pub const MAX_SDP_BYTES: usize = 64 * 1024;
/// Random bytes in a join token (192 bits, URL-safe base64).
const JOIN_TOKEN_BYTES: usize = 24;
/// How long a connection may stay `disconnected` before its participant is taken out.
const DISCONNECTED_GRACE: Duration = Duration::from_secs(10);
/// Longest display name a joiner may give.
const MAX_NAME_CHARS: usize = 64;
/// Largest chat message from the page.
const MAX_CHAT_CHARS: usize = 4_000;

/// Join tokens of live `web` calls, by hash. Control plane only.
#[derive(Default)]
pub struct JoinTokens {
    by_hash: Mutex<HashMap<String, JoinEntry>>,
}

#[derive(Clone)]
struct JoinEntry {
    call_id: String,
    owner: String,
    agent_name: String,
}

impl JoinTokens {
    /// Makes the token of a new call; only its hash is kept.
    pub fn issue(&self, call_id: &str, owner: &str, agent_name: &str) -> String {
        let token = random_token(JOIN_TOKEN_BYTES);
        if let Ok(mut map) = self.by_hash.lock() {
            map.insert(
                hash_token(&token),
                JoinEntry {
                    call_id: call_id.to_string(),
                    owner: owner.to_string(),
                    agent_name: agent_name.to_string(),
                },
            );
        }
        token
    }

    fn find(&self, token: &str) -> Option<JoinEntry> {
        let hash = hash_token(token);
        self.by_hash.lock().ok()?.get(&hash).cloned()
    }

    fn forget(&self, token: &str) {
        let hash = hash_token(token);
        if let Ok(mut map) = self.by_hash.lock() {
            map.remove(&hash);
        }
    }
}

/// Live WebRTC legs by resource id, for `DELETE`.
#[derive(Default)]
pub struct WebRtcLegs {
    legs: Mutex<HashMap<String, LegEntry>>,
    /// Each mixer room's shared encoder, alive while one of its legs holds it.
    shared: Mutex<HashMap<u64, Weak<SharedEncoder>>>,
}

struct LegEntry {
    call_id: String,
    owner: String,
    stop: oneshot::Sender<()>,
}

impl WebRtcLegs {
    /// The shared encoder of `media_room`, made on its first WebRTC leg. `None` if libopus
    /// cannot make one (the legs then encode privately).
    fn shared_encoder(&self, media_room: u64) -> Option<Arc<SharedEncoder>> {
        let mut map = self.shared.lock().ok()?;
        if let Some(live) = map.get(&media_room).and_then(Weak::upgrade) {
            return Some(live);
        }
        map.retain(|_, w| w.strong_count() > 0);
        let made = Arc::new(SharedEncoder::new().ok()?);
        map.insert(media_room, Arc::downgrade(&made));
        Some(made)
    }

    /// Legs currently live, over every call.
    pub fn len(&self) -> usize {
        self.legs.lock().map_or(0, |m| m.len())
    }

    /// Whether no leg is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Who may act on a call's WebRTC endpoints: its owner, by join token or by credential.
struct Admitted {
    owner: String,
    via_token: bool,
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// Admits a join token of `call_id`, else the owner's API key or session.
async fn admit(
    req: &HttpRequest,
    tokens: &JoinTokens,
    call_id: &str,
) -> Result<Admitted, ApiError> {
    if let Some(token) = bearer(req)
        && let Some(entry) = tokens.find(&token)
    {
        if entry.call_id == call_id {
            return Ok(Admitted {
                owner: entry.owner,
                via_token: true,
            });
        }
        // Another call's token: the same answer as for an unknown call.
        return Err(ApiError::NotFound("Call not found".into()));
    }
    let caller = Caller::extract(req).await?;
    Ok(Admitted {
        owner: caller.user_id,
        via_token: false,
    })
}

/// Paths under `/api` that authenticate themselves (a join token is not an API key), so
/// the API's middleware lets them through.
pub fn authenticates_itself(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/call/") else {
        return false;
    };
    let mut parts = rest.split('/');
    let _call = parts.next();
    matches!(parts.next(), Some("whip" | "whep"))
}

/// `?name=` on WHIP and WHEP.
#[derive(Deserialize, IntoParams)]
pub struct JoinQuery {
    /// The display name the others see (default "Guest" or "Listener").
    pub name: Option<String>,
}

fn display_name(given: Option<&str>, default: &str) -> Result<String, ApiError> {
    let name = given
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(default);
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(format!(
            "name must be 1 to {MAX_NAME_CHARS} printable characters"
        )));
    }
    Ok(name.to_string())
}

fn offer_text(req: &HttpRequest, body: &[u8]) -> Result<String, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
    {
        return Err(ApiError::Unprocessable(
            "Content-Type must be application/sdp (an SDP offer)".into(),
        ));
    }
    if body.len() > MAX_SDP_BYTES {
        return Err(ApiError::Unprocessable(format!(
            "SDP offer larger than {MAX_SDP_BYTES} bytes"
        )));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::Unprocessable("the SDP offer is not UTF-8 text".into()))?;
    if !text.trim_start().starts_with("v=0") {
        return Err(ApiError::Unprocessable(
            "the body is not an SDP offer (it must start with v=0)".into(),
        ));
    }
    Ok(text.to_string())
}

/// The services a WebRTC leg needs, as handlers receive them.
struct Services {
    registry: Addr<chamade_actors::registry::CallRegistry>,
    media: Arc<MediaPlane>,
    legs: Arc<WebRtcLegs>,
    settings: WebRtcSettings,
}

fn services(req: &HttpRequest) -> Result<Services, ApiError> {
    let missing = || ApiError::internal("WebRTC services are not configured");
    let registry = req
        .app_data::<Registry>()
        .ok_or_else(missing)?
        .get_ref()
        .clone();
    let media = req
        .app_data::<web::Data<MediaPlane>>()
        .ok_or_else(missing)?
        .clone()
        .into_inner();
    let legs = req
        .app_data::<web::Data<WebRtcLegs>>()
        .ok_or_else(missing)?
        .clone()
        .into_inner();
    let state = req.app_data::<web::Data<AppState>>().ok_or_else(missing)?;
    Ok(Services {
        registry,
        media,
        legs,
        settings: state.config.webrtc_settings(),
    })
}

/// Joins a WebRTC client to a call: WHIP (talks and listens). The body is the client's
/// SDP offer; the answer carries every candidate (no trickle). Authenticated by the call's
/// join token (`Authorization: Bearer`) or the owner's API key.
#[utoipa::path(
    params(("call_id" = String, Path, description = "call id"), JoinQuery),
    request_body(content = String, content_type = "application/sdp", description = "SDP offer"),
    responses(
        (status = 201, description = "SDP answer; `Location` is the session to DELETE", body = String, content_type = "application/sdp"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
#[post("/call/{call_id}/whip")]
pub async fn whip(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<JoinQuery>,
    tokens: web::Data<JoinTokens>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let name = display_name(query.name.as_deref(), "Guest")?;
    join(
        &req,
        &path.into_inner(),
        &tokens,
        &body,
        name,
        Direction::SendRecv,
        "whip",
    )
    .await
}

/// Joins a listen-only WebRTC client (WHEP-style): it receives the room's mix and sends
/// nothing. Same exchange and authentication as WHIP.
#[utoipa::path(
    params(("call_id" = String, Path, description = "call id"), JoinQuery),
    request_body(content = String, content_type = "application/sdp", description = "SDP offer (recvonly audio)"),
    responses(
        (status = 201, description = "SDP answer; `Location` is the session to DELETE", body = String, content_type = "application/sdp"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
#[post("/call/{call_id}/whep")]
pub async fn whep(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<JoinQuery>,
    tokens: web::Data<JoinTokens>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let name = display_name(query.name.as_deref(), "Listener")?;
    join(
        &req,
        &path.into_inner(),
        &tokens,
        &body,
        name,
        Direction::SendOnly,
        "whep",
    )
    .await
}

async fn join(
    req: &HttpRequest,
    call_id: &str,
    tokens: &JoinTokens,
    body: &[u8],
    name: String,
    direction: Direction,
    kind_path: &str,
) -> Result<HttpResponse, ApiError> {
    let admitted = admit(req, tokens, call_id).await?;
    let offer = offer_text(req, body)?;
    let svc = services(req)?;
    let caller = Caller {
        user_id: admitted.owner.clone(),
        credential: crate::auth::Credential::Session,
    };
    let room = live_room(&web::Data::new(svc.registry.clone()), &caller, call_id).await?;
    let snap = room
        .send(Snapshot { since: usize::MAX })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let media_room = snap
        .media_room
        .ok_or_else(|| ApiError::bad_request("no_audio", "This call carries no audio"))?;
    let ssrc = random_u32();
    let negotiated = webrtc::answer(&svc.settings, &offer, direction, ssrc)
        .await
        .map_err(|e| match e {
            webrtc::AnswerError::Offer(why) => ApiError::Unprocessable(why),
            other => ApiError::internal(other.to_string()),
        })?;
    let participant = match room
        .send(Join {
            name: name.clone(),
            kind: ParticipantKind::Browser,
        })
        .await
    {
        Ok(Ok(id)) => id,
        refused => {
            negotiated.handle.close().await;
            return Err(match refused {
                Ok(Err(e)) => ApiError::Conflict(e.to_string()),
                Err(e) => ApiError::internal(e.to_string()),
                Ok(Ok(_)) => ApiError::internal("unreachable"),
            });
        }
    };
    let mode = match direction {
        Direction::SendRecv => MixMode::Full,
        Direction::SendOnly => MixMode::ListenOnly,
    };
    let leg = match svc.media.join_paced(
        media_room,
        snap.rate,
        participant,
        SampleRate::HZ_48000,
        mode,
    ) {
        Ok(leg) => leg,
        Err(e) => {
            negotiated.handle.close().await;
            room.do_send(Command::Leave(participant));
            return Err(ApiError::internal(e.to_string()));
        }
    };
    let stop_flag = Arc::new(AtomicBool::new(false));
    let resource = uuid::Uuid::new_v4().to_string();
    let endpoint = WebRtcEndpoint::new(EndpointParts {
        inbound: negotiated.inbound,
        wake: Some(Arc::clone(&negotiated.wake)),
        outbound: negotiated.outbound,
        receive_payload_type: negotiated.payload_type,
        ends: leg.ends,
        shared: svc.legs.shared_encoder(media_room),
        stop: Arc::clone(&stop_flag),
        counters: Arc::clone(negotiated.handle.counters()),
        label: format!("webrtc {resource}"),
        first_sequence: random_u32() as u16,
        first_timestamp: random_u32(),
    });
    let attached = endpoint
        .map_err(|e| ApiError::internal(e.to_string()))
        .and_then(|e| {
            svc.media
                .attach(media_room, participant, Box::new(e))
                .map_err(|e| ApiError::internal(e.to_string()))
        });
    if let Err(e) = attached {
        negotiated.handle.close().await;
        svc.media.leave_leg(media_room, participant);
        room.do_send(Command::Leave(participant));
        return Err(e);
    }
    let (stop, stopped) = oneshot::channel();
    if let Ok(mut map) = svc.legs.legs.lock() {
        map.insert(
            resource.clone(),
            LegEntry {
                call_id: call_id.to_string(),
                owner: admitted.owner.clone(),
                stop,
            },
        );
    }
    let leg = LiveLeg {
        handle: negotiated.handle,
        stop_flag,
        stopped,
        room,
        media: Arc::clone(&svc.media),
        media_room,
        participant,
        legs: Arc::clone(&svc.legs),
        resource: resource.clone(),
    };
    actix_web::rt::spawn(leg.run());
    tracing::info!(
        %call_id, %resource, %name, kind = kind_path, via_token = admitted.via_token,
        "WebRTC participant joined"
    );
    let location = format!("/api/call/{call_id}/{kind_path}/{resource}");
    let mut response = HttpResponse::Created();
    response
        .content_type("application/sdp")
        .insert_header((header::LOCATION, location));
    for server in &svc.settings.ice_servers {
        for url in &server.urls {
            response.append_header((header::LINK, ice_link(url, server)));
        }
    }
    Ok(response.body(negotiated.answer))
}

/// An ICE server as a WHIP `Link` header (RFC 9725 §4.6).
fn ice_link(url: &str, server: &webrtc::IceServer) -> String {
    let mut link = format!("<{url}>; rel=\"ice-server\"");
    if !server.username.is_empty() {
        link.push_str(&format!(
            "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
            server.username, server.credential
        ));
    }
    link
}

/// A joined leg's owner: waits for its end, then takes it out of the room.
struct LiveLeg {
    handle: webrtc::PeerHandle,
    stop_flag: Arc<AtomicBool>,
    stopped: oneshot::Receiver<()>,
    room: Addr<Room>,
    media: Arc<MediaPlane>,
    media_room: u64,
    participant: u64,
    legs: Arc<WebRtcLegs>,
    resource: String,
}

impl LiveLeg {
    async fn run(mut self) {
        let mut room_check = tokio::time::interval(Duration::from_millis(500));
        let why = tokio::select! {
            end = self.handle.ended(DISCONNECTED_GRACE) => match end {
                PeerEnd::Closed => "closed by the peer",
                PeerEnd::Failed => "connection failed",
            },
            _ = &mut self.stopped => "left (DELETE)",
            _ = async {
                loop {
                    room_check.tick().await;
                    if !self.room.connected() { break; }
                }
            } => "call ended",
        };
        self.stop_flag.store(true, Ordering::Release);
        self.handle.close().await;
        self.media.leave_leg(self.media_room, self.participant);
        self.room.do_send(Command::Leave(self.participant));
        if let Ok(mut map) = self.legs.legs.lock() {
            map.remove(&self.resource);
        }
        let c = self.handle.counters();
        tracing::info!(
            resource = %self.resource, why,
            rtp_in = c.rtp_in.load(Ordering::Relaxed),
            rtp_out = c.rtp_out.load(Ordering::Relaxed),
            concealed = c.concealed.load(Ordering::Relaxed),
            "WebRTC participant left"
        );
    }
}

/// Ends a WHIP session (the participant leaves the call).
#[utoipa::path(
    params(("call_id" = String, Path, description = "call id"), ("resource" = String, Path, description = "the session from `Location`")),
    responses((status = 200, description = "left"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = []))
)]
#[delete("/call/{call_id}/whip/{resource}")]
pub async fn whip_leave(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    tokens: web::Data<JoinTokens>,
    legs: web::Data<WebRtcLegs>,
) -> Result<HttpResponse, ApiError> {
    let (call_id, resource) = path.into_inner();
    leave(&req, &call_id, &resource, &tokens, &legs).await
}

/// Ends a WHEP session.
#[utoipa::path(
    params(("call_id" = String, Path, description = "call id"), ("resource" = String, Path, description = "the session from `Location`")),
    responses((status = 200, description = "left"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = []))
)]
#[delete("/call/{call_id}/whep/{resource}")]
pub async fn whep_leave(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    tokens: web::Data<JoinTokens>,
    legs: web::Data<WebRtcLegs>,
) -> Result<HttpResponse, ApiError> {
    let (call_id, resource) = path.into_inner();
    leave(&req, &call_id, &resource, &tokens, &legs).await
}

async fn leave(
    req: &HttpRequest,
    call_id: &str,
    resource: &str,
    tokens: &JoinTokens,
    legs: &WebRtcLegs,
) -> Result<HttpResponse, ApiError> {
    let admitted = admit(req, tokens, call_id).await?;
    let entry = legs.legs.lock().ok().and_then(|mut map| {
        let mine = map
            .get(resource)
            .is_some_and(|e| e.owner == admitted.owner && e.call_id == call_id);
        if mine { map.remove(resource) } else { None }
    });
    match entry {
        Some(e) => {
            let _ = e.stop.send(());
            Ok(HttpResponse::Ok().finish())
        }
        None => Err(ApiError::NotFound("WebRTC session not found".into())),
    }
}

// ---------------------------------------------------------------------------------------
// The join page.

const JOIN_HTML: &str = include_str!("../web/join.html");
const JOIN_JS: &str = include_str!("../web/join.js");
const JOIN_CSS: &str = include_str!("../web/join.css");

/// What the page learns about its call.
#[derive(Serialize)]
struct JoinInfo {
    call_id: String,
    agent_name: String,
    state: String,
    platform: &'static str,
    ice_servers: Vec<webrtc::IceServer>,
    whip_url: String,
}

/// The page's view of the room when its event socket opens.
#[derive(Serialize)]
struct PageSnapshot {
    #[serde(rename = "type")]
    kind: &'static str,
    state: String,
    participants: Vec<chamade_actors::room::Member>,
    chat: Vec<()>,
    transcript: Vec<String>,
}

/// A message from the page.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum PageMessage {
    Chat { name: Option<String>, text: String },
}

fn page_headers(resp: &mut actix_web::HttpResponseBuilder) {
    // No outside resource is ever loaded; the page may talk only to this origin.
    resp.insert_header((
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; connect-src 'self' ws: wss:; media-src 'self' blob: mediastream:; \
         img-src 'self' data:; style-src 'self'; script-src 'self' blob:; worker-src 'self' blob:",
    ))
    .insert_header((header::REFERRER_POLICY, "no-referrer"))
    .insert_header((header::CACHE_CONTROL, "no-store"))
    .insert_header(("X-Content-Type-Options", "nosniff"));
}

/// `GET /join/{token}`: the page. The token is checked by the calls it makes, so an unknown
/// one still gets the page, which then says the call is not found.
pub async fn page() -> HttpResponse {
    let mut resp = HttpResponse::Ok();
    page_headers(&mut resp);
    resp.content_type("text/html; charset=utf-8")
        .body(JOIN_HTML)
}

/// `GET /join/assets/{file}`: the page's script and style, served by the gateway itself.
pub async fn asset(path: web::Path<String>) -> HttpResponse {
    let (body, kind) = match path.as_str() {
        "join.js" => (JOIN_JS, "text/javascript; charset=utf-8"),
        "join.css" => (JOIN_CSS, "text/css; charset=utf-8"),
        _ => {
            return actix_web::ResponseError::error_response(&ApiError::NotFound(
                "No such asset".into(),
            ));
        }
    };
    HttpResponse::Ok()
        .content_type(kind)
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(body)
}

async fn token_room(req: &HttpRequest, token: &str) -> Result<(JoinEntry, Addr<Room>), ApiError> {
    let tokens = req
        .app_data::<web::Data<JoinTokens>>()
        .ok_or_else(|| ApiError::internal("join tokens missing"))?;
    let entry = tokens
        .find(token)
        .ok_or_else(|| ApiError::NotFound("This call does not exist or has ended".into()))?;
    let svc = services(req)?;
    let caller = Caller {
        user_id: entry.owner.clone(),
        credential: crate::auth::Credential::Session,
    };
    match live_room(&web::Data::new(svc.registry), &caller, &entry.call_id).await {
        Ok(room) => Ok((entry, room)),
        Err(e) => {
            tokens.forget(token);
            Err(match e {
                ApiError::NotFound(_) => {
                    ApiError::NotFound("This call does not exist or has ended".into())
                }
                other => other,
            })
        }
    }
}

/// `GET /join/{token}/info`: the call and how to join it.
pub async fn info(req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let token = path.into_inner();
    let (entry, room) = token_room(&req, &token).await?;
    let snap = room
        .send(Snapshot { since: usize::MAX })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let state = crate::api::calls::state_name(snap.state);
    let settings = services(&req)?.settings;
    let mut resp = HttpResponse::Ok();
    resp.insert_header((header::CACHE_CONTROL, "no-store"));
    Ok(resp.json(JoinInfo {
        whip_url: format!("/api/call/{}/whip", entry.call_id),
        call_id: entry.call_id,
        agent_name: entry.agent_name,
        state,
        platform: "web",
        ice_servers: settings.ice_servers,
    }))
}

/// `GET /join/{token}/ws`: the room's events for the page (who is in, chat, transcript,
/// the end of the call), and the page's chat messages into the call.
pub async fn events(
    req: HttpRequest,
    body: web::Payload,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let token = path.into_inner();
    let (_, room) = token_room(&req, &token).await?;
    let (response, session, messages) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::bad_request("not_websocket", e.to_string()))?;
    let messages = messages.max_frame_size(64 * 1024);
    actix_web::rt::spawn(page_events(room, session, messages));
    Ok(response)
}

async fn page_events(
    room: Addr<Room>,
    mut session: actix_ws::Session,
    mut messages: actix_ws::MessageStream,
) {
    let (tx, mut events) = mpsc::channel(64);
    let forwarder = Forwarder(tx).start();
    let subscription = room
        .send(Subscribe(forwarder.clone().recipient()))
        .await
        .ok();
    if let Ok(snap) = room.send(Snapshot { since: 0 }).await {
        let first = PageSnapshot {
            kind: "snapshot",
            state: crate::api::calls::state_name(snap.state),
            participants: snap.members,
            chat: Vec::new(),
            transcript: snap.transcript.iter().map(|l| l.render()).collect(),
        };
        if let Ok(text) = serde_json::to_string(&first) {
            let _ = session.text(text).await;
        }
    }
    let mut ping = tokio::time::interval(Duration::from_secs(15));
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                let ended = matches!(&event, RoomEvent::State { state } if state.is_terminal());
                let Ok(text) = serde_json::to_string(&event) else { continue };
                if session.text(text).await.is_err() { break; }
                if ended { break; }
            }
            message = messages.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    match serde_json::from_str::<PageMessage>(&text) {
                        Ok(PageMessage::Chat { name, text }) => {
                            let text = text.trim();
                            if text.is_empty() || text.chars().count() > MAX_CHAT_CHARS {
                                continue;
                            }
                            let sender = display_name(name.as_deref(), "Guest")
                                .unwrap_or_else(|_| "Guest".to_string());
                            room.do_send(Command::Chat { sender, text: text.to_string() });
                        }
                        Err(e) => {
                            let reply = serde_json::json!({"type": "error", "message": format!("unreadable message: {e}")});
                            let _ = session.text(reply.to_string()).await;
                        }
                    }
                }
                Some(Ok(Message::Ping(bytes))) => { let _ = session.pong(&bytes).await; }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if session.ping(b"chamade").await.is_err() { break; }
                if !room.connected() { break; }
            }
        }
    }
    if let Some((id, _)) = subscription {
        room.do_send(Unsubscribe(id));
    }
    forwarder.do_send(StopForwarder);
    let _ = session
        .close(Some(CloseReason::from(CloseCode::Normal)))
        .await;
}
