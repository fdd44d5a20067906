use proptest::prelude::*;

use super::*;

/// One packet as it travels: the event's RTP timestamp and the payload.
type Wire = (u32, [u8; EVENT_PAYLOAD_BYTES]);

/// Runs `sender` until idle, giving each event packet the timestamp a packetizer would
/// (the packet time of its `new_event` packet), and returns the packets in order with the
/// number of packet times used.
fn drain(sender: &mut DtmfSender) -> (Vec<Wire>, usize) {
    let mut wire = Vec::new();
    let mut ticks = 0;
    let mut event_ts = 0;
    while !sender.is_idle() {
        let now = 1_000 + 160 * ticks as u32;
        if let Some(p) = sender.next() {
            if p.new_event {
                event_ts = now;
            }
            wire.push((event_ts, p.payload));
        }
        ticks += 1;
        assert!(ticks < 10_000, "sender never went idle");
    }
    (wire, ticks)
}

fn receive(wire: &[Wire]) -> String {
    let mut rx = DtmfReceiver::new();
    wire.iter()
        .filter_map(|(ts, payload)| rx.on_event(*ts, payload))
        .collect()
}

#[test]
fn digits_and_events_map_both_ways() {
    for (c, e) in [
        ('0', 0),
        ('9', 9),
        ('*', 10),
        ('#', 11),
        ('A', 12),
        ('D', 15),
    ] {
        assert_eq!(digit_event(c), Some(e));
        assert_eq!(event_digit(e), Some(c));
    }
    assert_eq!(digit_event('b'), Some(13));
    for c in ['E', 'e', ' ', '+', 'é', '\0'] {
        assert_eq!(digit_event(c), None, "{c:?}");
    }
    for e in [16, 17, 100, 255] {
        assert_eq!(event_digit(e), None);
    }
}

#[test]
fn one_digit_is_five_tone_packets_three_ends_and_a_pause() {
    let mut tx = DtmfSender::new();
    assert!(tx.is_idle());
    tx.queue("5").unwrap();
    assert!(!tx.is_idle());
    let mut packets = Vec::new();
    for _ in 0..7 {
        packets.push(tx.next().expect("an event packet"));
    }
    let durations: Vec<u16> = packets
        .iter()
        .map(|p| u16::from_be_bytes([p.payload[2], p.payload[3]]))
        .collect();
    assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800]);
    for (i, p) in packets.iter().enumerate() {
        assert_eq!(p.payload[0], 5);
        assert_eq!(p.payload[1] & 0x3F, 10, "volume");
        assert_eq!(p.payload[1] & 0x40, 0, "reserved bit");
        assert_eq!(p.payload[1] & 0x80 != 0, i >= 4, "E bit of packet {i}");
        assert_eq!((p.marker, p.new_event), (i == 0, i == 0));
    }
    assert_eq!(tx.next(), None);
    assert!(!tx.is_idle(), "pausing");
    assert_eq!(tx.next(), None);
    assert!(tx.is_idle());
    assert_eq!(tx.next(), None);
}

#[test]
fn digits_round_trip_in_order_exactly_once() {
    let mut tx = DtmfSender::new();
    tx.queue("1234567890*#abcd").unwrap();
    let (wire, ticks) = drain(&mut tx);
    assert_eq!(wire.len(), 16 * 7);
    assert_eq!(ticks, 16 * 9);
    assert_eq!(receive(&wire), "1234567890*#ABCD");
}

#[test]
fn repeated_digits_are_separate_events() {
    let mut tx = DtmfSender::new();
    tx.queue("11").unwrap();
    tx.queue("1").unwrap();
    let (wire, _) = drain(&mut tx);
    assert_eq!(receive(&wire), "111");
}

#[test]
fn duplicated_lost_and_reordered_packets_still_give_each_digit_once() {
    let mut tx = DtmfSender::new();
    tx.queue("908#").unwrap();
    let (wire, _) = drain(&mut tx);
    let mut mangled = Vec::new();
    for (i, packet) in wire.iter().enumerate() {
        match i % 7 {
            // The first two packets of every event are lost.
            0 | 1 => {}
            // Network duplicates.
            2 => mangled.extend([*packet, *packet]),
            _ => mangled.push(*packet),
        }
    }
    // A late repeat of the first event arrives after the second has started.
    mangled.insert(9, wire[6]);
    assert_eq!(receive(&mangled), "908#");
    // Only the final end packets survive.
    let ends: Vec<Wire> = wire
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 7 == 6)
        .map(|(_, p)| *p)
        .collect();
    assert_eq!(receive(&ends), "908#");
}

#[test]
fn short_payloads_and_unknown_events_give_nothing() {
    let mut rx = DtmfReceiver::new();
    assert_eq!(rx.on_event(1, &[]), None);
    assert_eq!(rx.on_event(2, &[5, 10, 0]), None);
    // Flash (16) is an event, but not a digit.
    assert_eq!(rx.on_event(3, &[16, 10, 0, 160]), None);
    // A short packet does not mark its timestamp as seen.
    assert_eq!(rx.on_event(2, &[5, 10, 0, 160]), Some('5'));
    // Extra bytes (a redundant or padded payload) are ignored.
    assert_eq!(rx.on_event(4, &[11, 10, 0, 160, 9, 9]), Some('#'));
}

#[test]
fn bad_digits_are_refused_with_nothing_queued() {
    let mut tx = DtmfSender::new();
    assert_eq!(tx.queue("12x3"), Err(DtmfError::BadDigit('x')));
    assert!(tx.is_idle());
    assert_eq!(tx.queue("1 2"), Err(DtmfError::BadDigit(' ')));
    assert!(tx.is_idle());
    assert_eq!(tx.next(), None);
    tx.queue("").unwrap();
    assert!(tx.is_idle());
}

#[test]
fn at_most_64_digits_wait() {
    let mut tx = DtmfSender::new();
    let too_many = "1".repeat(MAX_QUEUED_DIGITS + 1);
    assert_eq!(tx.queue(&too_many), Err(DtmfError::TooMany));
    assert!(tx.is_idle());
    tx.queue(&"2".repeat(MAX_QUEUED_DIGITS - 1)).unwrap();
    assert_eq!(tx.queue("34"), Err(DtmfError::TooMany));
    tx.queue("3").unwrap();
    assert_eq!(tx.queue("4"), Err(DtmfError::TooMany));
    // Once a digit starts playing, its place is free again.
    assert!(tx.next().is_some());
    tx.queue("4").unwrap();
    let (wire, _) = drain(&mut tx);
    let mut expected = "2".repeat(MAX_QUEUED_DIGITS - 1);
    expected.push_str("34");
    // The first digit's first packet was taken above, so its later packets report it.
    assert_eq!(receive(&wire), expected);
}

proptest! {
    /// Whatever the digits and however the packets are duplicated or dropped (keeping at
    /// least one packet per event), each digit comes out once and in order.
    #[test]
    fn any_digits_survive_duplication_and_loss(
        digits in "[0-9*#A-Da-d]{0,20}",
        fate in proptest::collection::vec(0u8..4, 20 * 7),
    ) {
        let mut tx = DtmfSender::new();
        tx.queue(&digits).unwrap();
        let (wire, _) = drain(&mut tx);
        let mut mangled = Vec::new();
        for (i, packet) in wire.iter().enumerate() {
            let keep_anyway = i % 7 == 6;
            match fate.get(i).copied().unwrap_or(1) {
                0 if !keep_anyway => {}
                2 => mangled.extend([*packet, *packet]),
                _ => mangled.push(*packet),
            }
        }
        prop_assert_eq!(receive(&mangled), digits.to_ascii_uppercase());
    }

    /// Arbitrary payloads never panic the receiver.
    #[test]
    fn arbitrary_events_never_panic(
        events in proptest::collection::vec((any::<u32>(), proptest::collection::vec(any::<u8>(), 0..8)), 0..50),
    ) {
        let mut rx = DtmfReceiver::new();
        for (ts, payload) in &events {
            let _ = rx.on_event(*ts, payload);
        }
    }
}
