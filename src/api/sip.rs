//! `/api/sip/trunk`: the user's own SIP trunk (BYOT) and the phone numbers (DIDs) reached
//! through it. The trunk password is sealed at rest and never returned; numbers are E.164
//! and belong to one account at most.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::db::models::{SipDid, SipTrunk};
use crate::db::{now_ms, repo, rfc3339};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// The port a trunk uses when the request names none.
const DEFAULT_SIP_PORT: u16 = 5060;

/// A phone number in E.164: `+`, a non-zero digit, then 1 to 14 digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E164(String);

impl E164 {
    /// Checks `raw` (surrounding spaces ignored); the error names `field`.
    pub fn parse(raw: &str, field: &str) -> Result<E164, ApiError> {
        let n = raw.trim();
        let digits = n.strip_prefix('+').unwrap_or_default();
        let valid = (2..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if valid {
            Ok(E164(n.to_string()))
        } else {
            Err(ApiError::Unprocessable(format!(
                "{field} must be an E.164 number such as +33612345678, got {raw:?}"
            )))
        }
    }

    /// The number as stored and shown.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A number as shown.
#[derive(Serialize, ToSchema)]
pub struct DidInfo {
    /// Id for removal and settings.
    pub did_id: String,
    /// E.164.
    pub number: String,
    /// Whether inbound calls are answered without the agent's say.
    pub auto_answer: bool,
    /// RFC 3339.
    pub created_at: String,
}

impl From<SipDid> for DidInfo {
    fn from(d: SipDid) -> Self {
        DidInfo {
            did_id: d.id,
            number: d.number,
            auto_answer: d.auto_answer,
            created_at: rfc3339(d.created_at),
        }
    }
}

/// The trunk as shown: everything but the password.
#[derive(Serialize, ToSchema)]
pub struct TrunkInfo {
    /// Trunk id.
    pub trunk_id: String,
    /// Registrar host name.
    pub sip_host: String,
    /// Registrar port.
    pub sip_port: u16,
    /// Authentication user.
    pub sip_username: String,
    /// Authentication realm.
    pub sip_realm: Option<String>,
    /// E.164 caller id for outbound calls.
    pub sip_caller_id: Option<String>,
    /// The numbers on the trunk.
    pub dids: Vec<DidInfo>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339 of the last change.
    pub updated_at: String,
    /// How the gateway's registration with the trunk stands (an extension of the spec's
    /// fields: `registering`, `registered`, `failed` with its reason, or `disabled`).
    pub registration: crate::sip::RegistrationInfo,
}

impl TrunkInfo {
    fn of(t: SipTrunk, dids: Vec<SipDid>, sip: &crate::sip::SipService) -> TrunkInfo {
        TrunkInfo {
            registration: sip.registration(&t.user_id, &t.id),
            trunk_id: t.id,
            sip_host: t.host,
            // The column only ever holds a u16 (checked on the way in).
            sip_port: u16::try_from(t.port).unwrap_or(DEFAULT_SIP_PORT),
            sip_username: t.username,
            sip_realm: t.realm,
            sip_caller_id: t.caller_id,
            dids: dids.into_iter().map(DidInfo::from).collect(),
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

/// `POST /api/sip/trunk`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectTrunk {
    /// SIP server host name.
    pub sip_host: String,
    /// SIP server port (default 5060).
    #[serde(default)]
    pub sip_port: Option<u16>,
    /// SIP user name.
    pub sip_username: String,
    /// SIP password (stored sealed, never returned).
    pub sip_password: String,
    /// Authentication realm; required by most commercial providers.
    #[serde(default)]
    pub sip_realm: Option<String>,
    /// E.164 caller id for outbound calls.
    #[serde(default)]
    pub sip_caller_id: Option<String>,
}

fn required(value: &str, field: &str, max: usize) -> Result<String, ApiError> {
    let v = value.trim();
    if v.is_empty() || v.len() > max || v.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(format!(
            "{field} must be 1 to {max} printable characters"
        )));
    }
    Ok(v.to_string())
}

/// Connects the caller's trunk, or replaces its settings (keeping its numbers): 201 when
/// new, 200 when replaced.
#[utoipa::path(
    request_body = ConnectTrunk,
    responses(
        (status = 201, body = TrunkInfo, description = "trunk connected"),
        (status = 200, body = TrunkInfo, description = "settings replaced"),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
#[post("/sip/trunk")]
pub async fn connect_trunk(
    state: web::Data<AppState>,
    sip: web::Data<crate::sip::SipService>,
    caller: Caller,
    body: web::Json<ConnectTrunk>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let host = required(&body.sip_host, "sip_host", 253)?;
    if host.contains(['/', '@', ' ']) {
        return Err(ApiError::Unprocessable(
            "sip_host must be a host name or address, without scheme or user".into(),
        ));
    }
    let port = body.sip_port.unwrap_or(DEFAULT_SIP_PORT);
    if port == 0 {
        return Err(ApiError::Unprocessable(
            "sip_port must be 1 to 65535".into(),
        ));
    }
    let username = required(&body.sip_username, "sip_username", 256)?;
    if body.sip_password.is_empty() || body.sip_password.len() > 256 {
        return Err(ApiError::Unprocessable(
            "sip_password must be 1 to 256 characters".into(),
        ));
    }
    let realm = match body.sip_realm.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(r) => Some(required(r, "sip_realm", 253)?),
    };
    let caller_id = match body.sip_caller_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(n) => Some(E164::parse(n, "sip_caller_id")?.0),
    };
    let now = now_ms();
    let row = SipTrunk {
        id: uuid::Uuid::new_v4().to_string(),
        password_sealed: state
            .secrets
            .seal(&caller.user_id, &body.sip_password)
            .map_err(|e| ApiError::internal(e.to_string()))?,
        user_id: caller.user_id,
        host,
        port: i32::from(port),
        username,
        realm,
        caller_id,
        created_at: now,
        updated_at: now,
    };
    let (trunk, dids, created) = state
        .db(move |c| {
            let (trunk, created) = repo::upsert_sip_trunk(c, &row)?;
            let dids = repo::sip_dids_of(c, &row.user_id)?;
            Ok((trunk, dids, created))
        })
        .await?;
    sip.trunk_changed(&trunk.user_id);
    let info = TrunkInfo::of(trunk, dids, &sip);
    Ok(if created {
        HttpResponse::Created().json(info)
    } else {
        HttpResponse::Ok().json(info)
    })
}

fn no_trunk() -> ApiError {
    ApiError::NotFound("No SIP trunk configured".into())
}

/// The caller's trunk (never the password) and its numbers; 404 when none.
#[utoipa::path(
    responses((status = 200, body = TrunkInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/sip/trunk")]
pub async fn show_trunk(
    state: web::Data<AppState>,
    sip: web::Data<crate::sip::SipService>,
    caller: Caller,
) -> Result<web::Json<TrunkInfo>, ApiError> {
    let (trunk, dids) = state
        .db(move |c| {
            let trunk = repo::sip_trunk_of(c, &caller.user_id)?.ok_or_else(no_trunk)?;
            Ok((trunk, repo::sip_dids_of(c, &caller.user_id)?))
        })
        .await?;
    Ok(web::Json(TrunkInfo::of(trunk, dids, &sip)))
}

/// Disconnects the caller's trunk and releases all its numbers; 404 when none.
#[utoipa::path(
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[delete("/sip/trunk")]
pub async fn disconnect_trunk(
    state: web::Data<AppState>,
    sip: web::Data<crate::sip::SipService>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let user = caller.user_id.clone();
    let removed = state.db(move |c| repo::delete_sip_trunk(c, &user)).await?;
    if removed {
        sip.trunk_changed(&caller.user_id);
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(no_trunk())
    }
}

/// `GET /api/sip/trunk/dids`.
#[derive(Serialize, ToSchema)]
pub struct DidList {
    /// The caller's numbers, oldest first.
    pub dids: Vec<DidInfo>,
}

/// Lists the caller's numbers.
#[utoipa::path(
    responses((status = 200, body = DidList), (status = 401, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/sip/trunk/dids")]
pub async fn list_dids(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<DidList>, ApiError> {
    let rows = state
        .db(move |c| repo::sip_dids_of(c, &caller.user_id))
        .await?;
    Ok(web::Json(DidList {
        dids: rows.into_iter().map(DidInfo::from).collect(),
    }))
}

/// `POST /api/sip/trunk/dids`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddDid {
    /// The phone number, E.164 (`+33612345678`).
    pub number: String,
    /// Whether inbound calls are answered without the agent's say (default false).
    #[serde(default)]
    pub auto_answer: bool,
}

/// Adds a number to the caller's trunk. 400 without a trunk; 409 when any account has the
/// number already.
#[utoipa::path(
    request_body = AddDid,
    responses(
        (status = 201, body = DidInfo),
        (status = 400, body = ErrorBody, description = "no SIP trunk configured"),
        (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "number already registered"),
        (status = 422, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
#[post("/sip/trunk/dids")]
pub async fn add_did(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<AddDid>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let number = E164::parse(&body.number, "number")?;
    let did = state
        .db(move |c| {
            use diesel::Connection as _;
            // One transaction, so that a trunk deleted meanwhile cannot leave an orphan.
            c.transaction(|c| {
                let trunk = repo::sip_trunk_of(c, &caller.user_id)?.ok_or_else(|| {
                    ApiError::bad_request(
                        "no_sip_trunk",
                        "No SIP trunk configured: connect one with POST /api/sip/trunk first",
                    )
                })?;
                let did = SipDid {
                    id: uuid::Uuid::new_v4().to_string(),
                    user_id: caller.user_id,
                    trunk_id: trunk.id,
                    number: number.as_str().to_string(),
                    auto_answer: body.auto_answer,
                    created_at: now_ms(),
                };
                repo::insert_sip_did(c, &did)?;
                Ok(did)
            })
        })
        .await?;
    Ok(HttpResponse::Created().json(DidInfo::from(did)))
}

/// Removes one of the caller's numbers; another user's number id is a 404.
#[utoipa::path(
    params(("did_id" = String, Path, description = "DID id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[delete("/sip/trunk/dids/{did_id}")]
pub async fn remove_did(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let did_id = path.into_inner();
    let removed = state
        .db(move |c| repo::delete_sip_did(c, &caller.user_id, &did_id))
        .await?;
    if removed {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("DID not found".into()))
    }
}

/// `POST /api/sip/trunk/dids/{did_id}/settings`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DidSettings {
    /// Whether inbound calls are answered without the agent's say.
    pub auto_answer: bool,
}

/// Updates one of the caller's numbers; another user's number id is a 404.
#[utoipa::path(
    params(("did_id" = String, Path, description = "DID id")),
    request_body = DidSettings,
    responses((status = 200, body = DidInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
#[post("/sip/trunk/dids/{did_id}/settings")]
pub async fn did_settings(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<DidSettings>,
) -> Result<web::Json<DidInfo>, ApiError> {
    let did_id = path.into_inner();
    let auto_answer = body.into_inner().auto_answer;
    let did = state
        .db(move |c| repo::set_sip_did_auto_answer(c, &caller.user_id, &did_id, auto_answer))
        .await?
        .ok_or_else(|| ApiError::NotFound("DID not found".into()))?;
    Ok(web::Json(did.into()))
}

#[cfg(test)]
mod tests {
    use super::E164;

    #[test]
    fn e164_accepts_plus_and_2_to_15_digits_only() {
        for ok in ["+33612345678", "+12", "+123456789012345", " +4930123 "] {
            assert!(E164::parse(ok, "n").is_ok(), "{ok}");
        }
        for bad in [
            "",
            "+",
            "+1",
            "33612345678",
            "+0612345678",
            "+1234567890123456",
            "+33 6 12",
            "+33-612",
            "++33612",
            "+３３",
        ] {
            assert!(E164::parse(bad, "n").is_err(), "{bad}");
        }
    }
}
