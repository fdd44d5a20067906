//! A stream of datagrams on a phone leg's ports, as src/rtp_leg.rs reads them: each one
//! into a PCMU receiver with telephone-events on payload type 101
//! (`RtpReceiver::on_datagram`, as on the RTP port), the digits taken (`take_dtmf`), one
//! frame played out per datagram (`next_frame`), and each one classified as on the RTCP
//! port (`rtcp::classify`) and as on a muxed port (`rtcp::is_rtcp`).
//!
//! The input is cut into datagrams by a two-byte big-endian length before each.

#![no_main]

use chamade_actors::bridge::rtp::{RtpCodec, RtpReceiver};
use chamade_actors::bridge::sip::rtcp;
use chamade_actors::bridge::sip::sdp::TELEPHONE_EVENT_PAYLOAD_TYPE;
use libfuzzer_sys::fuzz_target;

/// Samples in one 20 ms frame at 8 kHz.
const FRAME_SAMPLES: usize = 160;

fuzz_target!(|data: &[u8]| {
    let Ok(mut receiver) = RtpReceiver::new(RtpCodec::Pcmu) else {
        return;
    };
    receiver.set_dtmf_payload_type(Some(TELEPHONE_EVENT_PAYLOAD_TYPE));
    let mut rest = data;
    while let [hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (datagram, next) = tail.split_at(len);
        rest = next;
        let classified = rtcp::classify(datagram);
        if classified.is_some() {
            assert!(
                rtcp::is_rtcp(datagram),
                "classified as RTCP but not muxed as RTCP"
            );
        }
        let _ = receiver.on_datagram(datagram);
        while let Some(digit) = receiver.take_dtmf() {
            assert!(
                matches!(digit, '0'..='9' | '*' | '#' | 'A'..='D'),
                "not a key: {digit:?}"
            );
        }
        assert_eq!(receiver.next_frame().samples().len(), FRAME_SAMPLES);
    }
    let stats = receiver.stats();
    assert!(stats.decoded + stats.concealed + stats.silent > 0 || data.len() < 2);
});
