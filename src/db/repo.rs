//! Queries. Every function that reads or changes a user's data takes the user id and puts
//! it in the `WHERE` clause, so that one user can never reach another's rows.

use diesel::Connection as _;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::AnyConnection;
use super::models::{
    ApiKey, BotToken, Connection, LinkToken, Session, SipDid, SipTrunk, User, VoiceProvider,
};
use super::schema::{
    api_keys, bot_tokens, calls, connections, link_tokens, sessions, sip_dids, sip_trunks,
    transcript_lines, users, voice_providers,
};
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

/// Stores a bot token; 409 when the same bot is registered already (by anyone).
pub fn insert_bot_token(c: &mut AnyConnection, bot: &BotToken) -> Result<(), ApiError> {
    diesel::insert_into(bot_tokens::table)
        .values(bot)
        .execute(c)
        .map_err(|e| map_unique(e, "a registration of this bot"))?;
    Ok(())
}

/// The user's bot tokens, oldest first.
pub fn bot_tokens_of(c: &mut AnyConnection, user_id: &str) -> Result<Vec<BotToken>, ApiError> {
    Ok(bot_tokens::table
        .filter(bot_tokens::user_id.eq(user_id))
        .order((bot_tokens::created_at.asc(), bot_tokens::id.asc()))
        .select(BotToken::as_select())
        .load(c)?)
}

/// Deletes one of the user's bot tokens; false when there is no such bot *of this user*.
pub fn delete_bot_token(
    c: &mut AnyConnection,
    user_id: &str,
    bot_id: &str,
) -> Result<bool, ApiError> {
    let n = diesel::delete(
        bot_tokens::table
            .filter(bot_tokens::id.eq(bot_id))
            .filter(bot_tokens::user_id.eq(user_id)),
    )
    .execute(c)?;
    Ok(n > 0)
}

/// Records a linked platform account.
pub fn insert_connection(c: &mut AnyConnection, conn: &Connection) -> Result<(), ApiError> {
    diesel::insert_into(connections::table)
        .values(conn)
        .execute(c)?;
    Ok(())
}

/// The user's linked platform accounts, oldest first.
pub fn connections_of(c: &mut AnyConnection, user_id: &str) -> Result<Vec<Connection>, ApiError> {
    Ok(connections::table
        .filter(connections::user_id.eq(user_id))
        .order((connections::created_at.asc(), connections::id.asc()))
        .select(Connection::as_select())
        .load(c)?)
}

/// Unlinks one of the user's platform accounts; false when it is not *this user's*.
pub fn delete_connection(
    c: &mut AnyConnection,
    user_id: &str,
    connection_id: &str,
) -> Result<bool, ApiError> {
    let n = diesel::delete(
        connections::table
            .filter(connections::id.eq(connection_id))
            .filter(connections::user_id.eq(user_id)),
    )
    .execute(c)?;
    Ok(n > 0)
}

/// The user's SIP trunk, if any.
pub fn sip_trunk_of(c: &mut AnyConnection, user_id: &str) -> Result<Option<SipTrunk>, ApiError> {
    Ok(sip_trunks::table
        .filter(sip_trunks::user_id.eq(user_id))
        .select(SipTrunk::as_select())
        .first(c)
        .optional()?)
}

/// Every stored trunk, for the SIP user agent to register at start.
pub fn all_sip_trunks(c: &mut AnyConnection) -> Result<Vec<SipTrunk>, ApiError> {
    Ok(sip_trunks::table
        .order(sip_trunks::created_at.asc())
        .select(SipTrunk::as_select())
        .load(c)?)
}

/// The number `number` (E.164) and the trunk it belongs to, whoever owns it: an inbound
/// INVITE names only the number.
pub fn sip_did_by_number(
    c: &mut AnyConnection,
    number: &str,
) -> Result<Option<(SipDid, SipTrunk)>, ApiError> {
    Ok(sip_dids::table
        .inner_join(sip_trunks::table)
        .filter(sip_dids::number.eq(number))
        .select((SipDid::as_select(), SipTrunk::as_select()))
        .first(c)
        .optional()?)
}

/// Stores the user's trunk, replacing the settings of an existing one (which keeps its id,
/// creation time and numbers). Returns the stored row and whether it is new.
pub fn upsert_sip_trunk(
    c: &mut AnyConnection,
    trunk: &SipTrunk,
) -> Result<(SipTrunk, bool), ApiError> {
    c.transaction::<_, ApiError, _>(|c| match sip_trunk_of(c, &trunk.user_id)? {
        Some(old) => {
            let new = SipTrunk {
                id: old.id.clone(),
                created_at: old.created_at,
                ..trunk.clone()
            };
            diesel::update(
                sip_trunks::table
                    .filter(sip_trunks::id.eq(&old.id))
                    .filter(sip_trunks::user_id.eq(&trunk.user_id)),
            )
            .set(&new)
            .execute(c)?;
            Ok((new, false))
        }
        None => {
            diesel::insert_into(sip_trunks::table)
                .values(trunk)
                .execute(c)
                .map_err(|e| map_unique(e, "a SIP trunk for this account"))?;
            Ok((trunk.clone(), true))
        }
    })
}

/// Removes the user's trunk and every number on it; false when there was none.
pub fn delete_sip_trunk(c: &mut AnyConnection, user_id: &str) -> Result<bool, ApiError> {
    Ok(c.transaction::<_, DieselError, _>(|c| {
        diesel::delete(sip_dids::table.filter(sip_dids::user_id.eq(user_id))).execute(c)?;
        let n =
            diesel::delete(sip_trunks::table.filter(sip_trunks::user_id.eq(user_id))).execute(c)?;
        Ok(n > 0)
    })?)
}

/// Stores a number; 409 when any account has it already.
pub fn insert_sip_did(c: &mut AnyConnection, did: &SipDid) -> Result<(), ApiError> {
    diesel::insert_into(sip_dids::table)
        .values(did)
        .execute(c)
        .map_err(|e| map_unique(e, "a DID with this number"))?;
    Ok(())
}

/// The user's numbers, oldest first.
pub fn sip_dids_of(c: &mut AnyConnection, user_id: &str) -> Result<Vec<SipDid>, ApiError> {
    Ok(sip_dids::table
        .filter(sip_dids::user_id.eq(user_id))
        .order((sip_dids::created_at.asc(), sip_dids::id.asc()))
        .select(SipDid::as_select())
        .load(c)?)
}

/// Removes one of the user's numbers; false when it is not *this user's*.
pub fn delete_sip_did(
    c: &mut AnyConnection,
    user_id: &str,
    did_id: &str,
) -> Result<bool, ApiError> {
    let n = diesel::delete(
        sip_dids::table
            .filter(sip_dids::id.eq(did_id))
            .filter(sip_dids::user_id.eq(user_id)),
    )
    .execute(c)?;
    Ok(n > 0)
}

/// Sets auto-answer on one of the user's numbers; None when it is not *this user's*.
pub fn set_sip_did_auto_answer(
    c: &mut AnyConnection,
    user_id: &str,
    did_id: &str,
    auto_answer: bool,
) -> Result<Option<SipDid>, ApiError> {
    let scoped = sip_dids::table
        .filter(sip_dids::id.eq(did_id))
        .filter(sip_dids::user_id.eq(user_id));
    diesel::update(scoped)
        .set(sip_dids::auto_answer.eq(auto_answer))
        .execute(c)?;
    Ok(scoped.select(SipDid::as_select()).first(c).optional()?)
}

/// Stores a voice-provider preset.
pub fn insert_voice_provider(
    c: &mut AnyConnection,
    preset: &VoiceProvider,
) -> Result<(), ApiError> {
    diesel::insert_into(voice_providers::table)
        .values(preset)
        .execute(c)?;
    Ok(())
}

/// The user's voice-provider presets, oldest first.
pub fn voice_providers_of(
    c: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<VoiceProvider>, ApiError> {
    Ok(voice_providers::table
        .filter(voice_providers::user_id.eq(user_id))
        .order((voice_providers::created_at.asc(), voice_providers::id.asc()))
        .select(VoiceProvider::as_select())
        .load(c)?)
}

/// Turns one of the user's presets on or off; None when it is not *this user's*.
pub fn set_voice_provider_enabled(
    c: &mut AnyConnection,
    user_id: &str,
    preset_id: &str,
    enabled: bool,
) -> Result<Option<VoiceProvider>, ApiError> {
    let scoped = voice_providers::table
        .filter(voice_providers::id.eq(preset_id))
        .filter(voice_providers::user_id.eq(user_id));
    diesel::update(scoped)
        .set(voice_providers::enabled.eq(enabled))
        .execute(c)?;
    Ok(scoped
        .select(VoiceProvider::as_select())
        .first(c)
        .optional()?)
}

/// Deletes one of the user's presets; false when it is not *this user's*.
pub fn delete_voice_provider(
    c: &mut AnyConnection,
    user_id: &str,
    preset_id: &str,
) -> Result<bool, ApiError> {
    let n = diesel::delete(
        voice_providers::table
            .filter(voice_providers::id.eq(preset_id))
            .filter(voice_providers::user_id.eq(user_id)),
    )
    .execute(c)?;
    Ok(n > 0)
}

/// The kinds (`stt`, `tts`) for which the user has an enabled preset.
pub fn enabled_voice_kinds(c: &mut AnyConnection, user_id: &str) -> Result<Vec<String>, ApiError> {
    Ok(voice_providers::table
        .filter(voice_providers::user_id.eq(user_id))
        .filter(voice_providers::enabled.eq(true))
        .select(voice_providers::kind)
        .distinct()
        .load(c)?)
}

/// Stores a link token (by hash).
pub fn insert_link_token(c: &mut AnyConnection, token: &LinkToken) -> Result<(), ApiError> {
    diesel::insert_into(link_tokens::table)
        .values(token)
        .execute(c)?;
    Ok(())
}

/// The user's link tokens, oldest first.
pub fn link_tokens_of(c: &mut AnyConnection, user_id: &str) -> Result<Vec<LinkToken>, ApiError> {
    Ok(link_tokens::table
        .filter(link_tokens::user_id.eq(user_id))
        .order((link_tokens::created_at.asc(), link_tokens::id.asc()))
        .select(LinkToken::as_select())
        .load(c)?)
}

/// Every table that holds a user's rows, with the rows, for export and erasure checks.
pub const USER_TABLES: &[&str] = &[
    "users",
    "api_keys",
    "sessions",
    "bot_tokens",
    "connections",
    "sip_trunks",
    "sip_dids",
    "voice_providers",
    "link_tokens",
    "calls",
    "transcript_lines",
];

/// All of a user's data (secrets as hashes or hints only), table by table.
pub fn export(c: &mut AnyConnection, user_id: &str) -> Result<serde_json::Value, ApiError> {
    let user = user(c, user_id)?;
    let keys = api_keys_of(c, user_id)?;
    let sessions: Vec<Session> = sessions::table
        .filter(sessions::user_id.eq(user_id))
        .select(Session::as_select())
        .load(c)?;
    let trunks: Vec<SipTrunk> = sip_trunk_of(c, user_id)?.into_iter().collect();
    Ok(serde_json::json!({
        "users": [user],
        "api_keys": keys,
        "sessions": sessions,
        "bot_tokens": bot_tokens_of(c, user_id)?,
        "connections": connections_of(c, user_id)?,
        "sip_trunks": trunks,
        "sip_dids": sip_dids_of(c, user_id)?,
        "voice_providers": voice_providers_of(c, user_id)?,
        "link_tokens": link_tokens_of(c, user_id)?,
        "calls": super::calls::calls_of(c, user_id)?,
        "transcript_lines": super::calls::lines_of(c, user_id)?,
    }))
}

/// Rows a user has in each table: what an erasure must bring to zero.
pub fn row_counts(
    c: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<(&'static str, i64)>, ApiError> {
    macro_rules! counts {
        ($($table:ident . $column:ident),* $(,)?) => {
            vec![$((
                stringify!($table),
                $table::table.filter($table::$column.eq(user_id)).count().get_result(c)?,
            )),*]
        };
    }
    Ok(counts![
        users.id,
        api_keys.user_id,
        sessions.user_id,
        bot_tokens.user_id,
        connections.user_id,
        sip_trunks.user_id,
        sip_dids.user_id,
        voice_providers.user_id,
        link_tokens.user_id,
        calls.user_id,
        transcript_lines.user_id,
    ])
}

/// Deletes every row of a user, child tables first, in one transaction.
pub fn delete_user(c: &mut AnyConnection, user_id: &str) -> Result<(), ApiError> {
    c.transaction::<_, DieselError, _>(|c| {
        diesel::delete(transcript_lines::table.filter(transcript_lines::user_id.eq(user_id)))
            .execute(c)?;
        diesel::delete(calls::table.filter(calls::user_id.eq(user_id))).execute(c)?;
        diesel::delete(link_tokens::table.filter(link_tokens::user_id.eq(user_id))).execute(c)?;
        diesel::delete(voice_providers::table.filter(voice_providers::user_id.eq(user_id)))
            .execute(c)?;
        diesel::delete(sip_dids::table.filter(sip_dids::user_id.eq(user_id))).execute(c)?;
        diesel::delete(sip_trunks::table.filter(sip_trunks::user_id.eq(user_id))).execute(c)?;
        diesel::delete(connections::table.filter(connections::user_id.eq(user_id))).execute(c)?;
        diesel::delete(bot_tokens::table.filter(bot_tokens::user_id.eq(user_id))).execute(c)?;
        diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(c)?;
        diesel::delete(api_keys::table.filter(api_keys::user_id.eq(user_id))).execute(c)?;
        diesel::delete(users::table.filter(users::id.eq(user_id))).execute(c)?;
        Ok(())
    })?;
    Ok(())
}
