//! `/api/account` and the profile routes: status for agents, and the GDPR operations.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::session::{check_password, parse_email};
use crate::api::voice::SpeechKind;
use crate::auth::{Caller, secrets};
use crate::db::repo;
use crate::error::{ApiError, ErrorBody};
use crate::platforms::PLATFORMS;
use crate::state::AppState;

/// Gateway-wide feature availability.
#[derive(Serialize, ToSchema)]
pub struct Features {
    /// Call and chat transport.
    pub transport: &'static str,
    /// Receiving the humans' audio.
    pub audio_in: &'static str,
    /// Sending the agent's audio.
    pub audio_out: &'static str,
    /// Chat in calls and DMs.
    pub text_chat: &'static str,
    /// Typing indicators.
    pub typing_indicators: &'static str,
    /// Attachments.
    pub files: &'static str,
    /// `ready` with an enabled STT preset, else `byok`.
    pub hosted_stt: &'static str,
    /// `ready` with an enabled TTS preset, else `byok`.
    pub hosted_tts: &'static str,
}

/// One platform's state for this user.
#[derive(Serialize, ToSchema)]
pub struct PlatformStatus {
    /// `ok`, `not_configured`, or an error description.
    pub status: String,
    /// What the platform exposes.
    pub capabilities: Vec<&'static str>,
    /// Whether file send and receive work end to end.
    pub files: bool,
}

/// Active calls against the limit.
#[derive(Serialize, ToSchema)]
pub struct ConcurrentCalls {
    /// Calls in progress.
    pub active: u32,
    /// Most calls at once.
    pub limit: u32,
}

/// `GET /api/account`: everything an agent needs on a cold start.
#[derive(Serialize, ToSchema)]
pub struct AccountStatus {
    /// Informational in early access.
    pub plan: String,
    /// Gateway-wide availability.
    pub features: Features,
    /// How hosted speech works.
    pub features_note: &'static str,
    /// Per platform.
    pub platforms: BTreeMap<&'static str, PlatformStatus>,
    /// Active calls vs limit.
    pub concurrent_calls: ConcurrentCalls,
    /// Which handle is the agent and which the operator, per platform.
    pub identities: BTreeMap<String, serde_json::Value>,
    /// Where `chamade_inbox` delta mode starts; null before any message.
    pub last_message_cursor: Option<String>,
    /// The account's id.
    pub user_id: String,
    /// The account's address.
    pub email: String,
    /// The account's display name.
    pub name: String,
}

const FEATURES_NOTE: &str = "Hosted STT/TTS is bring-your-own-key: add an ElevenLabs, Deepgram or other provider key under Voice providers and the gateway runs the speech pipeline for your calls; without one, use the raw PCM audio WebSocket and run speech yourself.";

/// The caller's account, features and platforms.
#[utoipa::path(
    responses((status = 200, body = AccountStatus), (status = 401, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/account")]
pub async fn account(
    state: web::Data<AppState>,
    sip: web::Data<crate::sip::SipService>,
    caller: Caller,
) -> Result<web::Json<AccountStatus>, ApiError> {
    let (user, speech, trunk) = state
        .db(move |c| {
            let user = repo::user(c, &caller.user_id)?;
            let trunk = repo::sip_trunk_of(c, &caller.user_id)?;
            Ok((user, repo::enabled_voice_kinds(c, &caller.user_id)?, trunk))
        })
        .await?;
    // SIP is the one platform hosted here today: its status is the trunk registration's.
    let sip_status = trunk.map(|t| {
        let reg = sip.registration(&t.user_id, &t.id);
        match (reg.state.as_str(), reg.detail) {
            ("registered", _) => "ok".to_string(),
            (state, Some(detail)) => format!("{state}: {detail}"),
            (state, None) => state.to_string(),
        }
    });
    let hosted = |kind: SpeechKind| {
        if speech.iter().any(|k| k == kind.as_str()) {
            "ready"
        } else {
            "byok"
        }
    };
    let platforms = PLATFORMS
        .iter()
        .map(|p| {
            (
                p.name,
                PlatformStatus {
                    status: match (p.name, &sip_status) {
                        ("sip", Some(s)) => s.clone(),
                        _ => "not_configured".into(),
                    },
                    capabilities: p.capabilities.to_vec(),
                    files: p.files,
                },
            )
        })
        .collect();
    Ok(web::Json(AccountStatus {
        plan: user.plan,
        features: Features {
            transport: "ready",
            audio_in: "ready",
            audio_out: "ready",
            text_chat: "ready",
            typing_indicators: "ready",
            files: "ready",
            hosted_stt: hosted(SpeechKind::Stt),
            hosted_tts: hosted(SpeechKind::Tts),
        },
        features_note: FEATURES_NOTE,
        platforms,
        concurrent_calls: ConcurrentCalls {
            active: 0,
            limit: state.config.max_concurrent_calls,
        },
        identities: BTreeMap::new(),
        last_message_cursor: None,
        user_id: user.id,
        email: user.email,
        name: user.name,
    }))
}

/// `GET /api/usage`.
#[derive(Serialize, ToSchema)]
pub struct Usage {
    /// Calls made so far.
    pub call_count: u64,
    /// Active calls vs limit.
    pub concurrent_calls: ConcurrentCalls,
    /// Calls per platform.
    pub platforms: BTreeMap<String, u64>,
    /// Always true in early access.
    pub informational: bool,
}

/// Usage summary (informational in early access).
#[utoipa::path(
    responses((status = 200, body = Usage), (status = 401, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/usage")]
pub async fn usage(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<Usage>, ApiError> {
    state.db(move |c| repo::user(c, &caller.user_id)).await?;
    Ok(web::Json(Usage {
        call_count: 0,
        concurrent_calls: ConcurrentCalls {
            active: 0,
            limit: state.config.max_concurrent_calls,
        },
        platforms: BTreeMap::new(),
        informational: true,
    }))
}

/// `PATCH /api/profile`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    /// New display name, 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub name: String,
}

/// The profile after an update.
#[derive(Serialize, ToSchema)]
pub struct Profile {
    /// Account id.
    pub user_id: String,
    /// Address.
    pub email: String,
    /// Display name.
    pub name: String,
}

/// Renames the account.
#[utoipa::path(
    request_body = ProfileUpdate,
    responses((status = 200, body = Profile), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
#[patch("/profile")]
pub async fn profile(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<ProfileUpdate>,
) -> Result<web::Json<Profile>, ApiError> {
    let name = crate::api::session::check_label("name", &body.into_inner().name, 100)?;
    let user = state
        .db(move |c| {
            repo::set_name(c, &caller.user_id, &name)?;
            repo::user(c, &caller.user_id)
        })
        .await?;
    Ok(web::Json(Profile {
        user_id: user.id,
        email: user.email,
        name: user.name,
    }))
}

/// `POST /api/change-password`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    /// The password in use.
    pub current_password: String,
    /// At least 8 characters.
    #[schema(min_length = 8, max_length = 1024)]
    pub new_password: String,
}

/// A plain acknowledgement.
#[derive(Serialize, ToSchema)]
pub struct Done {
    /// `ok`.
    pub status: &'static str,
}

/// Changes the password after checking the current one.
#[utoipa::path(
    request_body = ChangePassword,
    responses((status = 200, body = Done), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
#[post("/change-password")]
pub async fn change_password(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<ChangePassword>,
) -> Result<web::Json<Done>, ApiError> {
    let body = body.into_inner();
    check_password(&body.new_password)?;
    state
        .db(move |c| {
            let user = repo::user(c, &caller.user_id)?;
            if !secrets::verify_password(&body.current_password, &user.password_hash) {
                return Err(ApiError::bad_request(
                    "invalid_password",
                    "Current password is incorrect",
                ));
            }
            let phc = secrets::hash_password(&body.new_password).map_err(ApiError::internal)?;
            repo::set_password_hash(c, &user.id, &phc)
        })
        .await?;
    Ok(web::Json(Done { status: "ok" }))
}

/// `POST /api/change-email`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeEmail {
    /// The new address.
    #[schema(format = Email, max_length = 254)]
    pub new_email: String,
}

/// The pending change.
#[derive(Serialize, ToSchema)]
pub struct EmailChange {
    /// `pending_verification`.
    pub status: &'static str,
    /// The address waiting for confirmation.
    pub pending_email: String,
}

/// Requests an address change; it takes effect once the new address is verified.
/// (This server sends no mail: an operator confirms it from the command line.)
#[utoipa::path(
    request_body = ChangeEmail,
    responses((status = 202, body = EmailChange), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
#[post("/change-email")]
pub async fn change_email(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<ChangeEmail>,
) -> Result<HttpResponse, ApiError> {
    let email = parse_email(&body.into_inner().new_email)?;
    let pending = email.clone();
    state
        .db(move |c| {
            if repo::user_by_email(c, &email)?.is_some() {
                return Err(ApiError::Conflict(
                    "An account with this email already exists".into(),
                ));
            }
            repo::set_pending_email(c, &caller.user_id, &email)
        })
        .await?;
    Ok(HttpResponse::Accepted().json(EmailChange {
        status: "pending_verification",
        pending_email: pending,
    }))
}

/// `DELETE /api/account`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccount {
    /// The account's password, as confirmation.
    pub password: String,
}

/// Deletes the account and every row it owns.
#[utoipa::path(
    request_body = DeleteAccount,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
#[delete("/account")]
pub async fn delete_account(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<DeleteAccount>,
) -> Result<HttpResponse, ApiError> {
    let password = body.into_inner().password;
    state
        .db(move |c| {
            let user = repo::user(c, &caller.user_id)?;
            if !secrets::verify_password(&password, &user.password_hash) {
                return Err(ApiError::bad_request(
                    "invalid_password",
                    "Password is incorrect",
                ));
            }
            repo::delete_user(c, &user.id)
        })
        .await?;
    tracing::info!("account deleted");
    Ok(HttpResponse::NoContent().finish())
}

/// All of the caller's data as JSON, one array per table.
#[utoipa::path(
    responses((status = 200, body = Object), (status = 401, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/export")]
pub async fn export(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<serde_json::Value>, ApiError> {
    Ok(web::Json(
        state.db(move |c| repo::export(c, &caller.user_id)).await?,
    ))
}
