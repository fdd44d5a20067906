use chamade_media::analysis::{sine, tone_amplitude};
use proptest::prelude::*;

use super::*;
use crate::bridge::sip::dtmf::DtmfSender;

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
    // The last packets may still wait in the 40 ms buffer. Counted once they have played,
    // before the stream's end, whose first frames are bridged with concealment.
    let mut stats = rx.stats();
    for _ in 0..4 {
        if stats.decoded + stats.concealed < n as u64 {
            out.extend_from_slice(rx.next_frame().samples());
            stats = rx.stats();
        }
    }
    (out, stats)
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
    // Whatever the buffer still holds plays out.
    for _ in 0..4 {
        if rx.stats().decoded < 19 {
            rx.next_frame();
        }
    }
    let s = rx.stats();
    assert_eq!((s.decoded, s.concealed), (19, 1), "{s:?}");
    // When the stream stops, a few frames are bridged, then it is silence.
    for _ in 0..10 {
        rx.next_frame();
    }
    let end = rx.stats();
    assert_eq!(
        (end.concealed, end.silent - s.silent),
        (1 + 3, 7),
        "{end:?}"
    );
    assert!(rx.next_frame().samples().iter().all(|&x| x == 0));
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

/// Sends `digits` as telephone-events between PCMU audio packets, the way a leg's tick
/// does, and returns every datagram in order.
fn dtmf_stream(digits: &str, audio_before: usize) -> Vec<Vec<u8>> {
    let mut tx = RtpSender::new(RtpCodec::Pcmu, 0xABCD, 65_530, 1_000).unwrap();
    let mut dtmf = DtmfSender::new();
    dtmf.queue(digits).unwrap();
    let silence = Frame::silence(SampleRate::HZ_8000);
    let mut out = Vec::new();
    for _ in 0..audio_before {
        out.push(tx.packetize(&silence).unwrap().to_vec());
    }
    while !dtmf.is_idle() {
        match dtmf.next() {
            Some(event) => out.push(tx.packetize_event(101, &event).to_vec()),
            None => out.push(tx.packetize(&silence).unwrap().to_vec()),
        }
    }
    out.push(tx.packetize(&silence).unwrap().to_vec());
    out
}

#[test]
fn events_share_the_audio_sequence_and_clock() {
    let stream = dtmf_stream("7", 2);
    let packets: Vec<RtpReader<'_>> = stream.iter().map(|p| RtpReader::new(p).unwrap()).collect();
    // 2 audio, 7 events, 2 pause, 1 audio.
    assert_eq!(packets.len(), 12);
    for (i, p) in packets.iter().enumerate() {
        assert_eq!(p.ssrc(), 0xABCD);
        assert_eq!(
            u16::from(p.sequence_number()),
            65_530u16.wrapping_add(i as u16)
        );
    }
    let events = &packets[2..9];
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.payload_type(), 101);
        assert_eq!(e.mark(), i == 0);
        // The event keeps the timestamp of its first packet, the third packet time.
        assert_eq!(e.timestamp(), 1_000 + 2 * 160);
        assert_eq!(e.payload().len(), 4);
        assert_eq!(e.payload()[0], 7);
    }
    // Audio resumes on the timestamp it would have had without the event.
    for (i, p) in packets.iter().enumerate().skip(9) {
        assert_eq!(p.payload_type(), 0);
        assert_eq!(p.timestamp(), 1_000 + 160 * i as u32);
    }
}

#[test]
fn received_events_become_digits_once_each() {
    let mut rx = RtpReceiver::new(RtpCodec::Pcmu).unwrap();
    rx.set_dtmf_payload_type(Some(101));
    let stream = dtmf_stream("19#", 3);
    for (i, p) in stream.iter().enumerate() {
        rx.on_datagram(p).unwrap();
        // Duplicated in the network, too.
        if i % 3 == 0 {
            rx.on_datagram(p).unwrap();
        }
        rx.next_frame();
    }
    let digits: String = std::iter::from_fn(|| rx.take_dtmf()).collect();
    assert_eq!(digits, "19#");
    assert_eq!(rx.stats().refused, 0);
    assert!(rx.stats().events >= 21);
}

#[test]
fn events_are_refused_unless_negotiated_or_from_the_stream() {
    let stream = dtmf_stream("5", 1);
    let mut rx = RtpReceiver::new(RtpCodec::Pcmu).unwrap();
    assert_eq!(rx.on_datagram(&stream[1]), Err(RtpError::PayloadType(101)));
    rx.set_dtmf_payload_type(Some(101));
    rx.on_datagram(&stream[0]).unwrap();
    rx.on_datagram(&stream[1]).unwrap();
    assert_eq!(rx.take_dtmf(), Some('5'));
    assert_eq!(rx.take_dtmf(), None);
    // Too short for an event.
    let mut short = stream[2][..14].to_vec();
    short[2] = 0x77;
    assert_eq!(rx.on_datagram(&short), Err(RtpError::PayloadSize(2)));
    // Another source cannot inject keypresses.
    let mut other = RtpSender::new(RtpCodec::Pcmu, 0x666, 0, 0).unwrap();
    let mut dtmf = DtmfSender::new();
    dtmf.queue("9").unwrap();
    let foreign = other.packetize_event(101, &dtmf.next().unwrap()).to_vec();
    assert!(matches!(
        rx.on_datagram(&foreign),
        Err(RtpError::Malformed(_))
    ));
    assert_eq!(rx.take_dtmf(), None);
    // Switching DTMF off refuses them again.
    rx.set_dtmf_payload_type(None);
    assert_eq!(rx.on_datagram(&stream[3]), Err(RtpError::PayloadType(101)));
    assert_eq!(rx.stats().refused, 4);
}

#[test]
fn unread_digits_keep_the_latest_32() {
    let mut rx = RtpReceiver::new(RtpCodec::Pcma).unwrap();
    rx.set_dtmf_payload_type(Some(96));
    let mut tx = RtpSender::new(RtpCodec::Pcma, 5, 0, 0).unwrap();
    let mut dtmf = DtmfSender::new();
    let digits = "0123456789".repeat(4);
    dtmf.queue(&digits).unwrap();
    while !dtmf.is_idle() {
        if let Some(event) = dtmf.next() {
            rx.on_datagram(tx.packetize_event(96, &event)).unwrap();
        } else {
            tx.packetize(&Frame::silence(SampleRate::HZ_8000)).unwrap();
        }
    }
    let got: String = std::iter::from_fn(|| rx.take_dtmf()).collect();
    assert_eq!(got, digits[8..]);
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
        rx.set_dtmf_payload_type(Some(101));
        for d in &datagrams {
            let _ = rx.on_datagram(d);
            prop_assert_eq!(rx.next_frame().samples().len(), codec.pcm_rate().frame_samples());
            let _ = rx.take_dtmf();
        }
    }
}

#[test]
fn a_dynamic_payload_type_replaces_the_static_one_both_ways() {
    let rate = RtpCodec::Pcmu.pcm_rate();
    let mut tx = RtpSender::new(RtpCodec::Pcmu, 9, 1, 1).unwrap();
    tx.set_payload_type(96);
    let mut plain = RtpReceiver::new(RtpCodec::Pcmu).unwrap();
    let mut negotiated = RtpReceiver::new(RtpCodec::Pcmu).unwrap();
    negotiated.set_payload_type(96);
    for f in frames(rate, 440.0, 3) {
        let packet = tx.packetize(&f).unwrap().to_vec();
        assert_eq!(packet[1] & 0x7f, 96, "sent under the negotiated type");
        assert_eq!(plain.on_datagram(&packet), Err(RtpError::PayloadType(96)));
        assert_eq!(negotiated.on_datagram(&packet), Ok(()));
    }
    assert_eq!(negotiated.stats().packets, 3);
}

#[test]
fn on_a_clean_stream_the_buffer_stays_at_its_floor() {
    let codec = RtpCodec::Pcmu;
    let mut tx = RtpSender::new(codec, 5, 0, 0).unwrap();
    let mut rx = RtpReceiver::new(codec).unwrap();
    for (i, f) in frames(codec.pcm_rate(), 500.0, 100).iter().enumerate() {
        rx.on_datagram(tx.packetize(f).unwrap()).unwrap();
        rx.next_frame();
        // The floor is one frame: a packet that arrived before the tick plays in it, and
        // nothing more is ever held back.
        assert_eq!(rx.stats().decoded, i as u64 + 1, "tick {i}");
    }
    assert_eq!(rx.stats().concealed, 0);
}

#[test]
fn under_jitter_the_buffer_deepens_and_stops_concealing() {
    let codec = RtpCodec::Pcmu;
    let mut tx = RtpSender::new(codec, 5, 0, 0).unwrap();
    let mut rx = RtpReceiver::new(codec).unwrap();
    let packets: Vec<Vec<u8>> = frames(codec.pcm_rate(), 500.0, 600)
        .iter()
        .map(|f| tx.packetize(f).unwrap().to_vec())
        .collect();
    // Each packet is 0 to 3 ticks late, in a fixed scattered pattern.
    let arrival = |seq: usize| seq + (seq * 7 + seq / 5) % 4;
    let mut concealed_early = 0;
    let mut concealed_mid = 0;
    for tick in 0..610 {
        for (seq, p) in packets.iter().enumerate() {
            if arrival(seq) == tick {
                rx.on_datagram(p).unwrap();
            }
        }
        rx.next_frame();
        if tick == 100 {
            concealed_early = rx.stats().concealed;
        }
        if tick == 300 {
            concealed_mid = rx.stats().concealed;
        }
    }
    let s = rx.stats();
    // A one-frame buffer first loses the late packets, then deepens to the delay spread and
    // loses no more (the last ticks only bridge the stream's end).
    assert!(concealed_early > 0, "the delays were felt at first: {s:?}");
    assert!(s.concealed <= concealed_mid + 3, "{s:?}");
    assert!(s.decoded >= 600 - concealed_mid, "{s:?}");
}
