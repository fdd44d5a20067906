//! `/api/api-keys`: list, create (shown once) and revoke API keys.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::session::issue_key;
use crate::auth::Caller;
use crate::db::{now_ms, repo, rfc3339};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// A key as listed: never the key itself.
#[derive(Serialize, ToSchema)]
pub struct KeyInfo {
    /// Id for revocation.
    pub key_id: String,
    /// Label.
    pub name: String,
    /// The first characters of the key (`chmd_` + 8).
    pub prefix: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, or null when never used.
    pub last_used_at: Option<String>,
}

/// `GET /api/api-keys`.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    /// The caller's keys, oldest first.
    pub keys: Vec<KeyInfo>,
}

/// Lists the caller's keys.
#[utoipa::path(
    responses((status = 200, body = KeyList), (status = 401, body = ErrorBody)),
    security(("api_key" = []))
)]
#[get("/api-keys")]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<KeyList>, ApiError> {
    let keys = state
        .db(move |c| repo::api_keys_of(c, &caller.user_id))
        .await?;
    Ok(web::Json(KeyList {
        keys: keys
            .into_iter()
            .map(|k| KeyInfo {
                key_id: k.id,
                name: k.name,
                prefix: k.prefix,
                created_at: rfc3339(k.created_at),
                last_used_at: k.last_used_at.map(rfc3339),
            })
            .collect(),
    }))
}

/// `POST /api/api-keys`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Label, 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub name: String,
}

/// A new key, shown only in this response.
#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    /// Id for revocation.
    pub key_id: String,
    /// Label.
    pub name: String,
    /// The whole key, `chmd_…`.
    pub key: String,
    /// The first characters, as listed later.
    pub prefix: String,
    /// RFC 3339.
    pub created_at: String,
}

/// Creates a key (the account's address must be verified).
#[utoipa::path(
    request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
#[post("/api-keys")]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<CreateKey>,
) -> Result<HttpResponse, ApiError> {
    let name = crate::api::session::check_label("name", &body.into_inner().name, 100)?;
    let now = now_ms();
    let stored_name = name.clone();
    let (key_id, key) = state
        .db(move |c| {
            let user = repo::user(c, &caller.user_id)?;
            if !user.email_verified {
                return Err(ApiError::Forbidden(
                    "Verify your email address first".into(),
                ));
            }
            issue_key(c, &user.id, &stored_name, now, |_| Ok(()))
        })
        .await?;
    Ok(HttpResponse::Created().json(CreatedKey {
        prefix: key[..13].to_string(),
        key_id,
        name,
        key,
        created_at: rfc3339(now),
    }))
}

/// Revokes one of the caller's keys; another user's key id is a 404.
#[utoipa::path(
    params(("key_id" = String, Path, description = "key id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
#[delete("/api-keys/{key_id}")]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key_id = path.into_inner();
    let removed = state
        .db(move |c| repo::delete_api_key(c, &caller.user_id, &key_id))
        .await?;
    if removed {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("API key not found".into()))
    }
}
