//! A session description from a peer, through the gateway's offer/answer: parsed as an
//! INVITE's offer and answered (`sdp::parse`, `sdp::answer`), and read as the answer to
//! our own offer (`sdp::accept_answer`). Beyond not panicking, an answer the gateway
//! writes must be SDP the gateway itself reads back to the same codec and payload types.

#![no_main]

use chamade_actors::bridge::sip::sdp::{self, LocalMedia};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(offer) = sdp::parse(data) else {
        return;
    };
    let _ = sdp::accept_answer(&offer);
    let local = LocalMedia {
        address: [192, 0, 2, 10].into(),
        rtp_port: 40_000,
        session_id: 42,
    };
    let Ok((answer, negotiated)) = sdp::answer(&offer, &local) else {
        return;
    };
    let text = answer.to_string();
    let reread = sdp::parse(text.as_bytes())
        .unwrap_or_else(|e| panic!("our answer does not parse ({e}):\n{text}"));
    let accepted = sdp::accept_answer(&reread)
        .unwrap_or_else(|e| panic!("our answer is not acceptable ({e}):\n{text}"));
    assert_eq!(accepted.codec, negotiated.codec, "{text}");
    assert_eq!(accepted.payload_type, negotiated.payload_type, "{text}");
    assert_eq!(
        accepted.dtmf_payload_type, negotiated.dtmf_payload_type,
        "{text}"
    );
    assert_eq!(accepted.remote.port(), local.rtp_port, "{text}");
});
