//! `/api/bot-tokens`: the user's own Discord, Telegram and Slack bots (BYOB). Tokens are
//! sealed at rest and never returned; lists show a hint of the last characters.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::auth::crypto::hint;
use crate::auth::secrets::hash_token;
use crate::db::models::BotToken;
use crate::db::{now_ms, repo, rfc3339};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// A platform that accepts a user's own bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BotPlatform {
    /// Needs `discord_app_id`.
    Discord,
    /// A BotFather token, `<bot id>:<secret>`.
    Telegram,
    /// An `xoxb-` token; needs `slack_signing_secret`.
    Slack,
}

impl BotPlatform {
    fn as_str(self) -> &'static str {
        match self {
            BotPlatform::Discord => "discord",
            BotPlatform::Telegram => "telegram",
            BotPlatform::Slack => "slack",
        }
    }

    fn parse(name: &str) -> Option<BotPlatform> {
        [
            BotPlatform::Discord,
            BotPlatform::Telegram,
            BotPlatform::Slack,
        ]
        .into_iter()
        .find(|p| p.as_str() == name)
    }
}

/// A registered bot as listed: never the token itself.
#[derive(Serialize, ToSchema)]
pub struct BotInfo {
    /// Id for deletion.
    pub bot_id: String,
    /// `discord`, `telegram` or `slack`.
    pub platform: BotPlatform,
    /// The last characters of the token, to tell bots apart.
    pub token_hint: String,
    /// Discord application id (Discord only).
    pub discord_app_id: Option<String>,
    /// Whether a Slack signing secret is stored (the secret is never returned).
    pub slack_signing_secret_set: bool,
    /// RFC 3339.
    pub created_at: String,
}

impl BotInfo {
    fn of(row: BotToken) -> Result<BotInfo, ApiError> {
        Ok(BotInfo {
            platform: BotPlatform::parse(&row.platform)
                .ok_or_else(|| ApiError::internal(format!("bot platform {:?}", row.platform)))?,
            bot_id: row.id,
            token_hint: row.token_hint,
            discord_app_id: row.discord_app_id,
            slack_signing_secret_set: row.slack_signing_secret_sealed.is_some(),
            created_at: rfc3339(row.created_at),
        })
    }
}

/// `GET /api/bot-tokens`.
#[derive(Serialize, ToSchema)]
pub struct BotList {
    /// The caller's bots, oldest first.
    pub bot_tokens: Vec<BotInfo>,
}

/// Lists the caller's bots.
#[utoipa::path(
    responses((status = 200, body = BotList), (status = 401, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/bot-tokens")]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<BotList>, ApiError> {
    let rows = state
        .db(move |c| repo::bot_tokens_of(c, &caller.user_id))
        .await?;
    Ok(web::Json(BotList {
        bot_tokens: rows
            .into_iter()
            .map(BotInfo::of)
            .collect::<Result<_, _>>()?,
    }))
}

/// `POST /api/bot-tokens`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBot {
    /// `discord`, `telegram` or `slack`.
    pub platform: BotPlatform,
    /// The bot token from the platform.
    pub bot_token: String,
    /// Discord application id (Discord only, required there).
    #[serde(default)]
    pub discord_app_id: Option<String>,
    /// Signing secret for event verification (Slack only, required there).
    #[serde(default)]
    pub slack_signing_secret: Option<String>,
}

/// A request whose fields fit its platform.
struct ValidBot {
    platform: BotPlatform,
    token: String,
    discord_app_id: Option<String>,
    slack_signing_secret: Option<String>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::Unprocessable(message.into())
}

fn parse_bot(body: CreateBot) -> Result<ValidBot, ApiError> {
    let token = body.bot_token.trim().to_string();
    if token.is_empty() || token.len() > 512 || token.chars().any(char::is_whitespace) {
        return Err(invalid(
            "bot_token must be 1 to 512 characters without spaces",
        ));
    }
    let app_id = body.discord_app_id.map(|s| s.trim().to_string());
    let signing = body.slack_signing_secret.map(|s| s.trim().to_string());
    match body.platform {
        BotPlatform::Discord => {
            let Some(id) = app_id.as_deref() else {
                return Err(invalid("discord_app_id is required for Discord"));
            };
            if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid("discord_app_id must be a numeric Discord id"));
            }
        }
        BotPlatform::Telegram => {
            let shaped = token.split_once(':').is_some_and(|(id, secret)| {
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && !secret.is_empty()
            });
            if !shaped {
                return Err(invalid(
                    "bot_token must be a BotFather token, <bot id>:<secret>",
                ));
            }
        }
        BotPlatform::Slack => {
            if !token.starts_with("xoxb-") {
                return Err(invalid("bot_token must be a Slack bot token (xoxb-…)"));
            }
            if signing.as_deref().is_none_or(str::is_empty) {
                return Err(invalid("slack_signing_secret is required for Slack"));
            }
        }
    }
    if app_id.is_some() && body.platform != BotPlatform::Discord {
        return Err(invalid("discord_app_id applies to Discord only"));
    }
    if signing.is_some() && body.platform != BotPlatform::Slack {
        return Err(invalid("slack_signing_secret applies to Slack only"));
    }
    Ok(ValidBot {
        platform: body.platform,
        token,
        discord_app_id: app_id,
        slack_signing_secret: signing,
    })
}

/// Registers a bot (the account's address must be verified). The same bot cannot be
/// registered twice, by this account or another: 409.
#[utoipa::path(
    request_body = CreateBot,
    responses(
        (status = 201, body = BotInfo),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "address not verified"),
        (status = 409, body = ErrorBody, description = "bot already registered"),
        (status = 422, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
#[post("/bot-tokens")]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<CreateBot>,
) -> Result<HttpResponse, ApiError> {
    let bot = parse_bot(body.into_inner())?;
    let user_id = caller.user_id;
    let seal = |plain: &str| {
        state
            .secrets
            .seal(&user_id, plain)
            .map_err(|e| ApiError::internal(e.to_string()))
    };
    let row = BotToken {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: user_id.clone(),
        platform: bot.platform.as_str().to_string(),
        token_hash: hash_token(&bot.token),
        token_sealed: seal(&bot.token)?,
        token_hint: hint(&bot.token),
        discord_app_id: bot.discord_app_id,
        slack_signing_secret_sealed: bot.slack_signing_secret.as_deref().map(seal).transpose()?,
        created_at: now_ms(),
    };
    let stored = row.clone();
    state
        .db(move |c| {
            if !repo::user(c, &stored.user_id)?.email_verified {
                return Err(ApiError::Forbidden(
                    "Verify your email address first".into(),
                ));
            }
            repo::insert_bot_token(c, &stored)
        })
        .await?;
    Ok(HttpResponse::Created().json(BotInfo::of(row)?))
}

/// Deletes one of the caller's bots; another user's bot id is a 404.
#[utoipa::path(
    params(("bot_id" = String, Path, description = "bot id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[delete("/bot-tokens/{bot_id}")]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let bot_id = path.into_inner();
    let removed = state
        .db(move |c| repo::delete_bot_token(c, &caller.user_id, &bot_id))
        .await?;
    if removed {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("Bot token not found".into()))
    }
}
