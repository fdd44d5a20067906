//! The HTTP API under `/api`: one module per resource of the product documentation.
//! Handlers parse, call the repositories or actors, and map the result; nothing else.

pub mod account;
pub mod bot_tokens;
pub mod calls;
pub mod connections;
pub mod events;
pub mod keys;
pub mod rtp;
pub mod session;
pub mod sip;
pub mod voice;
pub mod webrtc;

use actix_web::{HttpRequest, HttpResponse, error::JsonPayloadError, web};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::ApiError;

/// Largest JSON body accepted by the account API.
pub const MAX_JSON_BYTES: usize = 256 * 1024;

/// Registers every route (with its OpenAPI description).
pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(
        scope::scope("/api")
            .service(session::health)
            .service(session::signup)
            .service(session::login)
            .service(session::logout)
            .service(events::events)
            .service(account::account)
            .service(account::usage)
            .service(account::profile)
            .service(account::change_password)
            .service(account::change_email)
            .service(account::delete_account)
            .service(account::export)
            .service(calls::create)
            .service(calls::status)
            .service(calls::list)
            .service(calls::accept)
            .service(calls::refuse)
            .service(calls::hang_up)
            .service(calls::chat)
            .service(calls::say)
            .service(calls::typing)
            .service(calls::dtmf)
            .service(rtp::add)
            .service(rtp::remove)
            .service(webrtc::whip)
            .service(webrtc::whep)
            .service(webrtc::whip_leave)
            .service(webrtc::whep_leave)
            .service(keys::list)
            .service(keys::create)
            .service(keys::delete)
            .service(bot_tokens::list)
            .service(bot_tokens::create)
            .service(bot_tokens::delete)
            .service(connections::platforms)
            .service(connections::oauth_start)
            .service(connections::disconnect)
            .service(connections::telegram_connect)
            .service(connections::slack_install)
            .service(connections::invite_link)
            .service(sip::show_trunk)
            .service(sip::connect_trunk)
            .service(sip::disconnect_trunk)
            .service(sip::list_dids)
            .service(sip::add_did)
            .service(sip::remove_did)
            .service(sip::did_settings)
            .service(voice::list)
            .service(voice::create)
            .service(voice::update)
            .service(voice::delete),
    );
}

/// Turns a body that does not parse into a 422 naming the problem (serde names the field).
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_JSON_BYTES)
        .error_handler(|err, _req: &HttpRequest| {
            let message = match &err {
                JsonPayloadError::Deserialize(e) => format!("Invalid request body: {e}"),
                JsonPayloadError::ContentType => {
                    "Invalid request body: expected Content-Type: application/json".to_string()
                }
                JsonPayloadError::OverflowKnownLength { .. }
                | JsonPayloadError::Overflow { .. } => {
                    format!("Request body larger than {MAX_JSON_BYTES} bytes")
                }
                other => format!("Invalid request body: {other}"),
            };
            ApiError::Unprocessable(message).into()
        })
}

/// Path and query parameters that do not parse: 422 as well.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|err, _| ApiError::Unprocessable(format!("Invalid path: {err}")).into())
}

/// Query strings that do not parse.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|err, _| ApiError::Unprocessable(format!("Invalid query: {err}")).into())
}

/// Unknown routes: a JSON 404 like every other error.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::NotFound(format!(
        "No route for {} {}",
        req.method(),
        req.path()
    )))
}

/// Adds the authentication schemes the API accepts to the generated document.
pub fn document_security(doc: &mut utoipa::openapi::OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "api_key",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
    );
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    doc.info.title = "chamade".into();
    doc.info.description = Some("Voice and chat gateway for AI agents".into());
    doc.info.version = crate::VERSION.into();
}
