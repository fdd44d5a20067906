//! Just enough RTCP (RFC 3550 §6) for a SIP phone leg: recognise it, so that it is not
//! mistaken for media, and send the minimal receiver report that keeps peers which time out
//! silent RTCP from hanging up.
//!
//! With rtcp-mux (RFC 5761) RTP and RTCP share one port and are told apart by the second
//! byte; without it RTCP arrives on the next port up and [`classify`] checks it is RTCP at
//! all. Report contents (loss, jitter, round-trip time) are not used by the gateway.

/// Bytes of the common header of every RTCP packet: V/P/count, type, length.
const HEADER_BYTES: usize = 4;
/// The payload type of a receiver report.
const RECEIVER_REPORT: u8 = 201;

/// The type of an RTCP packet, from its payload-type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RtcpKind {
    /// SR, 200: reception statistics plus the sender's clock.
    SenderReport,
    /// RR, 201: reception statistics.
    ReceiverReport,
    /// SDES, 202: source descriptions such as the CNAME.
    Sdes,
    /// BYE, 203: the source is leaving, a hint that the call is ending.
    Bye,
    /// APP, 204: application-defined.
    App,
    /// Any other type in the RTCP range (feedback, XR, ...), with its number.
    Other(u8),
}

impl RtcpKind {
    fn from_payload_type(pt: u8) -> RtcpKind {
        match pt {
            200 => RtcpKind::SenderReport,
            201 => RtcpKind::ReceiverReport,
            202 => RtcpKind::Sdes,
            203 => RtcpKind::Bye,
            204 => RtcpKind::App,
            other => RtcpKind::Other(other),
        }
    }
}

/// Tells RTCP from RTP on a multiplexed port (RFC 5761 §4): the second byte of RTCP is a
/// payload type in 192-223, which RTP cannot carry there without clashing with the
/// marker bit and the payload types RFC 5761 keeps free. Only that byte is looked at; the
/// packet may still be malformed.
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.get(1).is_some_and(|pt| (192..=223).contains(pt))
}

/// The type of the first packet of a well-formed (compound) RTCP datagram, or `None` when
/// the datagram is not RTCP: every packet in it must be version 2 with a type in 192-223,
/// and their lengths must add up to the datagram's exactly, so truncated or padded-out
/// input is refused rather than half-read.
pub fn classify(datagram: &[u8]) -> Option<RtcpKind> {
    if datagram.len() < 8 {
        return None;
    }
    let mut first = None;
    let mut rest = datagram;
    while !rest.is_empty() {
        let header = rest.get(..HEADER_BYTES)?;
        if header[0] >> 6 != 2 || !(192..=223).contains(&header[1]) {
            return None;
        }
        let words = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let len = (words + 1) * 4;
        rest = rest.get(len..)?;
        first.get_or_insert(RtcpKind::from_payload_type(header[1]));
    }
    first
}

/// Writes an empty receiver report (no report blocks) from `ssrc` into `out` and returns
/// it: the smallest valid RTCP packet, enough to show a peer that the leg is alive without
/// keeping any reception statistics.
pub fn receiver_report(ssrc: u32, out: &mut [u8; 8]) -> &[u8] {
    let [a, b, c, d] = ssrc.to_be_bytes();
    // V=2, P=0, RC=0; length 1 = two 32-bit words minus one.
    *out = [0x80, RECEIVER_REPORT, 0, 1, a, b, c, d];
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A realistic compound packet: an SR with no report blocks followed by an SDES with
    /// one CNAME chunk.
    fn sender_report_with_sdes() -> Vec<u8> {
        let mut p = vec![
            0x80, 200, 0, 6, // SR, 7 words
            0, 0, 0, 1, // SSRC
            0xE9, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // NTP
            0, 0, 0x0A, 0, // RTP timestamp
            0, 0, 0, 5, // packets
            0, 0, 3, 0x20, // octets
        ];
        p.extend([
            0x81, 202, 0, 3, // SDES, one chunk, 4 words
            0, 0, 0, 1, // SSRC
            1, 4, b'a', b'b', b'c', b'd', 0, 0, // CNAME "abcd", end, pad
        ]);
        p
    }

    #[test]
    fn compound_packet_is_classified_by_its_first_packet() {
        let p = sender_report_with_sdes();
        assert!(is_rtcp(&p));
        assert_eq!(classify(&p), Some(RtcpKind::SenderReport));
    }

    #[test]
    fn empty_receiver_report_round_trips() {
        let mut out = [0; 8];
        let rr = receiver_report(0xDEAD_BEEF, &mut out).to_vec();
        assert_eq!(rr, [0x80, 201, 0, 1, 0xDE, 0xAD, 0xBE, 0xEF]);
        assert!(is_rtcp(&rr));
        assert_eq!(classify(&rr), Some(RtcpKind::ReceiverReport));
    }

    #[test]
    fn bye_app_and_feedback_types_are_named() {
        for (pt, kind) in [
            (202, RtcpKind::Sdes),
            (203, RtcpKind::Bye),
            (204, RtcpKind::App),
            (205, RtcpKind::Other(205)),
            (207, RtcpKind::Other(207)),
        ] {
            assert_eq!(classify(&[0x80, pt, 0, 1, 0, 0, 0, 9]), Some(kind));
        }
    }

    #[test]
    fn truncated_and_padded_out_input_is_refused() {
        let p = sender_report_with_sdes();
        for cut in 0..p.len() {
            // Cut right after the SR, what is left is a whole, valid packet.
            let expected = (cut == 28).then_some(RtcpKind::SenderReport);
            assert_eq!(classify(&p[..cut]), expected, "cut at {cut}");
        }
        let mut longer = p.clone();
        longer.extend([0, 0, 0, 0]);
        assert_eq!(classify(&longer), None);
        let mut stray = p;
        stray.push(0x80);
        assert_eq!(classify(&stray), None);
    }

    #[test]
    fn rtp_and_wrong_versions_are_not_rtcp() {
        // PCMU RTP with and without the marker bit.
        let mut rtp = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        rtp.extend([0xFF; 160]);
        assert!(!is_rtcp(&rtp));
        assert_eq!(classify(&rtp), None);
        rtp[1] = 0x80;
        assert!(!is_rtcp(&rtp));
        // Telephone-event 101 with the marker bit is 229, just above the RTCP range.
        rtp[1] = 0x80 | 101;
        assert!(!is_rtcp(&rtp));
        assert_eq!(classify(&[0x40, 201, 0, 1, 0, 0, 0, 1]), None);
        assert_eq!(classify(&[0x80, 201, 0, 1, 0, 0, 0]), None);
        assert!(!is_rtcp(&[]));
        assert!(!is_rtcp(&[0x80]));
    }

    #[test]
    fn second_packet_must_be_rtcp_too() {
        let mut p = vec![0x80, 201, 0, 1, 0, 0, 0, 1];
        p.extend([0x80, 96, 0, 1, 0, 0, 0, 1]);
        assert_eq!(classify(&p), None);
    }
}
