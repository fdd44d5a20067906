//! Rows as the repositories read and write them.

use diesel::prelude::*;

use super::schema::{api_keys, sessions, users};

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
