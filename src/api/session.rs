//! Account creation and the dashboard session: the only routes that need no credential.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{SESSION_COOKIE, secrets};
use crate::db::models::{ApiKey, Session, User};
use crate::db::{now_ms, repo};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// How long a dashboard login lasts.
const SESSION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// Liveness.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the server answers.
    pub status: &'static str,
    /// Server version.
    pub version: &'static str,
}

/// Whether the server is up.
#[utoipa::path(responses((status = 200, body = Health)))]
#[get("/health")]
pub async fn health() -> web::Json<Health> {
    web::Json(Health {
        status: "ok",
        version: crate::VERSION,
    })
}

/// `POST /api/signup`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    /// Login address.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// At least 8 characters.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
    /// Display name (defaults to the address's local part).
    #[serde(default)]
    pub name: Option<String>,
}

/// A new account and its first API key (shown only here).
#[derive(Serialize, ToSchema)]
pub struct SignupResponse {
    /// Account id.
    pub user_id: String,
    /// Login address.
    pub email: String,
    /// The first API key, `chmd_…`; store it, it is not shown again.
    pub api_key: String,
    /// Its id, for revocation.
    pub key_id: String,
}

/// Normalises and checks an email address.
pub fn parse_email(raw: &str) -> Result<String, ApiError> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(ApiError::Unprocessable(format!(
            "Invalid email address: {raw:?}"
        )))
    }
}

/// Checks a short text field (names, labels): trimmed, 1 to `max` characters, and no control
/// characters (PostgreSQL cannot store NUL, and none belongs in a name).
pub fn check_label(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(format!(
            "{field} must be 1 to {max} characters, without control characters"
        )));
    }
    Ok(v.to_string())
}

/// Checks a new password.
pub fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < 8 || password.len() > 1024 {
        return Err(ApiError::Unprocessable(
            "Password must be 8 to 1024 characters".into(),
        ));
    }
    Ok(())
}

/// Creates an account with a verified address and its first key (the CLI, the owner
/// account at first start and signup all come through here).
pub fn create_account(
    c: &mut crate::db::AnyConnection,
    email: &str,
    password: &str,
    name: Option<&str>,
) -> Result<(User, String, String), ApiError> {
    let phc = secrets::hash_password(password).map_err(ApiError::internal)?;
    let now = now_ms();
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        email: email.to_string(),
        name: name
            .map(str::to_string)
            .unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_string()),
        password_hash: phc,
        email_verified: true,
        pending_email: None,
        plan: "early_access".into(),
        created_at: now,
    };
    let (key_id, key) = issue_key(c, &user.id, "default", now, |c| repo::insert_user(c, &user))?;
    Ok((user, key_id, key))
}

/// Stores a new key for `user_id` after `before` (in one transaction) and returns
/// `(key_id, key)`.
pub fn issue_key(
    c: &mut crate::db::AnyConnection,
    user_id: &str,
    name: &str,
    now: i64,
    before: impl FnOnce(&mut crate::db::AnyConnection) -> Result<(), ApiError>,
) -> Result<(String, String), ApiError> {
    use diesel::Connection;
    let new = secrets::new_api_key();
    let row = ApiKey {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: user_id.to_string(),
        name: name.to_string(),
        prefix: new.prefix,
        key_hash: new.hash,
        created_at: now,
        last_used_at: None,
    };
    c.transaction::<_, ApiError, _>(|c| {
        before(c)?;
        repo::insert_api_key(c, &row)
    })?;
    Ok((row.id, new.key))
}

/// Creates an account. Disabled with `signup = false` in the configuration.
#[utoipa::path(
    request_body = SignupRequest,
    responses(
        (status = 201, body = SignupResponse),
        (status = 403, body = ErrorBody, description = "signup disabled"),
        (status = 409, body = ErrorBody, description = "address already registered"),
        (status = 422, body = ErrorBody),
    )
)]
#[post("/signup")]
pub async fn signup(
    state: web::Data<AppState>,
    body: web::Json<SignupRequest>,
) -> Result<HttpResponse, ApiError> {
    if !state.config.signup {
        return Err(ApiError::Forbidden(
            "Signup is disabled on this server".into(),
        ));
    }
    let body = body.into_inner();
    let email = parse_email(&body.email)?;
    check_password(&body.password)?;
    let name = body
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    let (user, key_id, key) = state
        .db(move |c| create_account(c, &email, &body.password, name.as_deref()))
        .await?;
    tracing::info!(user_id = %user.id, "account created");
    Ok(HttpResponse::Created().json(SignupResponse {
        user_id: user.id,
        email: user.email,
        api_key: key,
        key_id,
    }))
}

/// `POST /api/login`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Login address.
    pub email: String,
    /// Password.
    pub password: String,
}

/// A successful login; the session itself is the `chamade_session` cookie.
#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    /// Account id.
    pub user_id: String,
    /// When the session ends (RFC 3339).
    pub expires_at: String,
}

/// Opens a dashboard session (HttpOnly cookie).
#[utoipa::path(
    request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody))
)]
#[post("/login")]
pub async fn login(
    state: web::Data<AppState>,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let email = body.email.trim().to_lowercase();
    let token = secrets::random_token(32);
    let hash = secrets::hash_token(&token);
    let now = now_ms();
    let user_id = state
        .db(move |c| {
            let user = repo::user_by_email(c, &email)?;
            // Verify even for an unknown address so that timing does not reveal accounts.
            let phc = user
                .as_ref()
                .map_or(DUMMY_PHC, |u| u.password_hash.as_str());
            let ok = secrets::verify_password(&body.password, phc);
            match user {
                Some(u) if ok => {
                    repo::insert_session(
                        c,
                        &Session {
                            id: hash,
                            user_id: u.id.clone(),
                            created_at: now,
                            expires_at: now + SESSION_TTL_MS,
                        },
                    )?;
                    Ok(u.id)
                }
                _ => Err(ApiError::Unauthorized),
            }
        })
        .await?;
    let cookie = Cookie::build(SESSION_COOKIE, token)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::milliseconds(
            SESSION_TTL_MS,
        ))
        .finish();
    Ok(HttpResponse::Ok().cookie(cookie).json(LoginResponse {
        user_id,
        expires_at: crate::db::rfc3339(now + SESSION_TTL_MS),
    }))
}

/// A valid argon2id hash of a random string, verified against for unknown addresses.
const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2bWgs9nL5Fz0c4m3X8mV3lVtJ6pXq0O2m4m8D0u0x8Y";

/// Ends the dashboard session of the request's cookie.
#[utoipa::path(responses((status = 204)))]
#[post("/logout")]
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if let Some(cookie) = req.cookie(SESSION_COOKIE) {
        let hash = secrets::hash_token(cookie.value());
        state.db(move |c| repo::delete_session(c, &hash)).await?;
    }
    let mut gone = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}
