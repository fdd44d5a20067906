//! One phone call's task, from the first INVITE to the last BYE: the inbound life
//! (ringing, then accepted, refused, missed or cancelled), the outbound life (INVITE with
//! digest authentication, provisional answers, the final one), and the established session
//! with its RTP leg. The room is the single source of truth for the call's state: the task
//! follows the room's `call_state` events (an agent accepting or hanging up through the
//! API) and drives the room when the phone side moves.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytesstr::BytesStr;
use chamade_actors::bridge::rtp::{RtpReceiver, RtpSender};
use chamade_actors::bridge::sip::sdp::{self, LocalMedia, Negotiated};
use chamade_actors::room::{
    CallState, Command, Delivered, Direction, Join, ParticipantKind, Room, RoomEvent, Subscribe,
};
use chamade_media::SampleRate;
use chamade_media::mixer::MixMode;
use ezk_sdp_types::SessionDescription;
use ezk_sip_auth::{ClientAuthenticator, RequestParts, ResponseParts};
use ezk_sip_core::{Endpoint, IncomingRequest};
use ezk_sip_types::StatusCode;
use ezk_sip_types::header::typed::{Contact, ContentType};
use ezk_sip_types::uri::{NameAddr, SipUri, SipUriUserPart};
use ezk_sip_ua::dialog::Dialog;
use ezk_sip_ua::invite::acceptor::InviteAcceptor;
use ezk_sip_ua::invite::initiator::{EarlyResponse, InviteInitiator, Response};
use ezk_sip_ua::invite::session::{InviteSession, InviteSessionEvent};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::Shared;
use super::register::{Trunk, host_port, status_text};
use crate::api::calls::{NewCall, open_call, record_state};
use crate::db::models::SipTrunk;
use crate::db::repo;
use crate::rtp_leg::{DtmfOut, LegEnd, RtpLeg, bind_pair, random_u32};

/// Authentication rounds for one INVITE before the call fails.
const MAX_AUTH_ROUNDS: usize = 3;

/// An outbound call to place.
pub struct Outbound {
    /// The call.
    pub call_id: String,
    /// Its owner.
    pub user_id: String,
    /// The owner's trunk.
    pub trunk: SipTrunk,
    /// Who to call: the user part (a number) of the request URI.
    pub target: String,
    /// The call's room, `connecting`.
    pub room: Addr<Room>,
    /// Its mixer room.
    pub media_room: u64,
    /// The mixer room's rate.
    pub rate: SampleRate,
}

fn sdp_type() -> ContentType {
    ContentType(BytesStr::from_static("application/sdp"))
}

/// Forwards a room's events into the call task.
struct Forwarder(mpsc::UnboundedSender<RoomEvent>);

impl Actor for Forwarder {
    type Context = Context<Self>;
}

impl Handler<Delivered> for Forwarder {
    type Result = ();
    fn handle(&mut self, msg: Delivered, _: &mut Context<Self>) {
        let _ = self.0.send(msg.0);
    }
}

/// The room's state changes, as a stream; `None` once the room is gone.
struct RoomWatch(mpsc::UnboundedReceiver<RoomEvent>);

impl RoomWatch {
    async fn subscribe(room: &Addr<Room>) -> Option<(RoomWatch, CallState)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let forwarder = Forwarder(tx).start();
        let (_, state) = room.send(Subscribe(forwarder.recipient())).await.ok()?;
        Some((RoomWatch(rx), state))
    }

    async fn next_state(&mut self) -> Option<CallState> {
        loop {
            match self.0.recv().await? {
                RoomEvent::State { state } => return Some(state),
                _ => continue,
            }
        }
    }
}

/// A call's identity as the task drives it.
struct CallRef {
    shared: Arc<Shared>,
    call_id: String,
    user_id: String,
    room: Addr<Room>,
    media_room: u64,
}

impl CallRef {
    /// Sends `cmd` to the room and records where it went; closes the mixer room once the
    /// call is over.
    async fn apply(&self, cmd: Command) -> Option<CallState> {
        let now = self.room.send(cmd).await.ok()?.ok()?;
        if let Err(e) = record_state(&self.shared.app, &self.user_id, &self.call_id, now).await {
            tracing::error!(call_id = %self.call_id, error = %e, "cannot store the call state");
        }
        if now.is_terminal() {
            self.shared.media.close_room(self.media_room);
        }
        Some(now)
    }

    async fn fail(&self, why: String) {
        tracing::info!(call_id = %self.call_id, reason = %why, "SIP call failed");
        self.apply(Command::LinkFailed(why)).await;
    }
}

/// The user part of a SIP URI.
fn user_of(uri: &SipUri) -> Option<String> {
    match &uri.user_part {
        SipUriUserPart::User(u) => Some(u.to_string()),
        SipUriUserPart::UserPw(p) => Some(p.user.to_string()),
        SipUriUserPart::Empty => None,
    }
}

/// A dialled number as stored: E.164 with its `+` (trunks often drop it).
fn as_e164(user: &str) -> String {
    let user = user.trim();
    if !user.starts_with('+') && user.bytes().all(|b| b.is_ascii_digit()) {
        format!("+{user}")
    } else {
        user.to_string()
    }
}

/// Answers an INVITE that does not become a call.
async fn reject(acceptor: InviteAcceptor, code: StatusCode) {
    match acceptor.create_response(code, None).await {
        Ok(response) => {
            let _ = acceptor.respond_failure(response).await;
        }
        Err(e) => tracing::debug!(error = %e, "cannot answer the INVITE"),
    }
}

/// What the INVITE said, read before the acceptor takes it.
pub(crate) struct Offer {
    pub number: String,
    pub caller: String,
    pub sip_call_id: String,
    source: SocketAddr,
    body: Option<SessionDescription>,
}

fn read_offer(invite: &IncomingRequest) -> Option<Offer> {
    let to = &invite.base_headers.to.uri.uri;
    let number = user_of(to).or_else(|| user_of(&invite.line.uri))?;
    let from = &invite.base_headers.from.uri;
    let caller = user_of(&from.uri)
        .map(|u| as_e164(&u))
        .or_else(|| from.name.as_ref().map(|n| n.to_string()))
        .unwrap_or_default();
    let is_sdp = invite
        .headers
        .get_named::<ContentType>()
        .is_ok_and(|c| c.0.eq_ignore_ascii_case("application/sdp"));
    let body = if is_sdp {
        sdp::parse(&invite.body).ok()
    } else {
        None
    };
    Some(Offer {
        number: as_e164(&number),
        caller,
        sip_call_id: invite.base_headers.call_id.0.to_string(),
        source: invite.tp_info.source,
        body,
    })
}

fn contact_at(ip: IpAddr, port: u16, user: Option<&str>) -> Option<Contact> {
    let hp = host_port(&ip.to_string(), port);
    let uri: SipUri = match user {
        Some(u) => format!("sip:{u}@{hp}"),
        None => format!("sip:{hp}"),
    }
    .parse()
    .ok()?;
    Some(Contact::new(NameAddr::uri(uri)))
}

/// An INVITE that no dialog claimed: a call to one of the users' numbers, or a refusal.
pub(crate) async fn run_inbound(shared: Arc<Shared>, endpoint: Endpoint, invite: IncomingRequest) {
    let Some(bound) = shared.bound.get().copied() else {
        return;
    };
    let offer = read_offer(&invite);
    let source = invite.tp_info.source;
    let local_ip = super::local_ip_toward(shared.app.config.sip_public_ip, bound.ip(), source.ip());
    let Some(contact) = contact_at(local_ip, bound.port(), None) else {
        return;
    };
    let dialog = match Dialog::new_server(endpoint.clone(), &invite, contact) {
        Ok(d) => d,
        Err(e) => {
            tracing::info!(%source, error = %e, "unusable INVITE ignored");
            return;
        }
    };
    let mut acceptor = InviteAcceptor::new(dialog, invite);
    let Some(offer) = offer else {
        reject(acceptor, StatusCode::NOT_FOUND).await;
        return;
    };
    let number = offer.number.clone();
    let lookup = shared
        .app
        .db(move |c| repo::sip_did_by_number(c, &number))
        .await;
    let (did, trunk_row) = match lookup {
        Ok(Some(found)) => found,
        Ok(None) => {
            tracing::info!(number = %offer.number, %source, "INVITE to an unknown number refused");
            reject(acceptor, StatusCode::NOT_FOUND).await;
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot look the number up");
            reject(acceptor, StatusCode::SERVER_INTERNAL_ERROR).await;
            return;
        }
    };
    // Only the number's own trunk may ring it.
    let trunk = Trunk::from_row(&trunk_row, String::new());
    let from_trunk = trunk
        .resolve()
        .await
        .is_ok_and(|addrs| addrs.iter().any(|a| a.ip() == offer.source.ip()));
    if !from_trunk {
        tracing::warn!(number = %offer.number, source = %offer.source, trunk = %trunk.host, "INVITE not from the number's trunk refused");
        reject(acceptor, StatusCode::FORBIDDEN).await;
        return;
    }
    let Some(remote_offer) = offer.body.clone() else {
        reject(acceptor, StatusCode::NOT_ACCEPTABLE_HERE).await;
        return;
    };
    let (rtp, rtcp) = match bind_pair(bound.ip(), shared.app.config.rtp_port_range()).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "no RTP port for an inbound call");
            reject(acceptor, StatusCode::SERVICE_UNAVAILABLE).await;
            return;
        }
    };
    let local = LocalMedia {
        address: local_ip,
        rtp_port: rtp.local_addr().map_or(0, |a| a.port()),
        session_id: u64::from(random_u32()),
    };
    let (answer, negotiated) = match sdp::answer(&remote_offer, &local) {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(error = %e, "inbound call with no usable media refused");
            reject(acceptor, StatusCode::NOT_ACCEPTABLE_HERE).await;
            return;
        }
    };
    let opened = open_call(
        &shared.app,
        &shared.registry,
        &shared.media,
        NewCall {
            user_id: did.user_id.clone(),
            platform: "sip".into(),
            meeting_url: format!("sip:{}@{}", offer.number, trunk.domain()),
            agent_name: "AI Agent".into(),
            direction: Direction::Inbound,
            caller: offer.caller.clone(),
            rate: None,
        },
    )
    .await;
    let opened = match opened {
        Ok(o) => o,
        Err(e) => {
            tracing::info!(number = %offer.number, error = %e, "inbound call refused");
            reject(acceptor, StatusCode::BUSY_HERE).await;
            return;
        }
    };
    let call = CallRef {
        shared: Arc::clone(&shared),
        call_id: opened.row.id.clone(),
        user_id: did.user_id.clone(),
        room: opened.room.clone(),
        media_room: opened.media_room,
    };
    // An agent may act on the call as soon as it is listed, even before this watch.
    let Some((mut watch, initial)) = RoomWatch::subscribe(&call.room).await else {
        reject(acceptor, StatusCode::SERVER_INTERNAL_ERROR).await;
        return;
    };
    tracing::info!(call_id = %call.call_id, number = %offer.number, caller = %offer.caller, auto_answer = did.auto_answer, "inbound SIP call ringing");
    shared.hub_call_invite(&call.user_id, &call.call_id, &offer);
    if let Ok(response) = acceptor.create_response(StatusCode::RINGING, None).await {
        let _ = acceptor.respond_provisional(response).await;
    }
    if initial == CallState::Refused {
        reject(acceptor, StatusCode::DECLINE).await;
        return;
    } else if initial.is_terminal() {
        reject(acceptor, StatusCode::TEMPORARILY_UNAVAILABLE).await;
        return;
    } else if did.auto_answer {
        call.apply(Command::Accept).await;
    } else if initial != CallState::Active {
        let ring = tokio::time::sleep(Duration::from_secs(shared.app.config.sip_ring_timeout_secs));
        tokio::pin!(ring);
        loop {
            tokio::select! {
                state = watch.next_state() => match state {
                    Some(CallState::Active) => break,
                    Some(CallState::Refused) => {
                        reject(acceptor, StatusCode::DECLINE).await;
                        return;
                    }
                    Some(s) if !s.is_terminal() => continue,
                    _ => {
                        reject(acceptor, StatusCode::TEMPORARILY_UNAVAILABLE).await;
                        return;
                    }
                },
                _ = acceptor.cancelled() => {
                    tracing::info!(call_id = %call.call_id, "caller cancelled before an answer");
                    call.apply(Command::Missed).await;
                    return;
                }
                _ = &mut ring => {
                    tracing::info!(call_id = %call.call_id, "inbound call not answered in time");
                    call.apply(Command::Missed).await;
                    reject(acceptor, StatusCode::TEMPORARILY_UNAVAILABLE).await;
                    return;
                }
            }
        }
    }
    let mut response = match acceptor.create_response(StatusCode::OK, None).await {
        Ok(r) => r,
        Err(e) => {
            call.fail(format!("cannot answer: {e}")).await;
            return;
        }
    };
    response.msg.headers.insert_named(&sdp_type());
    response.msg.body = answer.to_string().into();
    let session = match acceptor.respond_success(response).await {
        Ok((session, _ack)) => session,
        Err(e) => {
            call.fail(format!("the caller did not confirm the answer: {e}"))
                .await;
            return;
        }
    };
    let name = if offer.caller.is_empty() {
        "Caller".to_string()
    } else {
        offer.caller.clone()
    };
    established(
        call,
        session,
        watch,
        answer,
        negotiated,
        rtp,
        rtcp,
        opened.rate,
        name,
    )
    .await;
}

/// Places an outbound call and, once answered, runs it.
pub(crate) async fn run_outbound(shared: Arc<Shared>, out: Outbound) {
    let call = CallRef {
        shared: Arc::clone(&shared),
        call_id: out.call_id.clone(),
        user_id: out.user_id.clone(),
        room: out.room.clone(),
        media_room: out.media_room,
    };
    let (Some(endpoint), Some(bound)) = (shared.endpoint().cloned(), shared.bound.get().copied())
    else {
        call.fail("SIP is not running on this server".into()).await;
        return;
    };
    let Some((mut watch, initial)) = RoomWatch::subscribe(&call.room).await else {
        return;
    };
    if initial.is_terminal() {
        // Hung up before the INVITE left.
        return;
    }
    let password = match shared
        .app
        .secrets
        .open(&out.trunk.user_id, &out.trunk.password_sealed)
    {
        Ok(p) => p,
        Err(e) => {
            call.fail(format!("cannot open the trunk password: {e}"))
                .await;
            return;
        }
    };
    let trunk = Trunk::from_row(&out.trunk, password);
    let addrs = match trunk.resolve().await {
        Ok(a) => a,
        Err(e) => {
            call.fail(e).await;
            return;
        }
    };
    let local_ip =
        super::local_ip_toward(shared.app.config.sip_public_ip, bound.ip(), addrs[0].ip());
    let (rtp, rtcp) = match bind_pair(bound.ip(), shared.app.config.rtp_port_range()).await {
        Ok(p) => p,
        Err(e) => {
            call.fail(format!("no RTP port: {e}")).await;
            return;
        }
    };
    let local = LocalMedia {
        address: local_ip,
        rtp_port: rtp.local_addr().map_or(0, |a| a.port()),
        session_id: u64::from(random_u32()),
    };
    let our_offer = sdp::offer(&local);
    let Some(contact) = contact_at(local_ip, bound.port(), Some(&trunk.username)) else {
        call.fail("cannot build the Contact address".into()).await;
        return;
    };
    let (from, target) = match (trunk.aor(), dial_uri(&trunk, &out.target)) {
        (Ok(aor), Ok(target)) => {
            let name = trunk.caller_id.clone();
            (
                NameAddr {
                    name: name.map(Into::into),
                    uri: aor,
                },
                target,
            )
        }
        (Err(e), _) | (_, Err(e)) => {
            call.fail(e).await;
            return;
        }
    };
    let mut initiator = InviteInitiator::new(endpoint.clone(), from, contact, target);
    let mut auth = trunk.authenticator();
    let mut rounds = 0;
    let (mut session, final_response) = 'invite: loop {
        let mut invite = initiator.create_invite();
        invite.headers.insert_named(&sdp_type());
        invite.body = our_offer.to_string().into();
        auth.authorize_request(&mut invite.headers);
        if let Err(e) = initiator.send_invite(invite).await {
            call.fail(format!("cannot send the INVITE: {e}")).await;
            return;
        }
        tracing::info!(call_id = %call.call_id, target = %out.target, "SIP INVITE sent");
        let mut early = None;
        loop {
            tokio::select! {
                got = initiator.receive() => match got {
                    Ok(Response::Provisional(_)) | Ok(Response::EarlyEvent) => {}
                    Ok(Response::Early(e, _, _)) => early = Some(e),
                    Ok(Response::Session(session, response)) => break 'invite (session, response),
                    Ok(Response::Failure(response)) => {
                        let code = response.line.code;
                        let challenge = code == StatusCode::UNAUTHORIZED
                            || code == StatusCode::PROXY_AUTHENTICATION_REQUIRED;
                        if challenge && rounds < MAX_AUTH_ROUNDS {
                            rounds += 1;
                            let accepted = initiator.transaction().map(|tsx| {
                                let request = &tsx.request().msg;
                                auth.handle_rejection(
                                    RequestParts { line: &request.line, headers: &request.headers, body: &request.body },
                                    ResponseParts { line: &response.line, headers: &response.headers, body: &response.body },
                                )
                            });
                            match accepted {
                                Some(Ok(())) => continue 'invite,
                                Some(Err(e)) => {
                                    call.fail(format!("the trunk refused our credentials: {e}")).await;
                                    return;
                                }
                                None => {
                                    call.fail("the INVITE transaction ended early".into()).await;
                                    return;
                                }
                            }
                        }
                        call.fail(format!("the call failed: SIP {}", status_text(&response.line))).await;
                        return;
                    }
                    Ok(Response::Finished) => {
                        call.fail("the call failed: no final answer".into()).await;
                        return;
                    }
                    Err(e) => {
                        call.fail(format!("the call failed: {e}")).await;
                        return;
                    }
                },
                got = early_receive(&mut early) => match got {
                    Ok(EarlyResponse::Success(session, response)) => break 'invite (session, response),
                    Ok(EarlyResponse::Provisional(..)) => {}
                    Ok(EarlyResponse::Terminated) | Err(_) => early = None,
                },
                state = watch.next_state() => match state {
                    Some(s) if !s.is_terminal() => {}
                    _ => {
                        tracing::info!(call_id = %call.call_id, "outbound call cancelled by the agent");
                        let _ = initiator.cancel().await;
                        return;
                    }
                },
            }
        }
    };
    // ACK the 2xx; the initiator keeps answering its retransmissions.
    let cseq = final_response.base_headers.cseq.cseq;
    match ezk_sip_ua::invite::create_ack(&session.dialog, cseq).await {
        Ok(mut ack) => {
            if let Err(e) = endpoint.send_outgoing_request(&mut ack).await {
                tracing::debug!(error = %e, "ACK not sent");
            }
            initiator.set_acknowledge(&session, ack);
        }
        Err(e) => tracing::debug!(error = %e, "ACK not built"),
    }
    actix_web::rt::spawn(async move {
        while let Ok(event) = initiator.receive().await {
            match event {
                Response::Failure(..) | Response::Finished => break,
                Response::Early(early, ..) => {
                    let _ = early.cancel().await;
                }
                Response::Session(mut other, ..) => {
                    let _ = other.terminate().await;
                }
                Response::Provisional(..) | Response::EarlyEvent => {}
            }
        }
    });
    let negotiated = sdp::parse(&final_response.body)
        .map_err(|e| e.to_string())
        .and_then(|answer| sdp::accept_answer(&answer).map_err(|e| e.to_string()));
    let negotiated = match negotiated {
        Ok(n) => n,
        Err(e) => {
            let _ = session.terminate().await;
            call.fail(format!("the callee's media answer is unusable: {e}"))
                .await;
            return;
        }
    };
    if call.apply(Command::Connected).await != Some(CallState::Active) {
        // The agent hung up while the callee answered.
        let _ = session.terminate().await;
        return;
    }
    tracing::info!(call_id = %call.call_id, "outbound SIP call answered");
    let name = out.target.clone();
    established(
        call, session, watch, our_offer, negotiated, rtp, rtcp, out.rate, name,
    )
    .await;
}

async fn early_receive(
    early: &mut Option<ezk_sip_ua::invite::initiator::Early>,
) -> Result<EarlyResponse, ezk_sip_core::Error> {
    match early {
        Some(e) => e.receive().await,
        None => std::future::pending().await,
    }
}

/// The request URI of an outbound call: the number at the trunk, so the trunk routes it.
fn dial_uri(trunk: &Trunk, target: &str) -> Result<SipUri, String> {
    format!("sip:{target}@{}", host_port(&trunk.host, trunk.port))
        .parse()
        .map_err(|_| format!("{target:?} cannot be dialled"))
}

/// An answered call: the phone joins the room and its RTP runs until either side hangs
/// up, the phone goes silent for the inactivity limit, or the dialog fails.
#[allow(clippy::too_many_arguments)]
async fn established(
    call: CallRef,
    mut session: InviteSession,
    mut watch: RoomWatch,
    local_sdp: SessionDescription,
    negotiated: Negotiated,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    room_rate: SampleRate,
    name: String,
) {
    let leg = match start_leg(&call, &negotiated, rtp, rtcp, room_rate, name).await {
        Ok(l) => l,
        Err(e) => {
            let _ = session.terminate().await;
            call.fail(format!("cannot carry the call's audio: {e}"))
                .await;
            return;
        }
    };
    let (stop, mut done) = leg;
    tracing::info!(call_id = %call.call_id, codec = ?negotiated.codec, remote = %negotiated.remote, dtmf = ?negotiated.dtmf_payload_type, "SIP call media up");
    loop {
        tokio::select! {
            event = session.run() => match event {
                Ok(InviteSessionEvent::Bye(bye)) => {
                    let _ = session.handle_bye(bye).await;
                    tracing::info!(call_id = %call.call_id, "the phone hung up");
                    call.apply(Command::HangUp).await;
                    break;
                }
                Ok(InviteSessionEvent::Terminated) => {
                    call.apply(Command::HangUp).await;
                    break;
                }
                Ok(InviteSessionEvent::RefreshNeeded) => {
                    if let Err(e) = session.refresh().await {
                        let _ = session.terminate().await;
                        call.fail(format!("session refresh failed: {e}")).await;
                        break;
                    }
                }
                Ok(InviteSessionEvent::ReInviteReceived(reinvite)) => {
                    // Same media, same answer: hold and codec changes are not followed.
                    match session.dialog.create_response(&reinvite.invite, StatusCode::OK, None) {
                        Ok(mut response) => {
                            response.msg.headers.insert_named(&sdp_type());
                            response.msg.body = local_sdp.to_string().into();
                            let _ = session.handle_reinvite_success(reinvite, response).await;
                        }
                        Err(e) => tracing::debug!(error = %e, "re-INVITE not answered"),
                    }
                }
                Ok(InviteSessionEvent::Notify(_)) => {}
                Err(e) => {
                    call.fail(format!("the SIP dialog failed: {e}")).await;
                    break;
                }
            },
            state = watch.next_state() => match state {
                Some(s) if !s.is_terminal() => {}
                _ => {
                    tracing::info!(call_id = %call.call_id, "hanging up the phone");
                    let _ = session.terminate().await;
                    break;
                }
            },
            end = &mut done => {
                match end {
                    Ok(LegEnd::Inactive) => {
                        let _ = session.terminate().await;
                        call.fail(format!(
                            "no audio from the phone for {} s",
                            call.shared.app.config.rtp_timeout_secs
                        )).await;
                    }
                    _ => {
                        let _ = session.terminate().await;
                        call.apply(Command::HangUp).await;
                    }
                }
                break;
            }
        }
    }
    let _ = stop.send(());
    call.shared.remove_leg(&call.call_id);
}

type LegHandles = (oneshot::Sender<()>, oneshot::Receiver<LegEnd>);

/// Seats the phone in the room and starts its RTP task.
async fn start_leg(
    call: &CallRef,
    negotiated: &Negotiated,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    room_rate: SampleRate,
    name: String,
) -> Result<LegHandles, String> {
    let participant = call
        .room
        .send(Join {
            name,
            kind: ParticipantKind::Phone,
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let codec = negotiated.codec;
    let rate = codec.pcm_rate();
    let leg = call
        .shared
        .media
        .join_paced(call.media_room, room_rate, participant, rate, MixMode::Full)
        .map_err(|e| e.to_string())?;
    let mut receiver = RtpReceiver::new(codec).map_err(|e| e.to_string())?;
    receiver.set_payload_type(negotiated.payload_type);
    receiver.set_dtmf_payload_type(negotiated.dtmf_payload_type);
    let ssrc = random_u32();
    let mut sender = RtpSender::new(codec, ssrc, random_u32() as u16, random_u32())
        .map_err(|e| e.to_string())?;
    sender.set_payload_type(negotiated.payload_type);
    let dtmf = negotiated.dtmf_payload_type.map(|payload_type| {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            tx,
            DtmfOut {
                payload_type,
                digits: rx,
            },
        )
    });
    let (dtmf_tx, dtmf_out) = match dtmf {
        Some((tx, out)) => (Some(tx), Some(out)),
        None => (None, None),
    };
    let counters = Arc::new(crate::rtp_leg::LegCounters::default());
    call.shared
        .add_leg(&call.call_id, &call.user_id, dtmf_tx, Arc::clone(&counters));
    let remote = negotiated.remote;
    let task = RtpLeg {
        socket: rtp,
        rtcp: Some(rtcp),
        remote,
        rtcp_remote: remote
            .port()
            .checked_add(1)
            .map(|p| SocketAddr::new(remote.ip(), p)),
        receiver,
        sender,
        leg,
        rate,
        room: call.room.clone(),
        dtmf: dtmf_out,
        inactivity: Some(Duration::from_secs(call.shared.app.config.rtp_timeout_secs)),
        counters,
        ssrc,
    };
    let (stop, stopped) = oneshot::channel();
    let (done_tx, done) = oneshot::channel();
    let media = Arc::clone(&call.shared.media);
    let room = call.room.clone();
    let media_room = call.media_room;
    actix_web::rt::spawn(async move {
        let end = task.run(&media, media_room, stopped).await;
        media.leave_leg(media_room, participant);
        room.do_send(Command::Leave(participant));
        let _ = done_tx.send(end);
    });
    Ok((stop, done))
}
