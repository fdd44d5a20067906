//! `/api/voice-providers`: the hosted-speech presets (BYOK). An enabled STT or TTS preset is
//! what turns `features.hosted_stt` / `hosted_tts` of `GET /api/account` to `ready`. Keys
//! are sealed at rest and never returned.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::auth::crypto::hint;
use crate::db::models::VoiceProvider;
use crate::db::{now_ms, repo, rfc3339};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// Which half of the speech pipeline a preset runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SpeechKind {
    /// Speech to text (`call_transcript` events).
    Stt,
    /// Text to speech (`chamade_call_say`).
    Tts,
}

impl SpeechKind {
    /// The API and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            SpeechKind::Stt => "stt",
            SpeechKind::Tts => "tts",
        }
    }

    fn parse(name: &str) -> Option<SpeechKind> {
        [SpeechKind::Stt, SpeechKind::Tts]
            .into_iter()
            .find(|k| k.as_str() == name)
    }
}

/// A speech provider whose key a preset holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SpeechProvider {
    /// ElevenLabs (STT and TTS).
    Elevenlabs,
    /// Deepgram (STT and TTS).
    Deepgram,
    /// OpenAI (STT and TTS).
    Openai,
    /// Cartesia (STT and TTS).
    Cartesia,
}

impl SpeechProvider {
    fn as_str(self) -> &'static str {
        match self {
            SpeechProvider::Elevenlabs => "elevenlabs",
            SpeechProvider::Deepgram => "deepgram",
            SpeechProvider::Openai => "openai",
            SpeechProvider::Cartesia => "cartesia",
        }
    }

    fn parse(name: &str) -> Option<SpeechProvider> {
        [
            SpeechProvider::Elevenlabs,
            SpeechProvider::Deepgram,
            SpeechProvider::Openai,
            SpeechProvider::Cartesia,
        ]
        .into_iter()
        .find(|p| p.as_str() == name)
    }
}

/// A preset as listed: never the key itself.
#[derive(Serialize, ToSchema)]
pub struct VoicePreset {
    /// Id for changes and deletion.
    pub preset_id: String,
    /// `stt` or `tts`.
    pub kind: SpeechKind,
    /// The provider.
    pub provider: SpeechProvider,
    /// The last characters of the key.
    pub key_hint: String,
    /// Whether hosted speech uses it.
    pub enabled: bool,
    /// RFC 3339.
    pub created_at: String,
}

impl VoicePreset {
    fn of(row: VoiceProvider) -> Result<VoicePreset, ApiError> {
        let bad = || ApiError::internal(format!("voice preset {} has unknown values", row.id));
        Ok(VoicePreset {
            kind: SpeechKind::parse(&row.kind).ok_or_else(bad)?,
            provider: SpeechProvider::parse(&row.provider).ok_or_else(bad)?,
            preset_id: row.id,
            key_hint: row.key_hint,
            enabled: row.enabled,
            created_at: rfc3339(row.created_at),
        })
    }
}

/// `GET /api/voice-providers`.
#[derive(Serialize, ToSchema)]
pub struct VoicePresetList {
    /// The caller's presets, oldest first.
    pub voice_providers: Vec<VoicePreset>,
}

/// Lists the caller's presets.
#[utoipa::path(
    responses((status = 200, body = VoicePresetList), (status = 401, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/voice-providers")]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<VoicePresetList>, ApiError> {
    let rows = state
        .db(move |c| repo::voice_providers_of(c, &caller.user_id))
        .await?;
    Ok(web::Json(VoicePresetList {
        voice_providers: rows
            .into_iter()
            .map(VoicePreset::of)
            .collect::<Result<_, _>>()?,
    }))
}

/// `POST /api/voice-providers`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePreset {
    /// `stt` or `tts`.
    pub kind: SpeechKind,
    /// `elevenlabs`, `deepgram`, `openai` or `cartesia`.
    pub provider: SpeechProvider,
    /// The provider API key.
    pub api_key: String,
    /// Whether hosted speech uses it right away (default true).
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

/// Adds a preset.
#[utoipa::path(
    request_body = CreatePreset,
    responses((status = 201, body = VoicePreset), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
#[post("/voice-providers")]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<CreatePreset>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let key = body.api_key.trim();
    if key.is_empty() || key.len() > 1024 || key.chars().any(char::is_whitespace) {
        return Err(ApiError::Unprocessable(
            "api_key must be 1 to 1024 characters without spaces".into(),
        ));
    }
    let row = VoiceProvider {
        id: uuid::Uuid::new_v4().to_string(),
        key_sealed: state
            .secrets
            .seal(&caller.user_id, key)
            .map_err(|e| ApiError::internal(e.to_string()))?,
        user_id: caller.user_id,
        kind: body.kind.as_str().to_string(),
        provider: body.provider.as_str().to_string(),
        key_hint: hint(key),
        enabled: body.enabled,
        created_at: now_ms(),
    };
    let stored = row.clone();
    state
        .db(move |c| repo::insert_voice_provider(c, &stored))
        .await?;
    Ok(HttpResponse::Created().json(VoicePreset::of(row)?))
}

/// `PATCH /api/voice-providers/{preset_id}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePreset {
    /// Whether hosted speech uses the preset.
    pub enabled: bool,
}

/// Turns one of the caller's presets on or off; another user's preset id is a 404.
#[utoipa::path(
    params(("preset_id" = String, Path, description = "preset id")),
    request_body = UpdatePreset,
    responses((status = 200, body = VoicePreset), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
#[patch("/voice-providers/{preset_id}")]
pub async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<UpdatePreset>,
) -> Result<web::Json<VoicePreset>, ApiError> {
    let preset_id = path.into_inner();
    let enabled = body.into_inner().enabled;
    let row = state
        .db(move |c| repo::set_voice_provider_enabled(c, &caller.user_id, &preset_id, enabled))
        .await?
        .ok_or_else(|| ApiError::NotFound("Voice provider not found".into()))?;
    Ok(web::Json(VoicePreset::of(row)?))
}

/// Deletes one of the caller's presets; another user's preset id is a 404.
#[utoipa::path(
    params(("preset_id" = String, Path, description = "preset id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[delete("/voice-providers/{preset_id}")]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let preset_id = path.into_inner();
    let removed = state
        .db(move |c| repo::delete_voice_provider(c, &caller.user_id, &preset_id))
        .await?;
    if removed {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("Voice provider not found".into()))
    }
}
