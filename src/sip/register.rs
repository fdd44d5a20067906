//! Keeping a trunk registration alive: REGISTER with digest authentication (401 or 407,
//! MD5, qop=auth), refreshed before the granted expiry, retried with exponential back-off
//! when the trunk is unreachable or refuses, and removed (expires=0) when the trunk is
//! disconnected.
//!
//! The loop is ours rather than ezk's `Registration`, whose refresh task cannot report a
//! trunk that stops answering.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ezk_sip_auth::{
    ClientAuthenticator, DigestAuthenticator, DigestCredentials, DigestUser, RequestParts,
    ResponseParts,
};
use ezk_sip_core::Endpoint;
use ezk_sip_core::transport::TargetTransportInfo;
use ezk_sip_types::header::typed::Contact;
use ezk_sip_types::uri::{NameAddr, SipUri};
use ezk_sip_types::{CodeKind, StatusCode};
use ezk_sip_ua::register::Registration;
use tokio::sync::oneshot;

use super::RegistrationInfo;
use crate::db::models::SipTrunk;

/// First wait after a failed attempt; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Authentication rounds per REGISTER before giving up (a wrong password).
const MAX_AUTH_ROUNDS: usize = 3;

/// What a registration loop needs of a trunk.
#[derive(Clone)]
pub(crate) struct Trunk {
    pub id: String,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    pub realm: Option<String>,
    pub caller_id: Option<String>,
}

impl Trunk {
    pub fn from_row(row: &SipTrunk, password: String) -> Trunk {
        Trunk {
            id: row.id.clone(),
            host: row.host.clone(),
            port: u16::try_from(row.port).unwrap_or(5060),
            username: row.username.clone(),
            password,
            realm: row.realm.clone().filter(|r| !r.is_empty()),
            caller_id: row.caller_id.clone().filter(|c| !c.is_empty()),
        }
    }

    /// The domain of the account's address of record: the realm when given (providers
    /// that expect one answer 404 to any other), else the registrar's host.
    pub fn domain(&self) -> &str {
        self.realm.as_deref().unwrap_or(&self.host)
    }

    /// `sip:user@domain`.
    pub fn aor(&self) -> Result<SipUri, String> {
        format!("sip:{}@{}", self.username, self.domain())
            .parse()
            .map_err(|_| format!("{}@{} is not a SIP address", self.username, self.domain()))
    }

    /// `sip:host:port`, where requests to the trunk go.
    pub fn registrar(&self) -> Result<SipUri, String> {
        format!("sip:{}", host_port(&self.host, self.port))
            .parse()
            .map_err(|_| format!("{}:{} is not a SIP host", self.host, self.port))
    }

    pub fn authenticator(&self) -> DigestAuthenticator {
        let mut credentials = DigestCredentials::new();
        let user = DigestUser::new(self.username.clone(), self.password.clone());
        if let Some(realm) = &self.realm {
            credentials.add_for_realm(realm.clone(), user.clone());
        }
        credentials.set_default(user);
        DigestAuthenticator::new(credentials)
    }

    /// The trunk's addresses, for the source check of inbound INVITEs and the route.
    pub async fn resolve(&self) -> Result<Vec<SocketAddr>, String> {
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map(|a| a.collect::<Vec<_>>())
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))
            .and_then(|a| {
                if a.is_empty() {
                    Err(format!("{} has no address", self.host))
                } else {
                    Ok(a)
                }
            })
    }
}

/// `host:port`, bracketing IPv6 literals.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Where a registration loop stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationState {
    /// First attempt under way.
    Registering,
    /// The registrar accepted the binding for this long.
    Registered(Duration),
    /// The last attempt failed; the loop retries after a back-off.
    Failed(String),
}

impl RegistrationState {
    pub(crate) fn info(&self) -> RegistrationInfo {
        match self {
            RegistrationState::Registering => RegistrationInfo {
                state: "registering".into(),
                detail: None,
                expires_secs: None,
            },
            RegistrationState::Registered(d) => RegistrationInfo {
                state: "registered".into(),
                detail: None,
                expires_secs: Some(d.as_secs()),
            },
            RegistrationState::Failed(why) => RegistrationInfo {
                state: "failed".into(),
                detail: Some(why.clone()),
                expires_secs: None,
            },
        }
    }
}

/// Registers `trunk` and keeps it registered until `stop` fires; then removes the binding.
pub(crate) async fn run(
    endpoint: Endpoint,
    bound: SocketAddr,
    trunk: Trunk,
    public: Option<std::net::IpAddr>,
    expiry: Duration,
    state: Arc<Mutex<RegistrationState>>,
    mut stop: oneshot::Receiver<()>,
) {
    let set = |s: RegistrationState| {
        if let Ok(mut g) = state.lock() {
            *g = s;
        }
    };
    let mut backoff = FIRST_BACKOFF;
    loop {
        let attempt = async {
            let addrs = trunk.resolve().await?;
            let ip = super::local_ip_toward(public, bound.ip(), addrs[0].ip());
            let contact: SipUri = format!(
                "sip:{}@{}",
                trunk.username,
                host_port(&ip.to_string(), bound.port())
            )
            .parse()
            .map_err(|_| "cannot build the Contact address".to_string())?;
            let mut reg = Registration::new(
                NameAddr::uri(trunk.aor()?),
                Contact::new(NameAddr::uri(contact)),
                trunk.registrar()?,
                expiry,
            );
            let mut auth = trunk.authenticator();
            let granted = register_once(&endpoint, &mut reg, &mut auth, false, expiry).await?;
            Ok::<_, String>((reg, auth, granted))
        };
        let outcome = tokio::select! {
            _ = &mut stop => return,
            outcome = attempt => outcome,
        };
        match outcome {
            Ok((mut reg, mut auth, granted)) => {
                tracing::info!(trunk = %trunk.id, host = %trunk.host, expires = granted.as_secs(), "SIP trunk registered");
                set(RegistrationState::Registered(granted));
                backoff = FIRST_BACKOFF;
                // Refresh before expiry until stopped or a refresh fails.
                loop {
                    tokio::select! {
                        _ = &mut stop => {
                            let _ = register_once(&endpoint, &mut reg, &mut auth, true, expiry).await;
                            tracing::info!(trunk = %trunk.id, "SIP trunk unregistered");
                            return;
                        }
                        _ = reg.wait_for_expiry() => {}
                    }
                    match register_once(&endpoint, &mut reg, &mut auth, false, expiry).await {
                        Ok(granted) => set(RegistrationState::Registered(granted)),
                        Err(e) => {
                            tracing::warn!(trunk = %trunk.id, error = %e, "SIP registration refresh failed");
                            set(RegistrationState::Failed(e));
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(trunk = %trunk.id, host = %trunk.host, error = %e, retry_in = ?backoff, "SIP registration failed");
                set(RegistrationState::Failed(e));
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One REGISTER transaction with its authentication rounds; answers the granted expiry.
async fn register_once(
    endpoint: &Endpoint,
    reg: &mut Registration,
    auth: &mut DigestAuthenticator,
    remove: bool,
    requested: Duration,
) -> Result<Duration, String> {
    let mut target = TargetTransportInfo::default();
    for _ in 0..=MAX_AUTH_ROUNDS {
        let mut request = reg.create_register(remove);
        auth.authorize_request(&mut request.headers);
        let mut tsx = endpoint
            .send_request(request, &mut target)
            .await
            .map_err(|e| format!("cannot send REGISTER: {e}"))?;
        let response = tsx.receive_final().await.map_err(|e| match e {
            ezk_sip_core::Error::RequestTimedOut => "the registrar did not answer".to_string(),
            e => format!("REGISTER failed: {e}"),
        })?;
        let code = response.line.code;
        match code.kind() {
            CodeKind::Success => {
                let granted = response
                    .headers
                    .get_named::<ezk_sip_types::header::typed::Expires>()
                    .map(|e| Duration::from_secs(u64::from(e.0)))
                    .ok();
                if !remove {
                    reg.receive_success_response(response);
                }
                return Ok(granted.unwrap_or(requested));
            }
            _ if code == StatusCode::UNAUTHORIZED
                || code == StatusCode::PROXY_AUTHENTICATION_REQUIRED =>
            {
                let request = &tsx.request().msg;
                auth.handle_rejection(
                    RequestParts {
                        line: &request.line,
                        headers: &request.headers,
                        body: &request.body,
                    },
                    ResponseParts {
                        line: &response.line,
                        headers: &response.headers,
                        body: &response.body,
                    },
                )
                .map_err(|e| format!("authentication refused: {e}"))?;
            }
            CodeKind::RequestFailure if !remove => {
                let reason = status_text(&response.line);
                if !reg.receive_error_response(response) {
                    return Err(format!("the registrar answered {reason}"));
                }
            }
            _ => {
                return Err(format!(
                    "the registrar answered {}",
                    status_text(&response.line)
                ));
            }
        }
    }
    Err("authentication refused: check the SIP username, password and realm".into())
}

/// `401 Unauthorized`.
pub(crate) fn status_text(line: &ezk_sip_types::msg::StatusLine) -> String {
    match &line.reason {
        Some(r) => format!("{} {}", line.code.into_u16(), r),
        None => line.code.into_u16().to_string(),
    }
}
