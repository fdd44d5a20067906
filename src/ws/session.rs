//! One call WebSocket session.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Session};
use base64::Engine;
use chamade_actors::room::{
    Command, Delivered, Join, ParticipantKind, Room, RoomEvent, Snapshot, Subscribe, Unsubscribe,
};
use chamade_media::SampleRate;
use chamade_media::mixer::MixMode;
use chamade_media::ring::{PcmProducer, Pull};
use tokio::sync::mpsc;

use super::protocol::{
    AudioConfigReply, CallStats, ClientMessage, ErrorReply, MarkReply, PhoneCounters, RoomCounters,
};
use super::{CODEC_LIMIT_BYTES, MAX_FRAME_BYTES};
use crate::api::calls::{Registry, live_room};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::media_plane::{AgentLeg, MediaPlane};
use crate::state::AppState;

/// Events waiting for a socket; a socket that falls this far behind misses events rather
/// than stalling the room.
const EVENT_QUEUE: usize = 256;
/// The session reads the agent's output ring this long after each mixer tick falls due...
const PUMP_AFTER_TICK: Duration = Duration::from_millis(1);
/// ...and, while the tick's frame is not there yet (a busy shard), again this often...
const PUMP_RETRY: Duration = Duration::from_millis(2);
/// ...until this long after the tick, when it waits for the next one.
const PUMP_RETRY_UNTIL: Duration = Duration::from_millis(16);
/// The mixer's period.
const TICK: Duration = Duration::from_millis(20);
/// Keep-alive ping period, and how long a silent socket lives.
const PING_EVERY: Duration = Duration::from_secs(15);
const DEAD_AFTER: Duration = Duration::from_secs(45);
/// Most return audio a slow socket may have waiting before the oldest is dropped.
const MAX_OUTPUT_BACKLOG_MS: u64 = 200;

/// Forwards a room's events into the session's queue.
pub(crate) struct Forwarder(pub(crate) mpsc::Sender<RoomEvent>);

impl Actor for Forwarder {
    type Context = Context<Self>;
}

impl Handler<Delivered> for Forwarder {
    type Result = ();
    fn handle(&mut self, msg: Delivered, ctx: &mut Context<Self>) {
        if let Err(mpsc::error::TrySendError::Closed(_)) = self.0.try_send(msg.0) {
            ctx.stop();
        }
    }
}

/// Upgrades to the call WebSocket (authenticated like every route; `?api_key=` works).
pub async fn stream(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    registry: Registry,
    media: web::Data<MediaPlane>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let call_id = path.into_inner();
    let sip = req
        .app_data::<web::Data<crate::sip::SipService>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("the SIP service is not configured"))?;
    let room = live_room(&registry, &caller, &call_id).await?;
    let snap = room
        .send(Snapshot { since: usize::MAX })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let (response, session, messages) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::bad_request("not_websocket", e.to_string()))?;
    let messages = messages
        .max_frame_size(CODEC_LIMIT_BYTES)
        .aggregate_continuations()
        .max_continuation_size(CODEC_LIMIT_BYTES);
    let agent_name = {
        let (user, id) = (caller.user_id.clone(), call_id.clone());
        state
            .db(move |c| crate::db::calls::call_of(c, &user, &id))
            .await?
            .map_or_else(|| "AI Agent".to_string(), |r| r.agent_name)
    };
    let ctx = SessionContext {
        room_stats: snap.media_stats.clone(),
        room,
        media: media.into_inner(),
        media_room: snap.media_room,
        native: snap.rate,
        agent_name,
        sip: sip.into_inner(),
        user_id: caller.user_id.clone(),
        call_id: call_id.clone(),
        tcp_nodelay: req.conn_data::<crate::server::TcpNoDelay>().map(|n| n.0),
    };
    actix_web::rt::spawn(run(session, messages, ctx));
    Ok(response)
}

struct SessionContext {
    /// `TCP_NODELAY` on this connection's socket, as read back when it was accepted.
    tcp_nodelay: Option<bool>,
    room: Addr<Room>,
    room_stats: Option<std::sync::Arc<chamade_actors::shard::RoomStats>>,
    media: std::sync::Arc<MediaPlane>,
    media_room: Option<u64>,
    native: SampleRate,
    agent_name: String,
    sip: std::sync::Arc<crate::sip::SipService>,
    user_id: String,
    call_id: String,
}

/// The agent's audio: its leg in the mixer and what the session tracks about it.
struct Audio {
    leg: AgentLeg,
    /// When the session next reads the output ring.
    next_pump: Instant,
    rate: SampleRate,
    receive: bool,
    marks: VecDeque<(String, u64)>,
    out_buf: Vec<i16>,
    out_bytes: Vec<u8>,
}

impl Audio {
    fn input(&mut self) -> &mut PcmProducer {
        &mut self.leg.ends.input
    }
}

async fn run(
    mut session: Session,
    mut messages: actix_ws::AggregatedMessageStream,
    ctx: SessionContext,
) {
    let (tx, mut events) = mpsc::channel(EVENT_QUEUE);
    let forwarder = Forwarder(tx).start();
    let subscription = ctx
        .room
        .send(Subscribe(forwarder.clone().recipient()))
        .await
        .ok();
    let participant = match ctx
        .room
        .send(Join {
            name: ctx.agent_name.clone(),
            kind: ParticipantKind::Agent,
        })
        .await
    {
        Ok(Ok(id)) => id,
        _ => {
            let _ = session
                .close(Some(CloseReason::from(CloseCode::Normal)))
                .await;
            return;
        }
    };
    let mut audio: Option<Audio> = None;
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut close: Option<CloseReason> = None;
    let mut stats_every: Option<tokio::time::Interval> = None;
    // One pump timer, moved from deadline to deadline: a `Sleep` made anew on every pass of
    // the loop would cost a timer-wheel insert and removal for every frame the socket
    // carries, not only for the pump's own wake-ups.
    let pump = tokio::time::sleep(PING_EVERY);
    tokio::pin!(pump);

    loop {
        if let Some(a) = audio.as_ref() {
            let at = tokio::time::Instant::from_std(a.next_pump);
            if pump.deadline() != at {
                pump.as_mut().reset(at);
            }
        }
        tokio::select! {
            msg = messages.recv() => {
                let Some(msg) = msg else { break };
                last_heard = Instant::now();
                match msg {
                    Ok(AggregatedMessage::Text(text)) => {
                        if text.len() > MAX_FRAME_BYTES {
                            send_error(&mut session, "frame_too_large", format!("text frames are limited to {MAX_FRAME_BYTES} bytes")).await;
                            continue;
                        }
                        if handle_text(&mut session, &ctx, participant, &mut audio, &mut stats_every, &text).await.is_err() {
                            break;
                        }
                    }
                    Ok(AggregatedMessage::Binary(bytes)) => {
                        if bytes.len() > MAX_FRAME_BYTES {
                            send_error(&mut session, "frame_too_large", format!("binary frames are limited to {MAX_FRAME_BYTES} bytes; this one ({} bytes) was dropped", bytes.len())).await;
                            continue;
                        }
                        match ensure_audio(&ctx, participant, &mut audio, None, None) {
                            Ok(a) => {
                                let out = a.input().push_bytes(&bytes);
                                if out.dropped > 0 {
                                    let msg = format!("playout queue full: {} samples dropped", out.dropped);
                                    send_error(&mut session, "audio_overrun", msg).await;
                                }
                            }
                            Err(e) => send_error(&mut session, "audio_unavailable", e).await,
                        }
                    }
                    Ok(AggregatedMessage::Ping(p)) => {
                        if session.pong(&p).await.is_err() { break; }
                    }
                    Ok(AggregatedMessage::Pong(_)) => {}
                    Ok(AggregatedMessage::Close(_)) => break,
                    Err(e) => {
                        // The codec cannot resynchronise after a protocol error.
                        tracing::debug!(error = %e, "websocket protocol error");
                        close = Some(CloseReason { code: CloseCode::Size, description: Some(e.to_string()) });
                        break;
                    }
                }
            }
            event = events.recv() => {
                let Some(event) = event else { break };
                let ended = matches!(&event, RoomEvent::State { state } if state.is_terminal());
                let text = serde_json::to_string(&event).unwrap_or_default();
                if session.text(text).await.is_err() { break; }
                if ended {
                    close = Some(CloseReason::from(CloseCode::Normal));
                    break;
                }
            }
            // Every pass that fires it moves `next_pump` forward, so it is re-armed above.
            () = &mut pump, if audio.is_some() => {
                if let Some(a) = audio.as_mut() {
                    let Ok(sent) = pump_audio(&mut session, a).await else { break };
                    // A forwarded frame comes when it arrives, not on the grid: no retries.
                    let settled = sent > 0 || !a.receive || a.leg.ends.stats.is_forwarded();
                    a.next_pump = next_pump(a.leg.grid, Instant::now(), settled);
                }
            }
            // A frame forwarded between ticks: send it now.
            _ = async {
                match audio.as_ref() {
                    Some(a) if a.receive => a.leg.ends.stats.output_ready().notified().await,
                    _ => std::future::pending().await,
                }
            } => {
                if let Some(a) = audio.as_mut()
                    && send_return_audio(&mut session, a).await.is_err()
                {
                    break;
                }
            }
            _ = async {
                match stats_every.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            } => {
                if send_json(&mut session, &call_stats(audio.as_ref(), ctx.room_stats.as_deref(), ctx.sip.leg_counters(&ctx.user_id, &ctx.call_id).as_deref(), ctx.tcp_nodelay)).await.is_err() { break; }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > DEAD_AFTER {
                    close = Some(CloseReason { code: CloseCode::Away, description: Some("no answer to pings".into()) });
                    break;
                }
                if session.ping(b"chamade").await.is_err() { break; }
            }
        }
    }

    if let (Some(room), Some(a)) = (ctx.media_room, audio.take()) {
        ctx.media.leave(room, a.leg);
    }
    if let Some((id, _)) = subscription {
        ctx.room.do_send(Unsubscribe(id));
    }
    ctx.room.do_send(Command::Leave(participant));
    forwarder.do_send(StopForwarder);
    let _ = session.close(close).await;
}

#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopForwarder;

impl Handler<StopForwarder> for Forwarder {
    type Result = ();
    fn handle(&mut self, _: StopForwarder, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

async fn send_error(session: &mut Session, code: &str, message: impl Into<String>) {
    let text = serde_json::to_string(&ErrorReply::new(code, message)).unwrap_or_default();
    let _ = session.text(text).await;
}

async fn send_json<T: serde::Serialize>(
    session: &mut Session,
    value: &T,
) -> Result<(), actix_ws::Closed> {
    session
        .text(serde_json::to_string(value).unwrap_or_default())
        .await
}

/// Joins the mixer (or re-joins at a new rate or mode) and returns the agent's audio.
fn ensure_audio<'a>(
    ctx: &SessionContext,
    participant: u64,
    audio: &'a mut Option<Audio>,
    rate: Option<SampleRate>,
    receive: Option<bool>,
) -> Result<&'a mut Audio, String> {
    let Some(room) = ctx.media_room else {
        return Err("this call has no audio".into());
    };
    let want_rate = rate
        .or(audio.as_ref().map(|a| a.rate))
        .unwrap_or(ctx.native);
    let want_receive = receive
        .or(audio.as_ref().map(|a| a.receive))
        .unwrap_or(false);
    let unchanged = audio
        .as_ref()
        .is_some_and(|a| a.rate == want_rate && a.receive == want_receive);
    if !unchanged {
        if let Some(old) = audio.take() {
            ctx.media.leave(room, old.leg);
        }
        let mode = if want_receive {
            MixMode::Full
        } else {
            MixMode::SendOnly
        };
        let leg = ctx
            .media
            .join(room, ctx.native, participant, want_rate, mode)
            .map_err(|e| e.to_string())?;
        let next = next_pump(leg.grid, Instant::now(), true);
        *audio = Some(Audio {
            next_pump: next,
            leg,
            rate: want_rate,
            receive: want_receive,
            marks: VecDeque::new(),
            out_buf: vec![0; want_rate.frame_samples()],
            out_bytes: vec![0; want_rate.frame_bytes()],
        });
    }
    audio
        .as_mut()
        .ok_or_else(|| "audio unavailable".to_string())
}

/// When to read the output ring next. The shard pushes one frame per listener just after
/// each grid point, so the session reads 1 ms after the next one; when the frame it expected
/// was not there yet (`got_frame` false), it looks again shortly, within the same tick.
/// Reading on the shard's grid instead of a free-running timer keeps every frame's wait
/// the same, which is what keeps the inter-arrival jitter at the agent low.
fn next_pump(grid: Instant, now: Instant, got_frame: bool) -> Instant {
    let since_grid = now.saturating_duration_since(grid);
    let into_tick = Duration::from_nanos((since_grid.as_nanos() % TICK.as_nanos()) as u64);
    if !got_frame && into_tick < PUMP_RETRY_UNTIL {
        return now + PUMP_RETRY;
    }
    let tick_start = now - into_tick;
    let candidate = tick_start + PUMP_AFTER_TICK;
    if candidate > now {
        candidate
    } else {
        tick_start + TICK + PUMP_AFTER_TICK
    }
}

/// Moves every whole frame of return audio to the socket, and answers reached marks;
/// returns the frames sent.
async fn pump_audio(session: &mut Session, a: &mut Audio) -> Result<usize, actix_ws::Closed> {
    // The rest of a long utterance waits on this side of the input ring: top the ring up.
    a.input().pump();
    let played = a.leg.ends.input.stats().consumed_position();
    while let Some((_, at)) = a.marks.front() {
        if *at > played {
            break;
        }
        if let Some((name, _)) = a.marks.pop_front() {
            let samples_played = a.leg.ends.input.stats().snapshot().samples_played;
            send_json(
                session,
                &MarkReply {
                    kind: "mark",
                    name,
                    status: "played",
                    samples_played,
                },
            )
            .await?;
        }
    }
    send_return_audio(session, a).await
}

/// Sends every whole frame waiting in the output ring; returns the frames sent.
async fn send_return_audio(
    session: &mut Session,
    a: &mut Audio,
) -> Result<usize, actix_ws::Closed> {
    let Audio {
        leg,
        rate,
        out_buf,
        out_bytes,
        ..
    } = a;
    let Some(out) = leg.ends.output.as_mut() else {
        return Ok(0);
    };
    out.trim_to(rate.ms_to_samples(MAX_OUTPUT_BACKLOG_MS));
    let mut sent = 0;
    while out.queued_samples() >= rate.frame_samples() {
        if out.pull_frame(out_buf) != Pull::Frame {
            break;
        }
        chamade_media::write_le_bytes(out_buf, out_bytes);
        session
            .binary(web::Bytes::copy_from_slice(out_bytes))
            .await?;
        sent += 1;
    }
    Ok(sent)
}

/// The agent's audio counters as a `call_stats` event (all zero before it has audio).
fn call_stats(
    audio: Option<&Audio>,
    room: Option<&chamade_actors::shard::RoomStats>,
    phone: Option<&crate::rtp_leg::LegCounters>,
    tcp_nodelay: Option<bool>,
) -> CallStats {
    let snap = audio.map(|a| {
        (
            a.leg.ends.stats.snapshot(),
            a.rate,
            a.leg.ends.input.queued_ms(),
        )
    });
    let (p, rate, queued_ms) = match snap {
        Some(s) => s,
        None => (Default::default(), SampleRate::HZ_48000, 0),
    };
    let out = p.output_ring.unwrap_or_default();
    let room_snap = room.map(|r| r.snapshot());
    CallStats {
        kind: "call_stats",
        mode: if room_snap.is_none_or(|r| r.forwarding) {
            "forwarding"
        } else {
            "mixing"
        },
        queued_ms,
        underruns: p.input_ring.underruns,
        overruns: p.input_ring.overruns,
        samples_dropped: p.input_ring.samples_dropped,
        frames_played: p.frames_in,
        frames_received: p.frames_out,
        return_overruns: p.output_overruns,
        return_trimmed_ms: rate
            .samples_to_ms(usize::try_from(out.samples_trimmed).unwrap_or(usize::MAX)),
        room: room_snap.map_or_else(RoomCounters::default, |s| RoomCounters {
            ticks: s.ticks,
            silent_ticks: s.silent_ticks,
            talker_frames: s.talker_frames,
            max_talkers: s.max_talkers,
            forwarded_frames: s.forwarded_frames,
            caught_up_frames: s.caught_up_frames,
            mode_switches: s.mode_switches,
        }),
        phone: phone.map(|c| {
            let get =
                |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            PhoneCounters {
                rtp_in: get(&c.rtp_in),
                rtp_out: get(&c.rtp_out),
                rtcp_in: get(&c.rtcp_in),
                rtcp_out: get(&c.rtcp_out),
                dtmf_in: get(&c.dtmf_in),
                dtmf_out: get(&c.dtmf_out),
            }
        }),
        tcp_nodelay,
    }
}

async fn handle_text(
    session: &mut Session,
    ctx: &SessionContext,
    participant: u64,
    audio: &mut Option<Audio>,
    stats_every: &mut Option<tokio::time::Interval>,
    text: &str,
) -> Result<(), actix_ws::Closed> {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            send_error(session, "invalid_json", format!("not JSON: {e}")).await;
            return Ok(());
        }
    };
    let kind = value
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("")
        .to_string();
    let msg: ClientMessage = match serde_json::from_value(value) {
        Ok(m) => m,
        Err(e) => {
            let known = [
                "say",
                "send_chat",
                "audio",
                "audio_config",
                "stop_speaking",
                "mark",
                "call_stats",
            ];
            let code = if known.contains(&kind.as_str()) {
                "invalid_message"
            } else {
                "unknown_type"
            };
            send_error(session, code, format!("{e}")).await;
            return Ok(());
        }
    };
    match msg {
        ClientMessage::Say { .. } => {
            send_error(
                session,
                "tts_not_configured",
                "Hosted TTS not configured: send PCM as binary frames instead",
            )
            .await;
        }
        ClientMessage::SendChat { text } => {
            let sent = ctx
                .room
                .send(Command::Chat {
                    sender: ctx.agent_name.clone(),
                    text,
                })
                .await;
            if let Ok(Err(e)) = sent {
                send_error(session, "invalid_message", e.to_string()).await;
            }
        }
        ClientMessage::AudioConfig {
            sample_rate,
            receive,
        } => {
            let rate = match sample_rate.map(SampleRate::new).transpose() {
                Ok(r) => r,
                Err(e) => {
                    send_error(session, "unsupported_sample_rate", e.to_string()).await;
                    return Ok(());
                }
            };
            let queried = sample_rate.is_none() && receive.is_none();
            let current = if queried && audio.is_none() {
                None
            } else {
                match ensure_audio(ctx, participant, audio, rate, receive) {
                    Ok(a) => Some((a.rate, a.receive, a.leg.ends.input.queued_ms())),
                    Err(e) => {
                        send_error(session, "audio_unavailable", e).await;
                        return Ok(());
                    }
                }
            };
            let (rate, receive, queued_ms) = current.unwrap_or((ctx.native, false, 0));
            let stats = call_stats(
                audio.as_ref(),
                ctx.room_stats.as_deref(),
                ctx.sip.leg_counters(&ctx.user_id, &ctx.call_id).as_deref(),
                ctx.tcp_nodelay,
            );
            send_json(
                session,
                &AudioConfigReply {
                    kind: "audio_config",
                    sample_rate: rate.hz(),
                    native_sample_rate: ctx.native.hz(),
                    resampling: rate != ctx.native,
                    format: "pcm_s16le",
                    channels: 1,
                    frame_duration_ms: 20,
                    frame_bytes: rate.frame_bytes(),
                    ready: ctx.media_room.is_some(),
                    receive,
                    queued_ms,
                    underruns: stats.underruns,
                    overruns: stats.overruns,
                },
            )
            .await?;
        }
        ClientMessage::Audio {
            audio: b64,
            sample_rate,
        } => {
            let bytes = match base64::engine::general_purpose::STANDARD.decode(b64.as_bytes()) {
                Ok(b) => b,
                Err(e) => {
                    send_error(
                        session,
                        "invalid_audio",
                        format!("audio is not base64: {e}"),
                    )
                    .await;
                    return Ok(());
                }
            };
            let rate = match sample_rate.map(SampleRate::new).transpose() {
                Ok(r) => r,
                Err(e) => {
                    send_error(session, "unsupported_sample_rate", e.to_string()).await;
                    return Ok(());
                }
            };
            match ensure_audio(ctx, participant, audio, rate, None) {
                Ok(a) => {
                    let out = a.input().push_bytes(&bytes);
                    if out.dropped > 0 {
                        send_error(
                            session,
                            "audio_overrun",
                            format!("playout queue full: {} samples dropped", out.dropped),
                        )
                        .await;
                    }
                }
                Err(e) => send_error(session, "audio_unavailable", e).await,
            }
        }
        ClientMessage::Dtmf { digits } => {
            if let Err(e) = ctx.sip.send_dtmf(&ctx.user_id, &ctx.call_id, &digits) {
                let code = match e {
                    crate::sip::DtmfError::NoPhoneLeg => "no_phone_leg",
                    crate::sip::DtmfError::Digits(_) => "invalid_message",
                };
                send_error(session, code, e.to_string()).await;
            }
        }
        ClientMessage::StopSpeaking => {
            if let Some(a) = audio.as_mut() {
                a.input().discard_overflow();
                a.leg.flush();
                let samples_played = a.leg.ends.input.stats().snapshot().samples_played;
                while let Some((name, _)) = a.marks.pop_front() {
                    send_json(
                        session,
                        &MarkReply {
                            kind: "mark",
                            name,
                            status: "cleared",
                            samples_played,
                        },
                    )
                    .await?;
                }
            }
        }
        ClientMessage::CallStats { interval_ms } => {
            match interval_ms {
                Some(0) => *stats_every = None,
                Some(ms) if (100..=60_000).contains(&ms) => {
                    let mut t = tokio::time::interval_at(
                        tokio::time::Instant::now() + Duration::from_millis(ms),
                        Duration::from_millis(ms),
                    );
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    *stats_every = Some(t);
                }
                Some(ms) => {
                    send_error(
                        session,
                        "invalid_message",
                        format!("interval_ms must be 0 or 100..=60000, not {ms}"),
                    )
                    .await;
                    return Ok(());
                }
                None => {}
            }
            send_json(
                session,
                &call_stats(
                    audio.as_ref(),
                    ctx.room_stats.as_deref(),
                    ctx.sip.leg_counters(&ctx.user_id, &ctx.call_id).as_deref(),
                    ctx.tcp_nodelay,
                ),
            )
            .await?;
        }
        ClientMessage::Mark { name } => match ensure_audio(ctx, participant, audio, None, None) {
            Ok(a) => {
                let at = a.leg.ends.input.stats().snapshot().samples_written;
                a.marks.push_back((name, at));
            }
            Err(e) => send_error(session, "audio_unavailable", e).await,
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pumps_follow_the_mixer_grid_and_retry_within_a_tick() {
        let grid = Instant::now();
        let ms = |n: u64| Duration::from_micros(n);
        // Just after a tick fell due, with its frame read: wait for the next tick + 1 ms.
        assert_eq!(next_pump(grid, grid + ms(21_200), true), grid + ms(41_000));
        // Before this tick's read time: read at tick + 1 ms.
        assert_eq!(next_pump(grid, grid + ms(20_400), true), grid + ms(21_000));
        // The tick's frame was not there yet: look again 2 ms later...
        assert_eq!(next_pump(grid, grid + ms(21_200), false), grid + ms(23_200));
        // ...but not past 16 ms into the tick.
        assert_eq!(next_pump(grid, grid + ms(37_000), false), grid + ms(41_000));
    }
}
