//! Integration tests: a real server on 127.0.0.1 over real HTTP, on SQLite and on
//! PostgreSQL (every test that touches the database runs once per backend).

mod support;

mod account_api;
mod auth;
mod bad_input;
mod browser;
mod calls_api;
mod cli;
mod forwarding;
mod openapi;
mod rtp_api;
mod settings_api;
mod sip_api;
mod sip_calls;
mod sip_dead_call;
mod sip_malformed;
mod sip_peers;
mod stream_ws;
mod webrtc_api;
