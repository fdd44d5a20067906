//! Queries. Every function that reads or changes a user's data takes the user id and puts
//! it in the `WHERE` clause, so that one user can never reach another's rows.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::AnyConnection;
use super::models::{ApiKey, Session, User};
use super::schema::{api_keys, sessions, users};
use crate::error::ApiError;

fn map_unique(e: DieselError, what: &str) -> ApiError {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            ApiError::Conflict(format!("{what} already exists"))
        }
        other => ApiError::from(other),
    }
}

/// Number of accounts (zero on a fresh install: the owner account is then created).
pub fn count_users(c: &mut AnyConnection) -> Result<i64, ApiError> {
    Ok(users::table.count().get_result(c)?)
}

/// Creates an account; 409 when the address is taken.
pub fn insert_user(c: &mut AnyConnection, user: &User) -> Result<(), ApiError> {
    diesel::insert_into(users::table)
        .values(user)
        .execute(c)
        .map_err(|e| map_unique(e, "an account with this email"))?;
    Ok(())
}

/// An account by id.
pub fn user(c: &mut AnyConnection, user_id: &str) -> Result<User, ApiError> {
    users::table
        .find(user_id)
        .select(User::as_select())
        .first(c)
        .optional()?
        .ok_or_else(|| ApiError::NotFound("User not found".into()))
}

/// An account by (case-insensitively normalised) email.
pub fn user_by_email(c: &mut AnyConnection, email: &str) -> Result<Option<User>, ApiError> {
    Ok(users::table
        .filter(users::email.eq(email))
        .select(User::as_select())
        .first(c)
        .optional()?)
}

/// Sets the display name.
pub fn set_name(c: &mut AnyConnection, user_id: &str, name: &str) -> Result<(), ApiError> {
    diesel::update(users::table.find(user_id))
        .set(users::name.eq(name))
        .execute(c)?;
    Ok(())
}

/// Replaces the password hash.
pub fn set_password_hash(c: &mut AnyConnection, user_id: &str, phc: &str) -> Result<(), ApiError> {
    diesel::update(users::table.find(user_id))
        .set(users::password_hash.eq(phc))
        .execute(c)?;
    Ok(())
}

/// Records an address change awaiting confirmation.
pub fn set_pending_email(
    c: &mut AnyConnection,
    user_id: &str,
    email: &str,
) -> Result<(), ApiError> {
    diesel::update(users::table.find(user_id))
        .set(users::pending_email.eq(Some(email)))
        .execute(c)?;
    Ok(())
}

/// Stores a new API key (by hash).
pub fn insert_api_key(c: &mut AnyConnection, key: &ApiKey) -> Result<(), ApiError> {
    diesel::insert_into(api_keys::table)
        .values(key)
        .execute(c)
        .map_err(|e| map_unique(e, "this key"))?;
    Ok(())
}

/// The user's keys, oldest first.
pub fn api_keys_of(c: &mut AnyConnection, user_id: &str) -> Result<Vec<ApiKey>, ApiError> {
    Ok(api_keys::table
        .filter(api_keys::user_id.eq(user_id))
        .order((api_keys::created_at.asc(), api_keys::id.asc()))
        .select(ApiKey::as_select())
        .load(c)?)
}

/// Revokes one of the user's keys; false when there is no such key *of this user*.
pub fn delete_api_key(
    c: &mut AnyConnection,
    user_id: &str,
    key_id: &str,
) -> Result<bool, ApiError> {
    let n = diesel::delete(
        api_keys::table
            .filter(api_keys::id.eq(key_id))
            .filter(api_keys::user_id.eq(user_id)),
    )
    .execute(c)?;
    Ok(n > 0)
}

/// Resolves a key hash to `(key_id, user_id)` and records its use.
pub fn touch_api_key(
    c: &mut AnyConnection,
    key_hash: &str,
    now: i64,
) -> Result<Option<(String, String)>, ApiError> {
    let found: Option<(String, String)> = api_keys::table
        .filter(api_keys::key_hash.eq(key_hash))
        .select((api_keys::id, api_keys::user_id))
        .first(c)
        .optional()?;
    if let Some((id, _)) = &found {
        diesel::update(api_keys::table.find(id))
            .set(api_keys::last_used_at.eq(Some(now)))
            .execute(c)?;
    }
    Ok(found)
}

/// Stores a login session (by cookie hash).
pub fn insert_session(c: &mut AnyConnection, session: &Session) -> Result<(), ApiError> {
    diesel::insert_into(sessions::table)
        .values(session)
        .execute(c)?;
    Ok(())
}

/// The user of an unexpired session.
pub fn session_user(
    c: &mut AnyConnection,
    hash: &str,
    now: i64,
) -> Result<Option<String>, ApiError> {
    Ok(sessions::table
        .filter(sessions::id.eq(hash))
        .filter(sessions::expires_at.gt(now))
        .select(sessions::user_id)
        .first(c)
        .optional()?)
}

/// Ends a session.
pub fn delete_session(c: &mut AnyConnection, hash: &str) -> Result<(), ApiError> {
    diesel::delete(sessions::table.filter(sessions::id.eq(hash))).execute(c)?;
    Ok(())
}

/// Every table that holds a user's rows, with the rows, for export and erasure checks.
pub const USER_TABLES: &[&str] = &["users", "api_keys", "sessions"];

/// All of a user's data (secrets as hashes or hints only), table by table.
pub fn export(c: &mut AnyConnection, user_id: &str) -> Result<serde_json::Value, ApiError> {
    let user = user(c, user_id)?;
    let keys = api_keys_of(c, user_id)?;
    let sessions: Vec<Session> = sessions::table
        .filter(sessions::user_id.eq(user_id))
        .select(Session::as_select())
        .load(c)?;
    Ok(serde_json::json!({
        "users": [user],
        "api_keys": keys,
        "sessions": sessions,
    }))
}

/// Rows a user has in each table: what an erasure must bring to zero.
pub fn row_counts(
    c: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<(&'static str, i64)>, ApiError> {
    Ok(vec![
        (
            "users",
            users::table
                .filter(users::id.eq(user_id))
                .count()
                .get_result(c)?,
        ),
        (
            "api_keys",
            api_keys::table
                .filter(api_keys::user_id.eq(user_id))
                .count()
                .get_result(c)?,
        ),
        (
            "sessions",
            sessions::table
                .filter(sessions::user_id.eq(user_id))
                .count()
                .get_result(c)?,
        ),
    ])
}

/// Deletes every row of a user, child tables first, in one transaction.
pub fn delete_user(c: &mut AnyConnection, user_id: &str) -> Result<(), ApiError> {
    c.transaction::<_, DieselError, _>(|c| {
        diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(c)?;
        diesel::delete(api_keys::table.filter(api_keys::user_id.eq(user_id))).execute(c)?;
        diesel::delete(users::table.filter(users::id.eq(user_id))).execute(c)?;
        Ok(())
    })?;
    Ok(())
}
