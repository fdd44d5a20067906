//! The SIP user agent: registers to every user's own trunk (BYOT), takes the INVITEs the
//! trunk routes to a user's numbers, places outbound calls through it, and bridges each
//! call's RTP into the call's mixer room.
//!
//! Transactions, retransmission timers and dialogs come from the ezk SIP stack; what is
//! ours is the policy: which number belongs to whom, registration with back-off, the
//! ringing → accept / refuse / missed life of an inbound call, and the media leg.
//!
//! Everything SIP runs on one arbiter thread of its own, so that signalling never competes
//! with HTTP workers; the HTTP handlers talk to it through [`SipService`].

mod call;
mod register;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use actix::Addr;
use actix::Arbiter;
use chamade_actors::bridge::sip::dtmf;
use chamade_actors::registry::CallRegistry;
use ezk_sip_core::{Endpoint, IncomingRequest, Layer, MayTake};
use ezk_sip_types::{Method, StatusCode};
use ezk_sip_ua::dialog::DialogLayer;
use ezk_sip_ua::invite::InviteLayer;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use utoipa::ToSchema;

use crate::db::models::SipTrunk;
use crate::db::repo;
use crate::media_plane::MediaPlane;
use crate::state::AppState;

pub use call::Outbound;
pub use register::RegistrationState;

/// What the HTTP side holds: a handle on the SIP arbiter and the shared tables.
pub struct SipService {
    arbiter: Option<Arbiter>,
    shared: Arc<Shared>,
}

/// State shared by the SIP tasks and the HTTP handlers. Locks are held for a map access,
/// never across an `.await`.
pub(crate) struct Shared {
    app: AppState,
    registry: Addr<CallRegistry>,
    media: Arc<MediaPlane>,
    endpoint: OnceLock<Endpoint>,
    bound: OnceLock<SocketAddr>,
    /// The SIP arbiter, where every call task runs (ezk delivers requests on plain tokio
    /// tasks, outside any actix context).
    arbiter: OnceLock<actix::dev::ArbiterHandle>,
    /// Registration loops by owner: a stop signal and the loop's last known state.
    trunks: Mutex<HashMap<String, TrunkEntry>>,
    /// Live phone legs by call id.
    calls: Mutex<HashMap<String, PhoneLeg>>,
}

struct TrunkEntry {
    trunk_id: String,
    stop: oneshot::Sender<()>,
    state: Arc<Mutex<RegistrationState>>,
}

/// A live phone leg as the HTTP side sees it.
struct PhoneLeg {
    owner: String,
    dtmf: Option<mpsc::UnboundedSender<String>>,
    counters: Arc<crate::rtp_leg::LegCounters>,
}

/// How a trunk's registration stands, as shown by `GET /api/sip/trunk`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RegistrationInfo {
    /// `registering`, `registered`, `failed` or `disabled` (SIP is off on this server).
    pub state: String,
    /// Why the last attempt failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Seconds the registrar granted, when registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_secs: Option<u64>,
}

/// Why keys could not be sent into a call.
#[derive(Debug, thiserror::Error)]
pub enum DtmfError {
    /// The call has no phone leg to play keys into.
    #[error("This call has no phone leg that takes DTMF")]
    NoPhoneLeg,
    /// A character is not a DTMF key.
    #[error("{0}")]
    Digits(String),
}

impl SipService {
    /// Starts the user agent on its own arbiter (when enabled): binds `sip_listen`, then
    /// registers every stored trunk. A bind failure is logged and leaves SIP off.
    pub fn start(app: AppState, registry: Addr<CallRegistry>, media: Arc<MediaPlane>) -> Self {
        let enabled = app.config.sip_enabled;
        let shared = Arc::new(Shared {
            app,
            registry,
            media,
            endpoint: OnceLock::new(),
            bound: OnceLock::new(),
            arbiter: OnceLock::new(),
            trunks: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
        });
        if !enabled {
            return SipService {
                arbiter: None,
                shared,
            };
        }
        let arbiter = Arbiter::new();
        let _ = shared.arbiter.set(arbiter.handle());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let for_task = Arc::clone(&shared);
        arbiter.spawn(async move {
            let bound = for_task.bind().await;
            let _ = ready_tx.send(bound.is_some());
            if bound.is_some() {
                for_task.register_all().await;
            }
        });
        // Wait for the bind so that the address is known (and logged) before the server
        // says it is ready; a bind is quick.
        let _ = ready_rx.recv_timeout(std::time::Duration::from_secs(5));
        SipService {
            arbiter: Some(arbiter),
            shared,
        }
    }

    /// The address SIP listens on, when it runs.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared.bound.get().copied()
    }

    /// Re-reads `user_id`'s trunk and restarts its registration (after a change), or stops
    /// it (after a removal).
    pub fn trunk_changed(&self, user_id: &str) {
        let Some(arbiter) = &self.arbiter else { return };
        let shared = Arc::clone(&self.shared);
        let user = user_id.to_string();
        arbiter.spawn(async move {
            shared.stop_registration(&user);
            let lookup = {
                let user = user.clone();
                shared.app.db(move |c| repo::sip_trunk_of(c, &user)).await
            };
            match lookup {
                Ok(Some(trunk)) => shared.start_registration(trunk),
                Ok(None) => {}
                Err(e) => tracing::error!(user = %user, error = %e, "cannot read the trunk"),
            }
        });
    }

    /// How `user_id`'s trunk registration stands.
    pub fn registration(&self, user_id: &str, trunk_id: &str) -> RegistrationInfo {
        if self.arbiter.is_none() || self.shared.endpoint.get().is_none() {
            return RegistrationInfo {
                state: "disabled".into(),
                detail: Some("SIP is not running on this server".into()),
                expires_secs: None,
            };
        }
        let state = self
            .shared
            .trunks
            .lock()
            .ok()
            .and_then(|t| {
                t.get(user_id)
                    .filter(|e| e.trunk_id == trunk_id)
                    .and_then(|e| e.state.lock().ok().map(|s| s.clone()))
            })
            .unwrap_or(RegistrationState::Registering);
        state.info()
    }

    /// Places an outbound call through `trunk` to `target` (a number or SIP URI) for the
    /// call `call_id`, whose room is already `connecting`.
    pub fn dial(&self, call: call::Outbound) -> Result<(), String> {
        let Some(arbiter) = &self.arbiter else {
            return Err("SIP is not running on this server".into());
        };
        if self.shared.endpoint.get().is_none() {
            return Err("SIP is not running on this server".into());
        }
        let shared = Arc::clone(&self.shared);
        arbiter.spawn(async move { call::run_outbound(shared, call).await });
        Ok(())
    }

    /// The packet counters of the call's phone leg, for `call_stats`.
    pub fn leg_counters(
        &self,
        user_id: &str,
        call_id: &str,
    ) -> Option<Arc<crate::rtp_leg::LegCounters>> {
        let calls = self.shared.calls.lock().ok()?;
        calls
            .get(call_id)
            .filter(|l| l.owner == user_id)
            .map(|l| Arc::clone(&l.counters))
    }

    /// Queues keys to play into the call's phone leg.
    pub fn send_dtmf(&self, user_id: &str, call_id: &str, digits: &str) -> Result<(), DtmfError> {
        check_digits(digits)?;
        let calls = self
            .shared
            .calls
            .lock()
            .map_err(|_| DtmfError::NoPhoneLeg)?;
        let leg = calls
            .get(call_id)
            .filter(|l| l.owner == user_id)
            .ok_or(DtmfError::NoPhoneLeg)?;
        let tx = leg.dtmf.as_ref().ok_or(DtmfError::NoPhoneLeg)?;
        tx.send(digits.to_string())
            .map_err(|_| DtmfError::NoPhoneLeg)
    }
}

/// Checks a string of keys the way the phone leg will play them.
pub fn check_digits(digits: &str) -> Result<(), DtmfError> {
    if digits.is_empty() || digits.chars().count() > dtmf::MAX_QUEUED_DIGITS {
        return Err(DtmfError::Digits(format!(
            "digits must hold 1 to {} keys",
            dtmf::MAX_QUEUED_DIGITS
        )));
    }
    if let Some(bad) = digits.chars().find(|c| dtmf::digit_event(*c).is_none()) {
        return Err(DtmfError::Digits(format!(
            "{bad:?} is not a DTMF key (0-9, *, #, A-D)"
        )));
    }
    Ok(())
}

impl Drop for SipService {
    fn drop(&mut self) {
        if let Some(arbiter) = self.arbiter.take() {
            arbiter.stop();
        }
    }
}

impl Shared {
    async fn bind(self: &Arc<Self>) -> Option<SocketAddr> {
        let listen = self.app.config.effective_sip_listen();
        let mut builder = Endpoint::builder();
        builder.user_agent(format!("chamade/{}", crate::VERSION));
        builder.add_layer(DialogLayer::default());
        builder.add_layer(InviteLayer::default());
        builder.add_layer(GatewayLayer {
            shared: Arc::downgrade(self),
        });
        let bound = match builder.bind_udp(listen).await {
            Ok(tp) => tp.bound(),
            Err(e) => {
                tracing::error!(%listen, error = %e, "SIP is off: cannot bind its UDP port");
                return None;
            }
        };
        let _ = self.endpoint.set(builder.build());
        let _ = self.bound.set(bound);
        tracing::info!(%bound, "SIP listening (UDP)");
        Some(bound)
    }

    fn endpoint(&self) -> Option<&Endpoint> {
        self.endpoint.get()
    }

    async fn register_all(self: &Arc<Self>) {
        match self.app.db(repo::all_sip_trunks).await {
            Ok(trunks) => {
                for trunk in trunks {
                    self.start_registration(trunk);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the SIP trunks"),
        }
    }

    fn stop_registration(&self, user_id: &str) {
        let entry = self.trunks.lock().ok().and_then(|mut t| t.remove(user_id));
        if let Some(e) = entry {
            let _ = e.stop.send(());
        }
    }

    fn start_registration(self: &Arc<Self>, trunk: SipTrunk) {
        let Some(endpoint) = self.endpoint().cloned() else {
            return;
        };
        let password = match self
            .app
            .secrets
            .open(&trunk.user_id, &trunk.password_sealed)
        {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(trunk = %trunk.id, error = %e, "cannot open the trunk password");
                return;
            }
        };
        let (stop, stopped) = oneshot::channel();
        let state = Arc::new(Mutex::new(RegistrationState::Registering));
        if let Ok(mut t) = self.trunks.lock() {
            t.insert(
                trunk.user_id.clone(),
                TrunkEntry {
                    trunk_id: trunk.id.clone(),
                    stop,
                    state: Arc::clone(&state),
                },
            );
        }
        let config = register::Trunk::from_row(&trunk, password);
        let expiry = std::time::Duration::from_secs(self.app.config.sip_register_expiry_secs);
        let public = self.app.config.sip_public_ip;
        let Some(bound) = self.bound.get().copied() else {
            return;
        };
        actix_web::rt::spawn(register::run(
            endpoint, bound, config, public, expiry, state, stopped,
        ));
    }

    fn add_leg(
        &self,
        call_id: &str,
        owner: &str,
        dtmf: Option<mpsc::UnboundedSender<String>>,
        counters: Arc<crate::rtp_leg::LegCounters>,
    ) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.insert(
                call_id.to_string(),
                PhoneLeg {
                    owner: owner.to_string(),
                    dtmf,
                    counters,
                },
            );
        }
    }

    fn remove_leg(&self, call_id: &str) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.remove(call_id);
        }
    }
}

impl Shared {
    /// Tells the user's push channels that a call is ringing.
    /// (`sip_call_id` lets a system that placed the call through the trunk pair it with
    /// the gateway's call.)
    fn hub_call_invite(&self, user_id: &str, call_id: &str, offer: &call::Offer) {
        self.app.hub.publish(
            user_id,
            serde_json::json!({
                "type": "call_invite",
                "call_id": call_id,
                "platform": "sip",
                "caller": offer.caller,
                "number": offer.number,
                "sip_call_id": offer.sip_call_id,
                "state": "ringing",
            }),
        );
    }
}

/// The user part to dial from a `meeting_url`: `sip:NUMBER@host`, `sips:…`, `tel:NUMBER`
/// or a bare number. The call always goes through the user's trunk, whatever host is named.
pub fn dial_target(meeting_url: &str) -> Result<String, String> {
    let raw = meeting_url.trim();
    let rest = raw
        .strip_prefix("sip:")
        .or_else(|| raw.strip_prefix("sips:"))
        .or_else(|| raw.strip_prefix("tel:"))
        .unwrap_or(raw);
    let user = rest.split(['@', ';', '?']).next().unwrap_or_default();
    let allowed = |c: char| c.is_ascii_alphanumeric() || "+-_.*#".contains(c);
    if user.is_empty() || user.len() > 64 || !user.chars().all(allowed) {
        return Err(format!(
            "meeting_url must name who to call, such as sip:+33612345678@sip.example.com or \
             tel:+33612345678, got {meeting_url:?}"
        ));
    }
    Ok(user.to_string())
}

/// The address the trunk can reach us at: the configured public IP, the bound IP, or the
/// local address of the route towards `toward`.
pub(crate) fn local_ip_toward(public: Option<IpAddr>, bound: IpAddr, toward: IpAddr) -> IpAddr {
    if let Some(ip) = public {
        return ip;
    }
    if !bound.is_unspecified() {
        return bound;
    }
    let probe = std::net::UdpSocket::bind(if toward.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .and_then(|s| {
        s.connect(SocketAddr::new(toward, 9))?;
        s.local_addr()
    });
    probe.map_or(bound, |a| a.ip())
}

/// Takes the requests no dialog claimed: OPTIONS pings and new INVITEs.
struct GatewayLayer {
    shared: Weak<Shared>,
}

#[async_trait::async_trait]
impl Layer for GatewayLayer {
    fn name(&self) -> &'static str {
        "chamade-gateway"
    }

    async fn receive(&self, endpoint: &Endpoint, request: MayTake<'_, IncomingRequest>) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        if request.line.method == Method::OPTIONS {
            let mut options = request.take();
            let response = endpoint.create_response(&options, StatusCode::OK, None);
            let _ = endpoint
                .create_server_tsx(&mut options)
                .respond(response)
                .await;
            return;
        }
        if request.line.method != Method::INVITE {
            return;
        }
        if request.base_headers.cseq.method != Method::INVITE {
            // RFC 3261 §8.1.1.5: the CSeq names the request's own method.
            let mut bad = request.take();
            let response = endpoint.create_response(
                &bad,
                StatusCode::BAD_REQUEST,
                Some("CSeq method does not match the request".into()),
            );
            let _ = endpoint
                .create_server_inv_tsx(&mut bad)
                .respond_failure(response)
                .await;
            return;
        }
        let invite = request.take();
        if let Some(arbiter) = shared.arbiter.get().cloned() {
            arbiter.spawn(call::run_inbound(shared, endpoint.clone(), invite));
        }
    }
}
