//! The sans-IO media half of the SIP bridge: SDP offer/answer for a phone leg ([`sdp`]),
//! RFC 4733 DTMF ([`dtmf`]) and the little RTCP a phone leg needs ([`rtcp`]).
//!
//! Signalling (the SIP dialog itself) and sockets are the server's; audio goes through
//! [`crate::bridge::rtp`], which these modules configure (codec, payload types, remote
//! address) and extend with telephone-events. Everything here is plain functions and
//! state structs, testable without a network.

pub mod dtmf;
pub mod rtcp;
pub mod sdp;
