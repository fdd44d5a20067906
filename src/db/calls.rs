//! Calls and transcript lines. As everywhere, each query is scoped by the owner's id.

use diesel::prelude::*;

use super::AnyConnection;
use super::schema::{calls, transcript_lines};
use crate::error::ApiError;

/// A call as stored.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = calls)]
pub struct CallRow {
    /// The `call_id`.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Platform name.
    pub platform: String,
    /// Meeting URL or SIP URI ("" when none).
    pub meeting_url: String,
    /// The agent's display name.
    pub agent_name: String,
    /// `outbound` or `inbound`.
    pub direction: String,
    /// The caller's number or name for inbound calls ("" otherwise).
    pub caller: String,
    /// Last known state (snake_case, as in the API).
    pub state: String,
    /// The room's native rate.
    pub sample_rate: i32,
    /// Epoch ms.
    pub created_at: i64,
    /// Epoch ms, when the call reached a terminal state.
    pub ended_at: Option<i64>,
}

/// One transcript line as stored.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = transcript_lines)]
pub struct TranscriptRow {
    /// The call.
    pub call_id: String,
    /// Position in the transcript (the `since` index).
    pub idx: i32,
    /// Owner.
    pub user_id: String,
    /// Who spoke.
    pub speaker: String,
    /// What was said.
    pub text: String,
    /// Epoch ms.
    pub created_at: i64,
}

/// Stores a new call.
pub fn insert_call(c: &mut AnyConnection, call: &CallRow) -> Result<(), ApiError> {
    diesel::insert_into(calls::table).values(call).execute(c)?;
    Ok(())
}

/// One of the user's calls.
pub fn call_of(
    c: &mut AnyConnection,
    user_id: &str,
    call_id: &str,
) -> Result<Option<CallRow>, ApiError> {
    Ok(calls::table
        .filter(calls::id.eq(call_id))
        .filter(calls::user_id.eq(user_id))
        .select(CallRow::as_select())
        .first(c)
        .optional()?)
}

/// All of the user's calls, newest first.
pub fn calls_of(c: &mut AnyConnection, user_id: &str) -> Result<Vec<CallRow>, ApiError> {
    Ok(calls::table
        .filter(calls::user_id.eq(user_id))
        .order(calls::created_at.desc())
        .select(CallRow::as_select())
        .load(c)?)
}

/// Records a state change; a terminal one also records `ended_at`.
pub fn set_state(
    c: &mut AnyConnection,
    user_id: &str,
    call_id: &str,
    state: &str,
    ended_at: Option<i64>,
) -> Result<(), ApiError> {
    diesel::update(
        calls::table
            .filter(calls::id.eq(call_id))
            .filter(calls::user_id.eq(user_id)),
    )
    .set((calls::state.eq(state), calls::ended_at.eq(ended_at)))
    .execute(c)?;
    Ok(())
}

/// Appends a transcript line.
pub fn insert_line(c: &mut AnyConnection, line: &TranscriptRow) -> Result<(), ApiError> {
    diesel::insert_into(transcript_lines::table)
        .values(line)
        .execute(c)?;
    Ok(())
}

/// A call's transcript from index `since` on.
pub fn lines_since(
    c: &mut AnyConnection,
    user_id: &str,
    call_id: &str,
    since: i32,
) -> Result<Vec<TranscriptRow>, ApiError> {
    Ok(transcript_lines::table
        .filter(transcript_lines::call_id.eq(call_id))
        .filter(transcript_lines::user_id.eq(user_id))
        .filter(transcript_lines::idx.ge(since))
        .order(transcript_lines::idx.asc())
        .select(TranscriptRow::as_select())
        .load(c)?)
}

/// Number of transcript lines of a call.
pub fn line_count(c: &mut AnyConnection, user_id: &str, call_id: &str) -> Result<i64, ApiError> {
    Ok(transcript_lines::table
        .filter(transcript_lines::call_id.eq(call_id))
        .filter(transcript_lines::user_id.eq(user_id))
        .count()
        .get_result(c)?)
}

/// Every transcript line of the user (export).
pub fn lines_of(c: &mut AnyConnection, user_id: &str) -> Result<Vec<TranscriptRow>, ApiError> {
    Ok(transcript_lines::table
        .filter(transcript_lines::user_id.eq(user_id))
        .order((transcript_lines::call_id.asc(), transcript_lines::idx.asc()))
        .select(TranscriptRow::as_select())
        .load(c)?)
}

/// Marks calls left live by a previous process as ended (their media died with it).
pub fn end_orphans(c: &mut AnyConnection, now: i64) -> Result<usize, ApiError> {
    Ok(
        diesel::update(calls::table.filter(calls::ended_at.is_null()))
            .set((calls::state.eq("ended"), calls::ended_at.eq(Some(now))))
            .execute(c)?,
    )
}
