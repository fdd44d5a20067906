//! `/api/call/{id}/rtp`: plain RTP legs. Another media system (or a benchmark driver) sends
//! RTP to a UDP port of ours and receives the room's mix-minus back, as Janus AudioBridge's
//! and mediasoup's plain transports allow.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use actix_web::{HttpResponse, delete, post, web};
use chamade_actors::bridge::rtp::{RtpCodec, RtpReceiver, RtpSender};
use chamade_actors::room::{Command, Join, ParticipantKind, Snapshot};
use chamade_media::mixer::MixMode;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use utoipa::ToSchema;

use crate::api::calls::{Registry, live_room};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::media_plane::MediaPlane;
use crate::rtp_leg::{RtpLeg, random_u32};

/// The live RTP legs, by id: who owns each and how to stop it. Control plane only; the lock
/// is held for a map lookup, never across an await.
#[derive(Default)]
pub struct RtpLegs {
    legs: Mutex<HashMap<String, LegEntry>>,
}

struct LegEntry {
    owner: String,
    call_id: String,
    stop: oneshot::Sender<()>,
}

/// `POST /api/call/{id}/rtp`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddRtpLeg {
    /// The remote IP address (a literal, no host names).
    pub address: String,
    /// The remote UDP port.
    #[schema(minimum = 1, maximum = 65535)]
    pub port: u16,
    /// `PCMU`, `PCMA`, `opus` (48 kHz) or `opus16`.
    pub codec: String,
}

/// A new leg: where to send RTP.
#[derive(Serialize, ToSchema)]
pub struct RtpLegInfo {
    /// The leg's id, for `DELETE`.
    pub leg_id: String,
    /// Our address: send RTP here.
    pub local_address: String,
    /// Our UDP port.
    pub local_port: u16,
    /// The codec as understood.
    pub codec: String,
    /// The RTP payload type we send and expect.
    pub payload_type: u8,
    /// Where we send the room's audio.
    pub remote: String,
}

/// Adds a plain RTP participant to a live call.
#[utoipa::path(
    params(("call_id" = String, Path, description = "call id")),
    request_body = AddRtpLeg,
    responses((status = 201, body = RtpLegInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
#[post("/call/{call_id}/rtp")]
pub async fn add(
    registry: Registry,
    media: web::Data<MediaPlane>,
    legs: web::Data<RtpLegs>,
    state: web::Data<crate::state::AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<AddRtpLeg>,
) -> Result<HttpResponse, ApiError> {
    let call_id = path.into_inner();
    let body = body.into_inner();
    let ip: IpAddr = body.address.parse().map_err(|_| {
        ApiError::Unprocessable(format!(
            "address must be an IP address, not {:?}",
            body.address
        ))
    })?;
    if body.port == 0 {
        return Err(ApiError::Unprocessable("port must be 1 to 65535".into()));
    }
    let codec = RtpCodec::from_name(&body.codec).ok_or_else(|| {
        ApiError::Unprocessable(format!(
            "codec must be PCMU, PCMA, opus or opus16, not {:?}",
            body.codec
        ))
    })?;
    let room = live_room(&registry, &caller, &call_id).await?;
    let snap = room
        .send(Snapshot { since: usize::MAX })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let media_room = snap
        .media_room
        .ok_or_else(|| ApiError::bad_request("no_audio", "This call carries no audio"))?;
    let remote = SocketAddr::new(ip, body.port);
    let socket = UdpSocket::bind(SocketAddr::new(state.config.listen.ip(), 0))
        .await
        .map_err(|e| ApiError::internal(format!("cannot open an RTP port: {e}")))?;
    let local = socket
        .local_addr()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let participant = room
        .send(Join {
            name: format!("RTP {remote}"),
            kind: ParticipantKind::Bot,
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
    let rate = codec.pcm_rate();
    let leg = media
        .join_paced(media_room, snap.rate, participant, rate, MixMode::Full)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let receiver = RtpReceiver::new(codec).map_err(|e| ApiError::internal(e.to_string()))?;
    let sender = RtpSender::new(codec, random_u32(), random_u32() as u16, random_u32())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let leg_id = uuid::Uuid::new_v4().to_string();
    let (stop, stopped) = oneshot::channel();
    if let Ok(mut map) = legs.legs.lock() {
        map.insert(
            leg_id.clone(),
            LegEntry {
                owner: caller.user_id.clone(),
                call_id: call_id.clone(),
                stop,
            },
        );
    }
    let media = media.into_inner();
    let legs_for_task = legs.into_inner();
    let id = leg_id.clone();
    let ssrc = random_u32();
    actix_web::rt::spawn(async move {
        let task = RtpLeg {
            socket,
            rtcp: None,
            remote,
            rtcp_remote: None,
            receiver,
            sender,
            leg,
            rate,
            room: room.clone(),
            dtmf: None,
            inactivity: None,
            counters: Default::default(),
            ssrc,
        };
        task.run(&media, media_room, stopped).await;
        media.leave_leg(media_room, participant);
        room.do_send(Command::Leave(participant));
        if let Ok(mut map) = legs_for_task.legs.lock() {
            map.remove(&id);
        }
    });
    tracing::info!(%call_id, %remote, local = %local, codec = ?codec, "RTP leg added");
    Ok(HttpResponse::Created().json(RtpLegInfo {
        leg_id,
        local_address: local.ip().to_string(),
        local_port: local.port(),
        codec: format!("{codec:?}"),
        payload_type: codec.payload_type(),
        remote: remote.to_string(),
    }))
}

/// Removes a plain RTP participant.
#[utoipa::path(
    params(("call_id" = String, Path, description = "call id"), ("leg_id" = String, Path, description = "leg id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[delete("/call/{call_id}/rtp/{leg_id}")]
pub async fn remove(
    legs: web::Data<RtpLegs>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (call_id, leg_id) = path.into_inner();
    let entry = legs.legs.lock().ok().and_then(|mut map| {
        let mine = map
            .get(&leg_id)
            .is_some_and(|e| e.owner == caller.user_id && e.call_id == call_id);
        if mine { map.remove(&leg_id) } else { None }
    });
    match entry {
        Some(e) => {
            let _ = e.stop.send(());
            Ok(HttpResponse::NoContent().finish())
        }
        None => Err(ApiError::NotFound("RTP leg not found".into())),
    }
}
