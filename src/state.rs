//! What every request handler shares: the database pool, the configuration and the key that
//! seals secrets at rest.

use std::sync::Arc;

use actix_web::web;

use crate::auth::crypto::SecretBox;
use crate::config::Config;
use crate::db::{AnyConnection, DbPool};
use crate::error::ApiError;

/// Shared, cheaply cloned application state.
#[derive(Clone)]
pub struct AppState {
    /// The database pool.
    pub pool: DbPool,
    /// The configuration the server started with.
    pub config: Arc<Config>,
    /// Seals and opens third-party secrets (bot tokens, SIP passwords, speech keys).
    pub secrets: Arc<SecretBox>,
    /// Per-user events for push channels (inbound calls ringing, …).
    pub hub: Arc<crate::hub::EventHub>,
}

impl AppState {
    /// Runs `f` on a pooled connection on the blocking thread pool, so that the async
    /// workers never wait on the database and no connection is held across an `.await`.
    pub async fn db<F, T>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        web::block(move || {
            let mut conn = pool.get().map_err(|e| ApiError::internal(e.to_string()))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
    }
}
