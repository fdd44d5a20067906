//! The call API (`/api/call…`, `/api/calls`): handlers ask the [`CallRegistry`] for the
//! caller's room, send it a command, persist what changed and answer with the spec's fields.
//! A call that has ended answers from the database.

use actix::Addr;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use chamade_actors::registry::{CallRegistry, LimitReached, LiveCalls, Lookup, Register};
use chamade_actors::room::{CallState, Command, Direction, Room, RoomError, Snapshot};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::db::calls::{self as store, CallRow};
use crate::db::{now_ms, repo, rfc3339};
use crate::error::{ApiError, ErrorBody};
use crate::media_plane::MediaPlane;
use crate::platforms::PLATFORMS;
use crate::state::AppState;

/// The registry as handlers receive it.
pub type Registry = web::Data<Addr<CallRegistry>>;

/// Platforms `POST /api/call` accepts: the spec's list plus the gateway's own `web` rooms.
const CALL_PLATFORMS: &[&str] = &[
    "discord", "teams", "meet", "zoom", "telegram", "nctalk", "sip", "whatsapp", "web",
];

/// `POST /api/call`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCall {
    /// `discord`, `teams`, `meet`, `zoom`, `telegram`, `nctalk`, `sip`, `whatsapp` or `web`.
    #[schema(example = "web")]
    pub platform: String,
    /// Meeting URL or SIP URI; not needed for `web`.
    #[serde(default)]
    pub meeting_url: Option<String>,
    /// The agent's display name (default "AI Agent").
    #[serde(default)]
    #[schema(max_length = 100)]
    pub agent_name: Option<String>,
    /// Whether hosted STT transcribes the call (default true; false for BYO-STT).
    #[serde(default)]
    pub transcripts: Option<bool>,
    /// Extension for `web` calls: the room's mixing rate (8,000–48,000 Hz, a multiple of
    /// 50; default 48,000). A room whose participants are phones or plain RTP legs at
    /// 8 kHz mixes at 8 kHz without resampling anyone.
    #[serde(default)]
    #[schema(minimum = 8000, maximum = 48000, example = 48000)]
    pub sample_rate: Option<u32>,
}

/// The audio format of the call WebSocket.
#[derive(Serialize, ToSchema)]
pub struct AudioFormat {
    /// The room's native rate (agents may declare another with `audio_config`).
    pub sample_rate: u32,
    /// Always `pcm_s16le`.
    pub format: &'static str,
    /// Always 1.
    pub channels: u8,
    /// Always 20.
    pub frame_duration_ms: u32,
    /// Bytes of one 20 ms frame at `sample_rate`.
    pub frame_bytes: usize,
}

/// A call as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct CallInfo {
    /// The call's id.
    pub call_id: String,
    /// The room's id.
    pub room_id: String,
    /// The agent's participant id in the room.
    pub participant_id: String,
    /// The call WebSocket.
    pub text_ws_url: String,
    /// `connecting`, `ringing`, `active`, `ended`, `refused`, `missed`, `disconnected`, `error`.
    pub state: String,
    /// What the platform exposes.
    pub capabilities: Vec<&'static str>,
    /// Platform name.
    pub platform: String,
    /// Meeting URL or SIP URI.
    pub meeting_url: String,
    /// The agent's display name.
    pub agent_name: String,
    /// PCM format on the WebSocket.
    pub audio: AudioFormat,
    /// Transcript lines (`"[Speaker] text"`) from `since` on; only in `GET /api/call/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript: Option<Vec<String>>,
    /// Total transcript lines, the next `since`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript_length: Option<usize>,
    /// `outbound` or `inbound`.
    pub direction: String,
    /// The caller, for inbound calls.
    pub caller: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, or null while the call is live.
    pub ended_at: Option<String>,
    /// Extension for `web` calls, in the creation answer only: the page where people join
    /// the call from a browser. Its token admits to this call alone; it is not stored in
    /// clear, so it is shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_url: Option<String>,
}

fn capabilities(platform: &str) -> Vec<&'static str> {
    if platform == "web" {
        return vec!["audio_in", "audio_out", "read", "write"];
    }
    PLATFORMS
        .iter()
        .find(|p| p.name == platform)
        .map(|p| p.capabilities.to_vec())
        .unwrap_or_default()
}

pub(crate) fn state_name(state: CallState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Where clients reach this server: the configured `public_url`, else the scheme and host the
/// request came in on (so a server on 0.0.0.0 behind any name answers with that name).
fn base_url(state: &AppState, req: &HttpRequest) -> String {
    match &state.config.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let conn = req.connection_info();
            format!("{}://{}", conn.scheme(), conn.host())
        }
    }
}

fn ws_url(base: &str, call_id: &str) -> String {
    let base = base
        .strip_prefix("https://")
        .map(|rest| format!("wss://{rest}"))
        .or_else(|| {
            base.strip_prefix("http://")
                .map(|rest| format!("ws://{rest}"))
        })
        .unwrap_or_else(|| base.to_string());
    format!("{base}/api/call/{call_id}/stream")
}

fn info(base: &str, row: &CallRow, live: Option<CallState>) -> CallInfo {
    let rate = u32::try_from(row.sample_rate).unwrap_or(48_000);
    CallInfo {
        call_id: row.id.clone(),
        room_id: row.id.clone(),
        participant_id: format!("{}:agent", row.id),
        text_ws_url: ws_url(base, &row.id),
        state: live.map_or_else(|| row.state.clone(), state_name),
        capabilities: capabilities(&row.platform),
        platform: row.platform.clone(),
        meeting_url: row.meeting_url.clone(),
        agent_name: row.agent_name.clone(),
        audio: AudioFormat {
            sample_rate: rate,
            format: "pcm_s16le",
            channels: 1,
            frame_duration_ms: 20,
            frame_bytes: rate as usize / 50 * 2,
        },
        transcript: None,
        transcript_length: None,
        direction: row.direction.clone(),
        caller: row.caller.clone(),
        created_at: rfc3339(row.created_at),
        ended_at: row.ended_at.map(rfc3339),
        join_url: None,
    }
}

fn room_error(e: RoomError) -> ApiError {
    match e {
        RoomError::WrongState { .. } => ApiError::Conflict(e.to_string()),
        other => ApiError::Unprocessable(other.to_string()),
    }
}

fn mailbox<E: std::fmt::Display>(e: E) -> ApiError {
    ApiError::internal(format!("room unavailable: {e}"))
}

/// The caller's live room for `call_id`, or 404 (unknown, ended, or another user's).
pub async fn live_room(
    registry: &Registry,
    caller: &Caller,
    call_id: &str,
) -> Result<Addr<Room>, ApiError> {
    registry
        .send(Lookup {
            call_id: call_id.to_string(),
            owner: caller.user_id.clone(),
        })
        .await
        .map_err(mailbox)?
        .ok_or_else(call_not_found)
}

fn call_not_found() -> ApiError {
    ApiError::NotFound("Call not found".into())
}

/// Stores a state the room reached (and `ended_at` for a terminal one).
async fn persist_state(
    state: &AppState,
    caller: &Caller,
    call_id: &str,
    to: CallState,
) -> Result<(), ApiError> {
    record_state(state, &caller.user_id, call_id, to).await
}

/// Stores a state `user_id`'s call reached, whoever drove it (an API request or the
/// platform side, such as a phone hanging up).
pub(crate) async fn record_state(
    state: &AppState,
    user_id: &str,
    call_id: &str,
    to: CallState,
) -> Result<(), ApiError> {
    let (user, id) = (user_id.to_string(), call_id.to_string());
    let name = state_name(to);
    let ended = to.is_terminal().then(now_ms);
    state
        .db(move |c| store::set_state(c, &user, &id, &name, ended))
        .await
}

/// Joins a meeting or starts a call.
#[utoipa::path(
    request_body = CreateCall,
    responses(
        (status = 200, body = CallInfo),
        (status = 400, body = ErrorBody, description = "platform not available or not configured"),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "Concurrent call limit reached"),
    ),
    security(("api_key" = []))
)]
#[post("/call")]
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    registry: Registry,
    media: web::Data<MediaPlane>,
    sip: web::Data<crate::sip::SipService>,
    caller: Caller,
    body: web::Json<CreateCall>,
) -> Result<web::Json<CallInfo>, ApiError> {
    let body = body.into_inner();
    let platform = body.platform.trim().to_lowercase();
    if !CALL_PLATFORMS.contains(&platform.as_str()) {
        return Err(ApiError::Unprocessable(format!(
            "Unknown platform {:?}; one of: {}",
            body.platform,
            CALL_PLATFORMS.join(", ")
        )));
    }
    let room_rate = match body.sample_rate {
        None => None,
        Some(_) if platform != "web" => {
            return Err(ApiError::Unprocessable(
                "sample_rate applies to web calls only: other platforms mix at their own rate"
                    .into(),
            ));
        }
        Some(hz) => Some(
            chamade_media::SampleRate::new(hz)
                .map_err(|e| ApiError::Unprocessable(format!("sample_rate: {e}")))?,
        ),
    };
    let mut trunk = None;
    if platform == "sip" {
        let user = caller.user_id.clone();
        trunk = state.db(move |c| repo::sip_trunk_of(c, &user)).await?;
        if trunk.is_none() {
            return Err(ApiError::bad_request(
                "no_sip_trunk",
                "No SIP trunk configured",
            ));
        }
    } else if platform != "web" {
        return Err(ApiError::bad_request(
            "platform_unavailable",
            format!(
                "The {platform} bridge is not available on this server yet; use platform \"web\""
            ),
        ));
    }
    let agent_name = match body.agent_name.as_deref().map(str::trim) {
        None | Some("") => "AI Agent".to_string(),
        Some(name) => crate::api::session::check_label("agent_name", name, 100)?,
    };
    let meeting_url = body.meeting_url.unwrap_or_default();
    let sip_target = if platform == "sip" {
        Some(crate::sip::dial_target(&meeting_url).map_err(ApiError::Unprocessable)?)
    } else {
        None
    };
    let opened = open_call(
        &state,
        &registry,
        &media,
        NewCall {
            user_id: caller.user_id.clone(),
            platform,
            meeting_url,
            agent_name,
            direction: Direction::Outbound,
            caller: String::new(),
            rate: room_rate,
        },
    )
    .await?;
    let row = opened.row.clone();
    let now = match (sip_target, trunk) {
        (Some(target), Some(trunk)) => {
            let dialed = sip.dial(crate::sip::Outbound {
                call_id: row.id.clone(),
                user_id: caller.user_id.clone(),
                trunk,
                target,
                room: opened.room.clone(),
                media_room: opened.media_room,
                rate: opened.rate,
            });
            if let Err(why) = dialed {
                opened.room.do_send(Command::HangUp);
                media.close_room(opened.media_room);
                persist_state(&state, &caller, &row.id, CallState::Error).await?;
                return Err(ApiError::bad_request("platform_unavailable", why));
            }
            CallState::Connecting
        }
        _ => {
            // A `web` room is hosted here: it is ready at once.
            let now = opened
                .room
                .send(Command::Connected)
                .await
                .map_err(mailbox)?
                .map_err(room_error)?;
            persist_state(&state, &caller, &row.id, now).await?;
            now
        }
    };
    tracing::info!(call_id = %row.id, platform = %row.platform, "call created");
    let base = base_url(&state, &req);
    let mut created = info(&base, &row, Some(now));
    if row.platform == "web"
        && let Some(tokens) = req.app_data::<web::Data<crate::api::webrtc::JoinTokens>>()
    {
        let token = tokens.issue(&row.id, &caller.user_id, &row.agent_name);
        created.join_url = Some(format!("{base}/join/{token}"));
    }
    Ok(web::Json(created))
}

/// What a new call is.
pub(crate) struct NewCall {
    pub user_id: String,
    pub platform: String,
    pub meeting_url: String,
    pub agent_name: String,
    pub direction: Direction,
    pub caller: String,
    /// The room's rate when not the platform's native one.
    pub rate: Option<chamade_media::SampleRate>,
}

/// A call just opened: stored, registered, with its room and mixer room.
pub(crate) struct OpenedCall {
    pub row: CallRow,
    pub room: Addr<Room>,
    pub media_room: u64,
    pub rate: chamade_media::SampleRate,
}

/// Opens a call: a mixer room at the platform's rate, a room actor, a slot under the
/// owner's concurrent-call limit (429 past it) and a stored row. Outbound calls start
/// `connecting`, inbound ones `ringing`.
pub(crate) async fn open_call(
    state: &AppState,
    registry: &Addr<CallRegistry>,
    media: &MediaPlane,
    new: NewCall,
) -> Result<OpenedCall, ApiError> {
    let native = new.rate.unwrap_or_else(|| {
        chamade_actors::native_rate(&new.platform).unwrap_or(chamade_media::SampleRate::HZ_48000)
    });
    let (direction, first_state) = match new.direction {
        Direction::Outbound => ("outbound", "connecting"),
        Direction::Inbound => ("inbound", "ringing"),
    };
    let row = CallRow {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: new.user_id.clone(),
        platform: new.platform,
        meeting_url: new.meeting_url,
        agent_name: new.agent_name,
        direction: direction.into(),
        caller: new.caller,
        state: first_state.into(),
        sample_rate: i32::try_from(native.hz()).unwrap_or(48_000),
        created_at: now_ms(),
        ended_at: None,
    };
    let (media_room, room_stats) = media
        .open_room(native)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let room =
        actix::Actor::start(Room::new(new.direction).with_media(media_room, room_stats, native));
    let registered = registry
        .send(Register {
            call_id: row.id.clone(),
            owner: new.user_id.clone(),
            room: room.clone(),
            limit: state.config.max_concurrent_calls as usize,
        })
        .await
        .map_err(mailbox)
        .and_then(|r| {
            r.map_err(|LimitReached(_)| {
                ApiError::TooManyRequests("Concurrent call limit reached".into())
            })
        });
    if let Err(e) = registered {
        room.do_send(Command::HangUp);
        media.close_room(media_room);
        return Err(e);
    }
    let stored = row.clone();
    if let Err(e) = state.db(move |c| store::insert_call(c, &stored)).await {
        // Not stored, so not a call: free its room and its slot under the limit.
        room.do_send(Command::HangUp);
        media.close_room(media_room);
        return Err(e);
    }
    Ok(OpenedCall {
        row,
        room,
        media_room,
        rate: native,
    })
}

/// `?since=N` of `GET /api/call/{id}`.
#[derive(Deserialize, IntoParams)]
pub struct Since {
    /// First transcript line wanted (the previous `transcript_length`).
    #[serde(default)]
    pub since: usize,
}

/// A call's state and transcript (delta with `since`).
#[utoipa::path(
    params(("call_id" = String, Path, description = "call id"), Since),
    responses((status = 200, body = CallInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/call/{call_id}")]
pub async fn status(
    req: HttpRequest,
    state: web::Data<AppState>,
    registry: Registry,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<Since>,
) -> Result<web::Json<CallInfo>, ApiError> {
    let call_id = path.into_inner();
    let since = query.since;
    let (user, id) = (caller.user_id.clone(), call_id.clone());
    let row = state
        .db(move |c| store::call_of(c, &user, &id))
        .await?
        .ok_or_else(call_not_found)?;
    let live = registry
        .send(Lookup {
            call_id: call_id.clone(),
            owner: caller.user_id.clone(),
        })
        .await
        .map_err(mailbox)?;
    let mut out;
    if let Some(room) = live
        && let Ok(snap) = room.send(Snapshot { since }).await
    {
        out = info(&base_url(&state, &req), &row, Some(snap.state));
        out.transcript = Some(snap.transcript.iter().map(|l| l.render()).collect());
        out.transcript_length = Some(snap.transcript_length);
    } else {
        let (user, id) = (caller.user_id.clone(), call_id.clone());
        let since_idx = i32::try_from(since).unwrap_or(i32::MAX);
        let (lines, total) = state
            .db(move |c| {
                Ok((
                    store::lines_since(c, &user, &id, since_idx)?,
                    store::line_count(c, &user, &id)?,
                ))
            })
            .await?;
        out = info(&base_url(&state, &req), &row, None);
        out.transcript = Some(
            lines
                .iter()
                .map(|l| format!("[{}] {}", l.speaker, l.text))
                .collect(),
        );
        out.transcript_length = Some(usize::try_from(total).unwrap_or(0));
    }
    Ok(web::Json(out))
}

/// `GET /api/calls`.
#[derive(Serialize, ToSchema)]
pub struct CallList {
    /// The caller's live calls.
    pub calls: Vec<CallInfo>,
}

/// The caller's active calls.
#[utoipa::path(
    responses((status = 200, body = CallList), (status = 401, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/calls")]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    registry: Registry,
    caller: Caller,
) -> Result<web::Json<CallList>, ApiError> {
    let live = registry
        .send(LiveCalls {
            owner: caller.user_id.clone(),
        })
        .await
        .map_err(mailbox)?;
    let user = caller.user_id.clone();
    let rows = state.db(move |c| store::calls_of(c, &user)).await?;
    let base = base_url(&state, &req);
    Ok(web::Json(CallList {
        calls: rows
            .iter()
            .filter(|r| live.contains(&r.id))
            .map(|r| info(&base, r, None))
            .collect(),
    }))
}

/// The state after a command.
#[derive(Serialize, ToSchema)]
pub struct CallStateReply {
    /// The call.
    pub call_id: String,
    /// Its state now.
    pub state: String,
}

async fn command(
    state: &AppState,
    registry: &Registry,
    media: &MediaPlane,
    caller: &Caller,
    call_id: &str,
    cmd: Command,
) -> Result<CallStateReply, ApiError> {
    let room = live_room(registry, caller, call_id).await?;
    let media_room = room
        .send(Snapshot { since: usize::MAX })
        .await
        .map_err(mailbox)?
        .media_room;
    let now = room.send(cmd).await.map_err(mailbox)?.map_err(room_error)?;
    if now.is_terminal()
        && let Some(id) = media_room
    {
        media.close_room(id);
    }
    persist_state(state, caller, call_id, now).await?;
    Ok(CallStateReply {
        call_id: call_id.to_string(),
        state: state_name(now),
    })
}

/// Accepts a ringing inbound call.
#[utoipa::path(
    params(("call_id" = String, Path, description = "call id")),
    responses((status = 200, body = CallStateReply), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = []))
)]
#[post("/call/{call_id}/accept")]
pub async fn accept(
    state: web::Data<AppState>,
    registry: Registry,
    media: web::Data<MediaPlane>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<web::Json<CallStateReply>, ApiError> {
    Ok(web::Json(
        command(&state, &registry, &media, &caller, &path, Command::Accept).await?,
    ))
}

/// Refuses a ringing inbound call.
#[utoipa::path(
    params(("call_id" = String, Path, description = "call id")),
    responses((status = 200, body = CallStateReply), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = []))
)]
#[post("/call/{call_id}/refuse")]
pub async fn refuse(
    state: web::Data<AppState>,
    registry: Registry,
    media: web::Data<MediaPlane>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<web::Json<CallStateReply>, ApiError> {
    Ok(web::Json(
        command(&state, &registry, &media, &caller, &path, Command::Refuse).await?,
    ))
}

/// Hangs up: the call ends and every call WebSocket gets `call_state: ended`.
#[utoipa::path(
    params(("call_id" = String, Path, description = "call id")),
    responses((status = 200, body = CallStateReply), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[delete("/call/{call_id}")]
pub async fn hang_up(
    state: web::Data<AppState>,
    registry: Registry,
    media: web::Data<MediaPlane>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<web::Json<CallStateReply>, ApiError> {
    Ok(web::Json(
        command(&state, &registry, &media, &caller, &path, Command::HangUp).await?,
    ))
}

/// `POST /api/call/{id}/dtmf`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendDtmf {
    /// Keys to play: `0`–`9`, `*`, `#`, `A`–`D`, 1 to 64 of them.
    #[schema(min_length = 1, max_length = 64, example = "123#")]
    pub digits: String,
}

/// Keys queued for the phone leg.
#[derive(Serialize, ToSchema)]
pub struct DtmfQueued {
    /// `queued`.
    pub status: &'static str,
    /// How many keys.
    pub digits: usize,
}

/// Plays keys into the call's phone leg as RFC 4733 telephone-events (100 ms each), for
/// menus and voicemail systems on the far end. 409 when the call has no phone leg.
#[utoipa::path(
    params(("call_id" = String, Path, description = "call id")),
    request_body = SendDtmf,
    responses((status = 200, body = DtmfQueued), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
#[post("/call/{call_id}/dtmf")]
pub async fn dtmf(
    registry: Registry,
    sip: web::Data<crate::sip::SipService>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<SendDtmf>,
) -> Result<web::Json<DtmfQueued>, ApiError> {
    let call_id = path.into_inner();
    let digits = body.into_inner().digits;
    crate::sip::check_digits(&digits).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    live_room(&registry, &caller, &call_id).await?;
    sip.send_dtmf(&caller.user_id, &call_id, &digits)
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
    Ok(web::Json(DtmfQueued {
        status: "queued",
        digits: digits.chars().count(),
    }))
}

/// `POST /api/call/{id}/chat`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendChat {
    /// 1 to 10,000 characters.
    #[schema(min_length = 1, max_length = 10000)]
    pub text: String,
    /// Sender name shown in the meeting (default: the agent's name).
    #[serde(default)]
    pub sender_name: Option<String>,
}

/// A sent chat message.
#[derive(Serialize, ToSchema)]
pub struct ChatSent {
    /// `sent`.
    pub status: &'static str,
}

/// Sends a chat message into the call.
#[utoipa::path(
    params(("call_id" = String, Path, description = "call id")),
    request_body = SendChat,
    responses((status = 200, body = ChatSent), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
#[post("/call/{call_id}/chat")]
pub async fn chat(
    state: web::Data<AppState>,
    registry: Registry,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<SendChat>,
) -> Result<web::Json<ChatSent>, ApiError> {
    let body = body.into_inner();
    let room = live_room(&registry, &caller, &path).await?;
    let sender = match body.sender_name.filter(|s| !s.trim().is_empty()) {
        Some(s) => s,
        None => {
            let (user, id) = (caller.user_id.clone(), path.to_string());
            state
                .db(move |c| store::call_of(c, &user, &id))
                .await?
                .map_or_else(|| "AI Agent".to_string(), |r| r.agent_name)
        }
    };
    room.send(Command::Chat {
        sender,
        text: body.text,
    })
    .await
    .map_err(mailbox)?
    .map_err(room_error)?;
    Ok(web::Json(ChatSent { status: "sent" }))
}

/// `POST /api/call/{id}/say`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Say {
    /// What to say.
    pub text: String,
}

/// Speaks through hosted TTS: 400 until a TTS provider runs on this server.
#[utoipa::path(
    params(("call_id" = String, Path, description = "call id")),
    request_body = Say,
    responses((status = 400, body = ErrorBody, description = "Hosted TTS not configured"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
#[post("/call/{call_id}/say")]
pub async fn say(
    registry: Registry,
    caller: Caller,
    path: web::Path<String>,
    _body: web::Json<Say>,
) -> Result<HttpResponse, ApiError> {
    live_room(&registry, &caller, &path).await?;
    Err(ApiError::bad_request(
        "tts_not_configured",
        "Hosted TTS not configured: send PCM on the call WebSocket instead",
    ))
}

/// Shows a typing indicator in the meeting chat (a no-op on platforms without one).
#[utoipa::path(
    params(("call_id" = String, Path, description = "call id")),
    responses((status = 200, body = ChatSent), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[post("/call/{call_id}/typing")]
pub async fn typing(
    registry: Registry,
    caller: Caller,
    path: web::Path<String>,
) -> Result<web::Json<ChatSent>, ApiError> {
    live_room(&registry, &caller, &path).await?;
    Ok(web::Json(ChatSent { status: "sent" }))
}
