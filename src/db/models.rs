//! Rows as the repositories read and write them.

use diesel::prelude::*;

use super::schema::{
    api_keys, bot_tokens, connections, link_tokens, sessions, sip_dids, sip_trunks, users,
    voice_providers,
};

/// An account.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = users)]
pub struct User {
    /// UUID.
    pub id: String,
    /// Login and contact address, unique.
    pub email: String,
    /// Display name.
    pub name: String,
    /// argon2id PHC string; never leaves the server.
    #[serde(skip)]
    pub password_hash: String,
    /// Whether the address was confirmed (owner and CLI-made accounts are).
    pub email_verified: bool,
    /// An address change waiting for confirmation.
    pub pending_email: Option<String>,
    /// Informational in early access.
    pub plan: String,
    /// Epoch ms.
    pub created_at: i64,
}

/// An API key, by its hash.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = api_keys)]
pub struct ApiKey {
    /// UUID, the `key_id` of the API.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Label chosen at creation.
    pub name: String,
    /// The first characters of the key, to recognise it in a list.
    pub prefix: String,
    /// SHA-256 of the whole key; the key itself is never stored.
    #[serde(skip)]
    pub key_hash: String,
    /// Epoch ms.
    pub created_at: i64,
    /// Epoch ms of the last authenticated request.
    pub last_used_at: Option<i64>,
}

/// A dashboard login session, by the hash of its cookie.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = sessions)]
pub struct Session {
    /// SHA-256 of the cookie value.
    #[serde(skip)]
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Epoch ms.
    pub created_at: i64,
    /// Epoch ms after which the cookie is refused.
    pub expires_at: i64,
}

/// A user's own Discord, Telegram or Slack bot (BYOB); the token is sealed.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = bot_tokens)]
pub struct BotToken {
    /// UUID, the `bot_id` of the API.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// `discord`, `telegram` or `slack`.
    pub platform: String,
    /// SHA-256 of the token, unique so that one bot belongs to one account.
    #[serde(skip)]
    pub token_hash: String,
    /// The token, sealed with the server key and the owner's id.
    #[serde(skip)]
    pub token_sealed: String,
    /// The last characters of the token, to recognise it in a list.
    pub token_hint: String,
    /// Discord application id (Discord only).
    pub discord_app_id: Option<String>,
    /// Slack signing secret, sealed (Slack only).
    #[serde(skip)]
    pub slack_signing_secret_sealed: Option<String>,
    /// Epoch ms.
    pub created_at: i64,
}

/// A platform account linked to this one (OAuth, Slack install, Telegram deep link).
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = connections)]
pub struct Connection {
    /// UUID, the `connection_id` of the API.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// `microsoft`, `google`, `discord`, `telegram` or `slack`.
    pub provider: String,
    /// The account's id on the platform.
    pub external_id: String,
    /// The account's name on the platform, for display.
    pub display_name: String,
    /// Epoch ms.
    pub created_at: i64,
}

/// A user's SIP trunk (bring your own trunk); one per user, password sealed.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, serde::Serialize)]
#[diesel(table_name = sip_trunks)]
pub struct SipTrunk {
    /// UUID.
    pub id: String,
    /// Owner, unique.
    pub user_id: String,
    /// Registrar host name.
    pub host: String,
    /// Registrar port, 1 to 65535.
    pub port: i32,
    /// Authentication user.
    pub username: String,
    /// Authentication password, sealed; never returned.
    #[serde(skip)]
    pub password_sealed: String,
    /// Authentication realm.
    pub realm: Option<String>,
    /// E.164 caller id for outbound calls.
    pub caller_id: Option<String>,
    /// Epoch ms.
    pub created_at: i64,
    /// Epoch ms of the last change.
    pub updated_at: i64,
}

/// A phone number (E.164) reached through a user's trunk; unique across all users.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = sip_dids)]
pub struct SipDid {
    /// UUID, the `did_id` of the API.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// The trunk it arrives on.
    pub trunk_id: String,
    /// E.164.
    pub number: String,
    /// Whether inbound calls are answered without the agent's say.
    pub auto_answer: bool,
    /// Epoch ms.
    pub created_at: i64,
}

/// A hosted speech preset: which provider runs STT or TTS, with the user's key (sealed).
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = voice_providers)]
pub struct VoiceProvider {
    /// UUID.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// `stt` or `tts`.
    pub kind: String,
    /// `elevenlabs`, `deepgram`, `openai`, `cartesia`.
    pub provider: String,
    /// The provider key, sealed.
    #[serde(skip)]
    pub key_sealed: String,
    /// The last characters of the key.
    pub key_hint: String,
    /// Whether the preset drives hosted speech.
    pub enabled: bool,
    /// Epoch ms.
    pub created_at: i64,
}

/// A short-lived single-use token (invite link, Telegram deep link, OAuth state), by hash.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = link_tokens)]
pub struct LinkToken {
    /// SHA-256 of the token.
    #[serde(skip)]
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// `invite`, `telegram_connect` or `oauth_state`.
    pub kind: String,
    /// The provider an OAuth state is for.
    pub provider: Option<String>,
    /// Epoch ms.
    pub created_at: i64,
    /// Epoch ms after which the token is refused.
    pub expires_at: i64,
    /// Epoch ms of its one use.
    pub used_at: Option<i64>,
}
