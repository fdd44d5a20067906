//! Linking platform accounts to this one: `GET /api/platforms`, the OAuth start, Slack
//! install and Telegram deep-link routes, disconnection, and invite links. Every flow hands
//! out a random single-use token stored only as a hash (`link_tokens`).

use actix_web::{HttpResponse, delete, get, post, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{Caller, secrets};
use crate::db::models::{Connection, LinkToken};
use crate::db::{now_ms, repo, rfc3339};
use crate::error::{ApiError, ErrorBody};
use crate::linking::{self, Flow, LinkKind, Provider};
use crate::state::AppState;

/// How long an OAuth or Slack install `state` stays valid.
const OAUTH_STATE_TTL_MS: i64 = 10 * 60 * 1000;
/// How long an invite link or Telegram deep link stays valid.
pub const LINK_TTL_MS: i64 = 15 * 60 * 1000;

/// A linked platform account.
#[derive(Serialize, ToSchema)]
pub struct ConnectionInfo {
    /// Id for disconnection.
    pub connection_id: String,
    /// The platform.
    pub provider: Provider,
    /// The account's id on the platform.
    pub external_id: String,
    /// The account's name on the platform.
    pub display_name: String,
    /// RFC 3339.
    pub created_at: String,
}

impl ConnectionInfo {
    fn of(row: Connection) -> Result<ConnectionInfo, ApiError> {
        Ok(ConnectionInfo {
            provider: Provider::parse(&row.provider)
                .ok_or_else(|| ApiError::internal(format!("provider {:?}", row.provider)))?,
            connection_id: row.id,
            external_id: row.external_id,
            display_name: row.display_name,
            created_at: rfc3339(row.created_at),
        })
    }
}

/// One provider's availability on this server and for this user.
#[derive(Serialize, ToSchema)]
pub struct ProviderStatus {
    /// The platform.
    pub provider: Provider,
    /// Which route links it: `oauth`, `install` or `deeplink`.
    pub flow: Flow,
    /// Whether the server's configuration enables the flow.
    pub configured: bool,
    /// Whether the user has at least one linked account there.
    pub connected: bool,
}

/// `GET /api/platforms`.
#[derive(Serialize, ToSchema)]
pub struct Platforms {
    /// The caller's linked accounts, oldest first.
    pub connections: Vec<ConnectionInfo>,
    /// Microsoft, Google, Discord, Telegram and Slack.
    pub providers: Vec<ProviderStatus>,
}

/// The caller's linked accounts and every provider's status.
#[utoipa::path(
    responses((status = 200, body = Platforms), (status = 401, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/platforms")]
pub async fn platforms(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<Platforms>, ApiError> {
    let rows = state
        .db(move |c| repo::connections_of(c, &caller.user_id))
        .await?;
    let connections: Vec<ConnectionInfo> = rows
        .into_iter()
        .map(ConnectionInfo::of)
        .collect::<Result<_, _>>()?;
    let providers = Provider::ALL
        .into_iter()
        .map(|p| ProviderStatus {
            provider: p,
            flow: p.flow(),
            configured: p.client_id(&state.config).is_some(),
            connected: connections.iter().any(|c| c.provider == p),
        })
        .collect();
    Ok(web::Json(Platforms {
        connections,
        providers,
    }))
}

/// Stores a new random token for `user_id` (by hash) and returns it with its expiry.
async fn issue_link_token(
    state: &AppState,
    user_id: String,
    kind: LinkKind,
    provider: Option<Provider>,
    prefix: &str,
    ttl_ms: i64,
) -> Result<(String, i64), ApiError> {
    // 24 random bytes: 32 URL-safe characters, inside Telegram's 64-character payload set.
    let token = format!("{prefix}{}", secrets::random_token(24));
    let now = now_ms();
    let row = LinkToken {
        id: secrets::hash_token(&token),
        user_id,
        kind: kind.as_str().to_string(),
        provider: provider.map(|p| p.as_str().to_string()),
        created_at: now,
        expires_at: now + ttl_ms,
        used_at: None,
    };
    state.db(move |c| repo::insert_link_token(c, &row)).await?;
    Ok((token, now + ttl_ms))
}

fn not_configured(provider: Provider) -> ApiError {
    ApiError::bad_request(
        "provider_not_configured",
        format!(
            "{} is not configured on this server (set {} in the configuration)",
            provider.as_str(),
            provider.config_key()
        ),
    )
}

/// The authorize URL of `provider` with a fresh `state` for the caller.
async fn start_flow(
    state: &AppState,
    user_id: String,
    provider: Provider,
) -> Result<String, ApiError> {
    let client_id = provider
        .client_id(&state.config)
        .ok_or_else(|| not_configured(provider))?
        .to_string();
    let (token, _) = issue_link_token(
        state,
        user_id,
        LinkKind::OauthState,
        Some(provider),
        "",
        OAUTH_STATE_TTL_MS,
    )
    .await?;
    let redirect = linking::redirect_uri(&state.config.public_url(), provider);
    linking::authorize_url(provider, &client_id, &redirect, &token)
        .ok_or_else(|| ApiError::internal(format!("{} has no authorize URL", provider.as_str())))
}

/// `POST /api/oauth/start/{provider}`.
#[derive(Serialize, ToSchema)]
pub struct OauthStart {
    /// Open in a browser to authorize.
    pub auth_url: String,
}

/// Starts an OAuth flow (`microsoft`, `google` or `discord`). 400 for another provider or
/// when the server has no client id for it.
#[utoipa::path(
    params(("provider" = String, Path, description = "microsoft, google or discord")),
    responses(
        (status = 200, body = OauthStart),
        (status = 400, body = ErrorBody, description = "unknown or unconfigured provider"),
        (status = 401, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
#[post("/oauth/start/{provider}")]
pub async fn oauth_start(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<web::Json<OauthStart>, ApiError> {
    let name = path.into_inner();
    let provider = Provider::parse(&name)
        .filter(|p| p.flow() == Flow::Oauth)
        .ok_or_else(|| {
            ApiError::bad_request(
                "unsupported_provider",
                format!(
                    "OAuth provider must be microsoft, google or discord, not {name:?} \
                     (Slack: POST /api/slack/install; Telegram: POST /api/telegram/connect)"
                ),
            )
        })?;
    let auth_url = start_flow(&state, caller.user_id, provider).await?;
    Ok(web::Json(OauthStart { auth_url }))
}

/// Disconnects one of the caller's linked accounts; another user's id is a 404.
#[utoipa::path(
    params(("connection_id" = String, Path, description = "connection id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[delete("/connections/{connection_id}")]
pub async fn disconnect(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let connection_id = path.into_inner();
    let removed = state
        .db(move |c| repo::delete_connection(c, &caller.user_id, &connection_id))
        .await?;
    if removed {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("Connection not found".into()))
    }
}

/// `POST /api/telegram/connect`.
#[derive(Serialize, ToSchema)]
pub struct TelegramLink {
    /// `https://t.me/<bot>?start=<token>`: pressing START links the Telegram account.
    pub deeplink: String,
    /// RFC 3339; the link works once, until then.
    pub expires_at: String,
}

/// A Telegram deep link to the shared bot that links the account which presses START.
/// 400 when the server has no Telegram bot.
#[utoipa::path(
    responses(
        (status = 200, body = TelegramLink),
        (status = 400, body = ErrorBody, description = "no Telegram bot configured"),
        (status = 401, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
#[post("/telegram/connect")]
pub async fn telegram_connect(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<TelegramLink>, ApiError> {
    let bot = Provider::Telegram
        .client_id(&state.config)
        .ok_or_else(|| not_configured(Provider::Telegram))?
        .to_string();
    let (token, expires_at) = issue_link_token(
        &state,
        caller.user_id,
        LinkKind::TelegramConnect,
        Some(Provider::Telegram),
        "TGLINK_",
        LINK_TTL_MS,
    )
    .await?;
    Ok(web::Json(TelegramLink {
        deeplink: format!("https://t.me/{bot}?start={token}"),
        expires_at: rfc3339(expires_at),
    }))
}

/// `POST /api/slack/install`.
#[derive(Serialize, ToSchema)]
pub struct SlackInstall {
    /// Slack's OAuth v2 authorize URL for installing the app in a workspace.
    pub url: String,
}

/// The Slack install URL. 400 when the server has no Slack app.
#[utoipa::path(
    responses(
        (status = 200, body = SlackInstall),
        (status = 400, body = ErrorBody, description = "no Slack app configured"),
        (status = 401, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
#[post("/slack/install")]
pub async fn slack_install(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<SlackInstall>, ApiError> {
    let url = start_flow(&state, caller.user_id, Provider::Slack).await?;
    Ok(web::Json(SlackInstall { url }))
}

/// `POST /api/invite-link`.
#[derive(Serialize, ToSchema)]
pub struct InviteLink {
    /// The invite token; send it to the bot from WhatsApp or Telegram to link that chat.
    pub token: String,
    /// `https://t.me/<bot>?start=<token>` when the server has a Telegram bot.
    pub telegram_deeplink: Option<String>,
    /// RFC 3339, 15 minutes from now; the token works once.
    pub expires_at: String,
}

/// A temporary invite token (15 min, single use) for WhatsApp/Telegram messaging.
#[utoipa::path(
    responses((status = 201, body = InviteLink), (status = 401, body = ErrorBody)),
    security(("api_key" = []))
)]
#[post("/invite-link")]
pub async fn invite_link(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let (token, expires_at) = issue_link_token(
        &state,
        caller.user_id,
        LinkKind::Invite,
        None,
        "INVITE_",
        LINK_TTL_MS,
    )
    .await?;
    let telegram_deeplink = Provider::Telegram
        .client_id(&state.config)
        .map(|bot| format!("https://t.me/{bot}?start={token}"));
    Ok(HttpResponse::Created().json(InviteLink {
        token,
        telegram_deeplink,
        expires_at: rfc3339(expires_at),
    }))
}
