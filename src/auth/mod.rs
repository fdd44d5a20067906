//! Who is calling: API keys (`X-API-Key`, `Authorization: Bearer`, `?api_key=` on
//! WebSocket URLs) and dashboard session cookies, resolved to a user by the [`Caller`]
//! extractor. Every handler that takes a `Caller` is authenticated; every query it makes is
//! scoped by `caller.user_id`.

pub mod crypto;
pub mod secrets;

use std::future::Future;
use std::pin::Pin;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};

use crate::db::repo;
use crate::error::ApiError;
use crate::state::AppState;

/// Name of the dashboard session cookie.
pub const SESSION_COOKIE: &str = "chamade_session";

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API key, by its id.
    ApiKey(String),
    /// A dashboard session.
    Session,
}

/// The authenticated user of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user every query is scoped to.
    pub user_id: String,
    /// What authenticated it.
    pub credential: Credential,
}

fn presented_key(req: &HttpRequest) -> Option<String> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    if let Some(k) = header("x-api-key") {
        return Some(k);
    }
    if let Some(auth) = header("authorization") {
        let mut parts = auth.splitn(2, ' ');
        if let (Some(scheme), Some(token)) = (parts.next(), parts.next())
            && scheme.eq_ignore_ascii_case("bearer")
        {
            return Some(token.trim().to_string());
        }
    }
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("api_key").cloned())
        .filter(|k| !k.is_empty())
}

/// Resolves the credential a request presents to its user.
fn resolve(req: &HttpRequest) -> Pin<Box<dyn Future<Output = Result<Caller, ApiError>>>> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let key = presented_key(req);
    let cookie = req.cookie(SESSION_COOKIE).map(|c| c.value().to_string());
    Box::pin(async move {
        let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
        if let Some(key) = key {
            let hash = secrets::hash_token(&key);
            let found = state
                .db(move |c| repo::touch_api_key(c, &hash, crate::db::now_ms()))
                .await?;
            return match found {
                Some((key_id, user_id)) => Ok(Caller {
                    user_id,
                    credential: Credential::ApiKey(key_id),
                }),
                None => Err(ApiError::Unauthorized),
            };
        }
        if let Some(cookie) = cookie {
            let hash = secrets::hash_token(&cookie);
            let found = state
                .db(move |c| repo::session_user(c, &hash, crate::db::now_ms()))
                .await?;
            if let Some(user_id) = found {
                return Ok(Caller {
                    user_id,
                    credential: Credential::Session,
                });
            }
        }
        Err(ApiError::Unauthorized)
    })
}

/// Routes that answer without a credential: creating an account, logging in and out,
/// liveness and the API's own description.
const PUBLIC_PATHS: &[&str] = &[
    "/api/health",
    "/api/signup",
    "/api/login",
    "/api/logout",
    "/api/openapi.json",
];

/// Authenticates every `/api` request except the public ones *before* its body is read, so
/// that a request without a valid credential is always a 401, whatever its body, and the
/// body of an unauthenticated request is never parsed.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let path = req.path();
    // WHIP and WHEP take a call's join token as well as an API key: they check it themselves.
    if !path.starts_with("/api/")
        || PUBLIC_PATHS.contains(&path)
        || crate::api::webrtc::authenticates_itself(path)
    {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    match resolve(req.request()).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.call(req)
                .await
                .map(ServiceResponse::map_into_left_body)
        }
        Err(e) => Ok(req.error_response(e).map_into_right_body()),
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Normally `authenticate` has already resolved it.
        if let Some(caller) = req.extensions().get::<Caller>().cloned() {
            return Box::pin(async move { Ok(caller) });
        }
        resolve(req)
    }
}
