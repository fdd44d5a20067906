//! DTMF as RFC 4733 telephone-events, sans-IO.
//!
//! Phones send keypresses out of band, as RTP packets of the negotiated `telephone-event`
//! payload type rather than as tones in the audio, because G.711 carries tones but any
//! transcoding, concealment or mixing in the path can smear them. Each event is a run of
//! packets sharing one RTP timestamp, its duration growing every 20 ms, and its last packet
//! (the E bit set) sent three times so a single loss does not lose the end.
//!
//! [`DtmfReceiver`] turns those runs back into one digit each; [`DtmfSender`] produces the
//! runs, one [`EventPacket`] per 20 ms packet time, for
//! [`RtpSender::packetize_event`](crate::bridge::rtp::RtpSender::packetize_event) to send.
//! Neither allocates after construction.

/// Bytes of one telephone-event payload (RFC 4733 §2.3): event, E/R/volume, duration.
pub const EVENT_PAYLOAD_BYTES: usize = 4;
/// How many digits a [`DtmfSender`] holds waiting, so an API caller cannot queue minutes of
/// tones into a call.
pub const MAX_QUEUED_DIGITS: usize = 64;

/// Packets per played digit: 100 ms at 20 ms each (long enough for every receiver, short
/// enough to dial quickly).
const TONE_PACKETS: u8 = 5;
/// Times the final packet (E bit) is sent in all, as RFC 4733 §2.5.1.4 recommends.
const END_PACKETS: u8 = 3;
/// Silent packet times between two digits, so a receiver sees two keypresses.
const PAUSE_PACKETS: u8 = 2;
/// Duration units (8 kHz clock) added by every 20 ms packet.
const DURATION_STEP: u16 = 160;
/// Volume field: the power level in -dBm0, 10 being a typical keypad level.
const VOLUME: u8 = 10;
/// Recent events remembered by the receiver, so a repeat delayed behind the next event is
/// still recognised as a repeat.
const REMEMBERED_EVENTS: usize = 8;

/// The RFC 4733 event code of a keypad character: `0`-`9`, `*` (10), `#` (11) and `A`-`D`
/// (12-15, either case). `None` for anything a keypad cannot send.
pub fn digit_event(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(c as u8 - b'A' + 12),
        'a'..='d' => Some(c as u8 - b'a' + 12),
        _ => None,
    }
}

/// The keypad character of an RFC 4733 event code, upper case for `A`-`D`; `None` for the
/// other events (flash, modem and fax tones), which a call has no use for.
pub fn event_digit(e: u8) -> Option<char> {
    match e {
        0..=9 => Some(char::from(b'0' + e)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + e - 12)),
        _ => None,
    }
}

/// Turns received telephone-event packets into digits, each exactly once.
///
/// An event is identified by its RTP timestamp (RFC 4733 §2.5.2), so the digit is reported
/// by whichever of its packets arrives first, and its repeats (growing durations, the
/// triple end packet, network duplicates) are recognised by that timestamp. Reporting on
/// the first packet rather than the end keeps latency low and survives a lost end.
#[derive(Debug, Clone, Default)]
pub struct DtmfReceiver {
    recent: [Option<u32>; REMEMBERED_EVENTS],
    next_slot: usize,
}

impl DtmfReceiver {
    /// A receiver that has seen no event yet.
    pub fn new() -> DtmfReceiver {
        DtmfReceiver::default()
    }

    /// Takes the RTP timestamp and payload of one telephone-event packet; returns the digit
    /// when this is the first packet seen of a new event. Too-short payloads and events
    /// that are not keypad digits give `None`.
    ///
    /// An event longer than the duration field can hold (about 8 s) is split by the sender
    /// into segments with new timestamps, and is then reported once per segment.
    pub fn on_event(&mut self, timestamp: u32, payload: &[u8]) -> Option<char> {
        let event = *payload.get(..EVENT_PAYLOAD_BYTES)?.first()?;
        if self.recent.contains(&Some(timestamp)) {
            return None;
        }
        self.recent[self.next_slot] = Some(timestamp);
        self.next_slot = (self.next_slot + 1) % REMEMBERED_EVENTS;
        event_digit(event)
    }
}

/// One telephone-event packet to send, as [`DtmfSender::next`] returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    /// The RTP marker bit, set on the first packet of an event (RFC 4733 §2.5.1.1).
    pub marker: bool,
    /// This packet begins a new event: the packetizer takes the current audio timestamp as
    /// the event's timestamp and keeps it for the following packets of the event.
    pub new_event: bool,
    /// The RFC 4733 payload: event code, E bit and volume, duration (big-endian).
    pub payload: [u8; EVENT_PAYLOAD_BYTES],
}

/// Why digits were not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DtmfError {
    /// A character that is not a keypad digit (`0`-`9`, `*`, `#`, `A`-`D`); the caller's
    /// fault, and nothing was queued.
    #[error("{0:?} is not a DTMF digit")]
    BadDigit(char),
    /// More than [`MAX_QUEUED_DIGITS`] digits would be waiting; nothing was queued.
    #[error("more than {MAX_QUEUED_DIGITS} DTMF digits queued")]
    TooMany,
}

/// Where the sender is in its fixed rhythm of tone packets and pauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendState {
    Idle,
    /// Sending `event`; `packet` counts the packets already sent of it.
    Playing {
        event: u8,
        packet: u8,
    },
    /// Silent packet times left before the next digit.
    Pausing {
        left: u8,
    },
}

/// Plays queued digits as telephone-events at a fixed rhythm: 100 ms of tone, the end
/// packet repeated, then 40 ms of pause.
///
/// It is driven by the leg's 20 ms tick: each tick calls [`DtmfSender::next`] once and
/// sends the event packet it returns, or audio when it returns `None`.
#[derive(Debug, Clone)]
pub struct DtmfSender {
    queue: [u8; MAX_QUEUED_DIGITS],
    head: usize,
    len: usize,
    state: SendState,
}

impl Default for DtmfSender {
    fn default() -> DtmfSender {
        DtmfSender::new()
    }
}

impl DtmfSender {
    /// A sender with nothing to play.
    pub fn new() -> DtmfSender {
        DtmfSender {
            queue: [0; MAX_QUEUED_DIGITS],
            head: 0,
            len: 0,
            state: SendState::Idle,
        }
    }

    /// Queues `digits` to play after those already queued. Every character is checked
    /// first, so a bad one leaves the queue as it was.
    pub fn queue(&mut self, digits: &str) -> Result<(), DtmfError> {
        let mut count = 0;
        for c in digits.chars() {
            digit_event(c).ok_or(DtmfError::BadDigit(c))?;
            count += 1;
        }
        if self.len + count > MAX_QUEUED_DIGITS {
            return Err(DtmfError::TooMany);
        }
        for event in digits.chars().filter_map(digit_event) {
            self.queue[(self.head + self.len) % MAX_QUEUED_DIGITS] = event;
            self.len += 1;
        }
        Ok(())
    }

    /// The packet for this 20 ms packet time, or `None` when audio should be sent instead
    /// (idle, or pausing between digits). Call it exactly once per packet time.
    // Not an `Iterator`: `None` means "send audio this time", not the end, so iterator
    // adapters (`collect`, `take_while`) would stop at the first pause.
    #[expect(
        clippy::should_implement_trait,
        reason = "None is a pause, not the end of a sequence"
    )]
    pub fn next(&mut self) -> Option<EventPacket> {
        if self.state == SendState::Idle {
            self.state = SendState::Playing {
                event: self.pop()?,
                packet: 0,
            };
        }
        match self.state {
            SendState::Idle => None,
            SendState::Pausing { left } => {
                self.state = if left > 1 {
                    SendState::Pausing { left: left - 1 }
                } else {
                    SendState::Idle
                };
                None
            }
            SendState::Playing { event, packet } => {
                let sent = packet + 1;
                let tone = sent.min(TONE_PACKETS);
                let end = sent >= TONE_PACKETS;
                let duration = DURATION_STEP * u16::from(tone);
                let flags = (u8::from(end) << 7) | VOLUME;
                let [hi, lo] = duration.to_be_bytes();
                self.state = if sent >= TONE_PACKETS + END_PACKETS - 1 {
                    SendState::Pausing {
                        left: PAUSE_PACKETS,
                    }
                } else {
                    SendState::Playing {
                        event,
                        packet: sent,
                    }
                };
                Some(EventPacket {
                    marker: packet == 0,
                    new_event: packet == 0,
                    payload: [event, flags, hi, lo],
                })
            }
        }
    }

    /// Nothing is queued and no digit or pause is under way: the leg sends only audio.
    pub fn is_idle(&self) -> bool {
        self.len == 0 && self.state == SendState::Idle
    }

    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let event = self.queue[self.head];
        self.head = (self.head + 1) % MAX_QUEUED_DIGITS;
        self.len -= 1;
        Some(event)
    }
}

#[cfg(test)]
mod tests;
