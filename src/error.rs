//! The one error type of the HTTP API: each variant declares its status and its spec error
//! code in one place and always renders `{"detail": "...", "code": "..."}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Human-readable explanation.
    pub detail: String,
    /// Stable machine-readable code.
    pub code: String,
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No credential, or a wrong or revoked one.
    #[error("Invalid or missing API key")]
    Unauthorized,
    /// The request is understood but refused (e.g. signup disabled).
    #[error("{0}")]
    Forbidden(String),
    /// The resource does not exist or belongs to another user (the two are not told apart).
    #[error("{0}")]
    NotFound(String),
    /// A well-formed request that breaks a rule (spec: 400).
    #[error("{message}")]
    BadRequest {
        /// Explanation.
        message: String,
        /// Spec or local code.
        code: &'static str,
    },
    /// The body or a parameter does not parse; names the field.
    #[error("{0}")]
    Unprocessable(String),
    /// Conflicts with existing state (e.g. an address already registered).
    #[error("{0}")]
    Conflict(String),
    /// Over a limit.
    #[error("{0}")]
    TooManyRequests(String),
    /// Our fault; the detail stays in the log.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            message: message.into(),
            code,
        }
    }

    /// A 500 whose detail is logged, not shown.
    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError::Internal(detail.into())
    }

    /// The stable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest { code, .. } => code,
            ApiError::Unprocessable(_) => "validation_error",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooManyRequests(_) => "rate_limited",
            ApiError::Internal(_) => "internal_error",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(detail) = self {
            tracing::error!(%detail, "internal error");
        }
        HttpResponse::build(self.status_code()).json(ErrorBody {
            detail: self.to_string(),
            code: self.code().to_string(),
        })
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        // PostgreSQL cannot store NUL in text: that is the client's input, not our fault.
        if let diesel::result::Error::DatabaseError(_, info) = &e
            && info.message().contains("0x00")
        {
            return ApiError::Unprocessable(
                "Text fields must not contain NUL (\\u0000) characters".into(),
            );
        }
        ApiError::Internal(e.to_string())
    }
}
