use chamade_media::analysis::{sine, tone_amplitude};
use proptest::prelude::*;

use super::*;

fn frames(rate: SampleRate, freq: f64, n: usize) -> Vec<Frame> {
    let samples = sine(rate, freq, -10.0, rate.frame_samples() * n);
    samples
        .chunks_exact(rate.frame_samples())
        .map(|c| Frame::from_samples(rate, c).unwrap())
        .collect()
}

/// Sends `n` frames of a tone through sender → (reorder) → receiver and returns what the
/// receiver played, one frame per tick.
fn round_trip(codec: RtpCodec, n: usize, swap_pairs: bool) -> (Vec<i16>, ReceiverStats) {
    let rate = codec.pcm_rate();
    let mut tx = RtpSender::new(codec, 0x1234_5678, 65_500, 7).unwrap();
    let mut rx = RtpReceiver::new(codec).unwrap();
    let packets: Vec<Vec<u8>> = frames(rate, 440.0, n)
        .iter()
        .map(|f| tx.packetize(f).unwrap().to_vec())
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < packets.len() {
        if swap_pairs && i + 1 < packets.len() {
            rx.on_datagram(&packets[i + 1]).unwrap();
            rx.on_datagram(&packets[i]).unwrap();
            out.extend_from_slice(rx.next_frame().samples());
            out.extend_from_slice(rx.next_frame().samples());
            i += 2;
        } else {
            rx.on_datagram(&packets[i]).unwrap();
            out.extend_from_slice(rx.next_frame().samples());
            i += 1;
        }
    }
    for _ in 0..4 {
        out.extend_from_slice(rx.next_frame().samples());
    }
    (out, rx.stats())
}

#[test]
fn pcmu_and_pcma_carry_a_tone_across_the_sequence_wrap() {
    for codec in [RtpCodec::Pcmu, RtpCodec::Pcma] {
        let (out, stats) = round_trip(codec, 100, false);
        assert_eq!(stats.decoded, 100, "{codec:?}: {stats:?}");
        assert_eq!(stats.concealed, 0);
        let tone = tone_amplitude(&out[1_600..12_800], codec.pcm_rate(), 440.0);
        assert!(tone > 0.25, "{codec:?}: {tone}");
    }
}

#[test]
fn reordered_packets_play_in_order() {
    let (out, stats) = round_trip(RtpCodec::Pcmu, 60, true);
    assert_eq!(stats.decoded, 60, "{stats:?}");
    assert_eq!(stats.concealed, 0);
    assert!(tone_amplitude(&out[1_600..8_000], SampleRate::HZ_8000, 440.0) > 0.25);
}

#[test]
fn opus_legs_round_trip_at_48_and_16_khz() {
    for codec in [RtpCodec::Opus48, RtpCodec::Opus16] {
        let rate = codec.pcm_rate();
        let (out, stats) = round_trip(codec, 50, false);
        assert_eq!(stats.decoded, 50, "{codec:?}: {stats:?}");
        let start = rate.frame_samples() * 10;
        let tone = tone_amplitude(&out[start..start + rate.frame_samples() * 25], rate, 440.0);
        assert!(tone > 0.2, "{codec:?}: {tone}");
    }
}

#[test]
fn a_lost_packet_is_concealed_once() {
    let codec = RtpCodec::Pcma;
    let mut tx = RtpSender::new(codec, 9, 0, 0).unwrap();
    let mut rx = RtpReceiver::new(codec).unwrap();
    for (i, f) in frames(codec.pcm_rate(), 300.0, 20).iter().enumerate() {
        let p = tx.packetize(f).unwrap().to_vec();
        if i != 10 {
            rx.on_datagram(&p).unwrap();
        }
        rx.next_frame();
    }
    for _ in 0..3 {
        rx.next_frame();
    }
    let s = rx.stats();
    assert_eq!((s.decoded, s.concealed), (19, 1), "{s:?}");
}

#[test]
fn sender_counts_sequence_and_timestamp() {
    let mut tx = RtpSender::new(RtpCodec::Pcmu, 42, 65_535, u32::MAX - 100).unwrap();
    let f = Frame::silence(SampleRate::HZ_8000);
    let first = tx.packetize(&f).unwrap().to_vec();
    let second = tx.packetize(&f).unwrap().to_vec();
    let (a, b) = (
        RtpReader::new(&first).unwrap(),
        RtpReader::new(&second).unwrap(),
    );
    assert_eq!(u16::from(a.sequence_number()), 65_535);
    assert_eq!(u16::from(b.sequence_number()), 0);
    assert_eq!(b.timestamp(), a.timestamp().wrapping_add(160));
    assert_eq!(
        (a.payload_type(), a.ssrc(), a.payload().len()),
        (0, 42, 160)
    );
}

#[test]
fn malformed_foreign_and_wrong_size_packets_are_refused() {
    let mut rx = RtpReceiver::new(RtpCodec::Pcmu).unwrap();
    assert!(matches!(rx.on_datagram(&[]), Err(RtpError::Malformed(_))));
    assert!(matches!(
        rx.on_datagram(&[0x80, 0, 0]),
        Err(RtpError::Malformed(_))
    ));
    // Version 1.
    let mut v1 = vec![0x40u8, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    v1.extend([0xFF; 160]);
    assert!(matches!(rx.on_datagram(&v1), Err(RtpError::Malformed(_))));
    let mut tx8 = RtpSender::new(RtpCodec::Pcma, 1, 0, 0).unwrap();
    let pcma = tx8
        .packetize(&Frame::silence(SampleRate::HZ_8000))
        .unwrap()
        .to_vec();
    assert_eq!(rx.on_datagram(&pcma), Err(RtpError::PayloadType(8)));
    let mut short = vec![0x80u8, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    short.extend([0xFF; 100]);
    assert_eq!(rx.on_datagram(&short), Err(RtpError::PayloadSize(100)));
    let mut tx = RtpSender::new(RtpCodec::Pcmu, 1, 0, 0).unwrap();
    rx.on_datagram(tx.packetize(&Frame::silence(SampleRate::HZ_8000)).unwrap())
        .unwrap();
    let mut other = RtpSender::new(RtpCodec::Pcmu, 2, 1, 0).unwrap();
    let foreign = other
        .packetize(&Frame::silence(SampleRate::HZ_8000))
        .unwrap()
        .to_vec();
    assert!(matches!(
        rx.on_datagram(&foreign),
        Err(RtpError::Malformed(_))
    ));
    assert_eq!(rx.stats().refused, 6);
    assert_eq!(rx.stats().packets, 1);
}

proptest! {
    /// Any datagram, however hostile, is taken or refused: never a panic, and the receiver
    /// keeps producing one frame per tick.
    #[test]
    fn arbitrary_datagrams_never_panic(
        datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 1..40),
        opus in any::<bool>(),
    ) {
        let codec = if opus { RtpCodec::Opus48 } else { RtpCodec::Pcmu };
        let mut rx = RtpReceiver::new(codec).unwrap();
        for d in &datagrams {
            let _ = rx.on_datagram(d);
            prop_assert_eq!(rx.next_frame().samples().len(), codec.pcm_rate().frame_samples());
        }
    }
}
