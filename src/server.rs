//! Building and running the HTTP server.

use std::net::TcpListener;
use std::sync::Arc;

/// Whether the kernel reports `TCP_NODELAY` on a connection's socket, read right after the
/// server set it; the call WebSocket reports it in `call_stats` so that Nagle stalls can be
/// ruled out from the client side.
#[derive(Debug, Clone, Copy)]
pub struct TcpNoDelay(pub bool);

use actix_web::middleware::{NormalizePath, TrailingSlash};
use actix_web::{App, HttpServer, dev::Server, web};
use utoipa_actix_web::AppExt;

use crate::api;
use crate::auth::crypto::SecretBox;
use crate::config::Config;
use crate::db::{self, DbPool};
use crate::state::AppState;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Db(#[from] db::DbError),
    /// The mixer shards could not be started.
    #[error("{0}")]
    Media(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Opens the database named by the configuration and runs its migrations.
pub fn open_database(config: &Config) -> Result<DbPool, StartError> {
    let url = config.database_url()?;
    Ok(db::connect(&url, config.db_pool_size)?)
}

/// The OpenAPI document of every route, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = App::new()
        .into_utoipa_app()
        .configure(api::routes)
        .split_for_parts();
    api::document_security(&mut doc);
    doc
}

/// Builds the server on an already bound listener (tests bind port 0), without running it.
pub fn build(listener: TcpListener, state: AppState, workers: usize) -> Result<Server, StartError> {
    let doc = web::Data::new(openapi());
    let registry = web::Data::new(actix::Actor::start(
        chamade_actors::registry::CallRegistry::default(),
    ));
    let media = web::Data::new(
        crate::media_plane::MediaPlane::start(state.config.effective_mixer_shards())
            .map_err(|e| StartError::Media(e.to_string()))?,
    );
    let rtp_legs = web::Data::new(crate::api::rtp::RtpLegs::default());
    let webrtc_legs = web::Data::new(crate::api::webrtc::WebRtcLegs::default());
    let join_tokens = web::Data::new(crate::api::webrtc::JoinTokens::default());
    let sip = web::Data::new(crate::sip::SipService::start(
        state.clone(),
        registry.get_ref().clone(),
        media.clone().into_inner(),
    ));
    let data = web::Data::new(state);
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let server = HttpServer::new(move || {
        // The document's own route comes before the `/api` scope, which would otherwise
        // claim the path.
        let (app, _) = App::new()
            .into_utoipa_app()
            .app_data(data.clone())
            .app_data(doc.clone())
            .app_data(registry.clone())
            .app_data(media.clone())
            .app_data(rtp_legs.clone())
            .app_data(webrtc_legs.clone())
            .app_data(join_tokens.clone())
            .app_data(sip.clone())
            .app_data(api::json_config())
            .app_data(api::path_config())
            .app_data(api::query_config())
            .map(|app| {
                app.route(
                    "/api/openapi.json",
                    web::get().to(|doc: web::Data<utoipa::openapi::OpenApi>| async move {
                        web::Json(doc.get_ref().clone())
                    }),
                )
                .route(
                    "/api/call/{call_id}/stream",
                    web::get().to(crate::ws::stream),
                )
                .route("/metrics", web::get().to(crate::metrics::metrics))
                .route(
                    "/join/assets/{file}",
                    web::get().to(crate::api::webrtc::asset),
                )
                .route("/join/{token}", web::get().to(crate::api::webrtc::page))
                .route(
                    "/join/{token}/info",
                    web::get().to(crate::api::webrtc::info),
                )
                .route(
                    "/join/{token}/ws",
                    web::get().to(crate::api::webrtc::events),
                )
            })
            .configure(api::routes)
            .split_for_parts();
        app.default_service(web::to(api::not_found))
            .wrap(actix_web::middleware::from_fn(crate::auth::authenticate))
            .wrap(NormalizePath::new(TrailingSlash::Trim))
            .wrap(tracing_actix_web::TracingLogger::default())
    })
    // Audio rides on these sockets: never let Nagle hold back a 20 ms frame.
    .on_connect(|conn, ext| {
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "cannot set TCP_NODELAY");
            }
            // Read back from the kernel, for `call_stats` to report what the socket does.
            ext.insert(TcpNoDelay(tcp.nodelay().unwrap_or(false)));
        }
    })
    .workers(workers.max(1))
    .shutdown_timeout(5)
    .listen(listener)
    .map_err(|source| StartError::Bind { addr, source })?
    .run();
    Ok(server)
}

/// State for a server on `config` with an open pool and its sealing key.
pub fn state(config: Config, pool: DbPool, secrets: SecretBox) -> AppState {
    AppState {
        pool,
        config: Arc::new(config),
        secrets: Arc::new(secrets),
        hub: Arc::default(),
    }
}
