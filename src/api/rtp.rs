//! `/api/call/{id}/rtp`: plain RTP legs. Another media system (or a benchmark driver) sends
//! RTP to a UDP port of ours and receives the room's mix-minus back, as Janus AudioBridge's
//! and mediasoup's plain transports allow.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, delete, post, web};
use chamade_actors::bridge::rtp::{RtpCodec, RtpReceiver, RtpSender};
use chamade_actors::room::{Command, Join, ParticipantKind, Snapshot};
use chamade_media::mixer::MixMode;
use chamade_media::ring::Pull;
use chamade_media::{Frame, SampleRate};
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use utoipa::ToSchema;

use crate::api::calls::{Registry, live_room};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::media_plane::{AgentLeg, MediaPlane};

/// Largest datagram read from a leg's socket.
const MAX_DATAGRAM: usize = 2048;

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
        .join(media_room, snap.rate, participant, rate, MixMode::Full)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let receiver = RtpReceiver::new(codec).map_err(|e| ApiError::internal(e.to_string()))?;
    let sender = RtpSender::new(codec, rand_u32(), rand_u32() as u16, rand_u32())
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
    actix_web::rt::spawn(async move {
        let task = LegTask {
            socket,
            remote,
            receiver,
            sender,
            leg,
            rate,
            room: room.clone(),
        };
        task.run(stopped).await;
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

fn rand_u32() -> u32 {
    use rand::Rng;
    rand::rng().next_u32()
}

/// What one leg's task owns.
struct LegTask {
    socket: UdpSocket,
    remote: SocketAddr,
    receiver: RtpReceiver,
    sender: RtpSender,
    leg: AgentLeg,
    rate: SampleRate,
    room: actix::Addr<chamade_actors::room::Room>,
}

impl LegTask {
    /// The leg's loop: datagrams into the jitter buffer as they come; on the mixer's tick grid,
    /// one decoded frame into the input ring and, when the room's frame is there, one packet out.
    async fn run(self, mut stopped: oneshot::Receiver<()>) {
        let LegTask {
            socket,
            remote,
            mut receiver,
            mut sender,
            mut leg,
            rate,
            room,
        } = self;
        let mut buf = [0u8; MAX_DATAGRAM];
        let mut out = Frame::silence(rate);
        let mut next = grid_after(leg.grid, Instant::now());
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                got = socket.recv_from(&mut buf) => {
                    match got {
                        // Symmetric RTP: only the configured remote is listened to.
                        Ok((n, from)) if from == remote => { let _ = receiver.on_datagram(&buf[..n]); }
                        Ok(_) => {}
                        Err(e) => tracing::debug!(error = %e, "RTP receive error"),
                    }
                }
                _ = tokio::time::sleep_until(next.into()) => {
                    if !room.connected() {
                        // The call ended: its mixer room is gone with it.
                        break;
                    }
                    next = grid_after(leg.grid, Instant::now());
                    leg.ends.input.push_samples(receiver.next_frame().samples());
                    if let Some(output) = leg.ends.output.as_mut() {
                        output.trim_to(rate.frame_samples() * 4);
                        if output.queued_samples() >= rate.frame_samples()
                            && output.pull_frame(out.samples_mut()) == Pull::Frame
                            && let Ok(packet) = sender.packetize(&out)
                        {
                            let _ = socket.send_to(packet, remote).await;
                        }
                    }
                }
            }
        }
    }
}

/// 2 ms after the next tick of the shard's grid: the room's frame for the tick is there.
fn grid_after(grid: Instant, now: Instant) -> Instant {
    let tick = Duration::from_millis(20);
    let since = now.saturating_duration_since(grid).as_nanos();
    let k = since / tick.as_nanos() + 1;
    grid + Duration::from_nanos((k * tick.as_nanos()) as u64) + Duration::from_millis(2)
}
