//! Endpoints: participants whose network I/O runs on the shard thread itself, around the
//! mix, instead of on a task of their own.
//!
//! A plain RTP or SIP leg has nothing to wait for between ticks: the jitter buffer is read
//! once per tick and the mix-minus leaves once per tick. Run as a task, each such leg woke
//! twice per tick on whatever thread spawned it, re-armed a timer and a `select!`, and
//! handed its frames to the shard through rings two milliseconds apart from the tick. Run
//! by the shard, a leg costs one receive and one send per tick: the shard asks the kernel
//! once which of its endpoints' sockets hold datagrams (one level-triggered `epoll_wait`
//! for all of them) and has each read what is there ([`Endpoint::on_readable`]), calls
//! [`Endpoint::before_mix`] on every endpoint (push one frame into the input ring), mixes,
//! then calls [`Endpoint::after_mix`] (pull the frame just mixed, send it). The frame a leg pushes is mixed within the same tick and the mix
//! leaves microseconds after it exists, which also takes most of the ring hand-offs out of
//! the leg's latency.

use std::fmt;
use std::os::fd::BorrowedFd;

use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use crate::ids::{ParticipantId, RoomId};

/// Whether an endpoint stays on the shard after this call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Call it again on the next tick.
    Continue,
    /// It is finished (stopped, its call ended, its remote went quiet): the shard removes
    /// it and hands it to the disposal thread, so closing its sockets happens off the tick.
    Done,
}

/// A participant's I/O, driven by the shard's tick.
///
/// Both calls run on the tick thread between other rooms' work, so they must not block:
/// sockets are non-blocking, channels are polled with `try_recv`, and anything slow (a
/// database write, a signalling exchange) belongs to the endpoint's owner, told through a
/// channel. The endpoint's participant is seated in a room on the same shard through the
/// ordinary [`ShardCommand::AddParticipant`](super::ShardCommand::AddParticipant); the
/// endpoint only holds that participant's ring ends.
pub trait Endpoint: Send {
    /// The socket the shard watches for this endpoint. When the shard can watch it, it
    /// calls [`on_readable`](Self::on_readable) once per datagram waiting, found with one
    /// `epoll_wait` for all its endpoints, so an endpoint with nothing waiting costs no
    /// syscall at all; `before_mix` is then called with `watched = true`.
    fn readiness(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// Takes one datagram from the watched socket. Returns false when there was none.
    fn on_readable(&mut self) -> bool {
        false
    }

    /// Before the rooms are mixed: push this tick's input frame. With `watched = false`
    /// (no readiness socket, or the shard could not watch it) the endpoint reads its
    /// sockets itself first. Returning [`Step::Done`] skips `after_mix` for this tick.
    fn before_mix(&mut self, watched: bool) -> Step;

    /// After the rooms are mixed: pull this tick's output frame and send it.
    fn after_mix(&mut self) -> Step;

    /// Whether the endpoint can hand its frames over as they arrive
    /// ([`forward`](Self::forward)) instead of once per tick. The shard forwards such an endpoint's
    /// frames straight to the one participant who hears only it, while the room holds at
    /// most two voices.
    fn can_forward(&self) -> bool {
        false
    }

    /// The shard switches the endpoint between ticked playout (`false`: `before_mix`
    /// pushes one frame per tick into the input ring) and forwarding (`true`: frames leave
    /// through [`forward`](Self::forward) and `before_mix` pushes nothing).
    fn set_forwarding(&mut self, _on: bool) {}

    /// While forwarding: hands every frame that can play now to `sink`, at the
    /// participant's input rate, oldest first; returns how many. Called right after
    /// [`on_readable`](Self::on_readable) between ticks, and once per tick.
    fn forward(&mut self, _sink: &mut dyn FnMut(&[i16])) -> usize {
        0
    }

    /// Sends what the output ring holds now: a frame forwarded to this endpoint between
    /// ticks leaves at once rather than at the next `after_mix`.
    fn flush_output(&mut self) -> Step {
        self.after_mix()
    }

    /// A short name for logs and `Debug` (for example the remote address).
    fn label(&self) -> String {
        String::from("endpoint")
    }
}

impl fmt::Debug for dyn Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Endpoint").field(&self.label()).finish()
    }
}

/// Most `epoll_wait` rounds in one tick: each round reads one datagram from every socket
/// that still holds one, so a backlog of up to this many datagrams drains in one tick.
const MAX_READ_ROUNDS: usize = 8;

pub(crate) struct Slot {
    pub(crate) endpoint: Box<dyn Endpoint>,
    /// The participant it carries.
    pub(crate) room: RoomId,
    pub(crate) participant: ParticipantId,
    /// Registered with the shard's epoll instance.
    watched: bool,
    /// Forwarding, and registered with the between-ticks epoll instance.
    forwarding: bool,
}

/// A shard's endpoints, in a slab so that a slot's index is its epoll token.
pub(crate) struct Endpoints {
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    len: usize,
    watched: usize,
    /// Level-triggered, for every watched socket; `None` if it could not be created (then
    /// every endpoint reads its own sockets).
    epoll: Option<Epoll>,
    events: Vec<EpollEvent>,
    /// Only the sockets of forwarding endpoints: what the shard waits on between ticks, so
    /// that a forwarded frame leaves the moment it arrives while every other endpoint is
    /// still read once per tick.
    arrivals: Option<Epoll>,
    /// Indices of the forwarding endpoints, watched or not.
    pub(crate) forwarding: Vec<usize>,
    arrival_events: Vec<EpollEvent>,
}

impl Endpoints {
    pub(crate) fn with_capacity(capacity: usize) -> Endpoints {
        Endpoints {
            slots: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            len: 0,
            watched: 0,
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).ok(),
            events: Vec::with_capacity(capacity),
            arrivals: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).ok(),
            forwarding: Vec::with_capacity(capacity),
            arrival_events: Vec::with_capacity(capacity),
        }
    }

    /// The endpoint in slot `index`, if any.
    pub(crate) fn slot_mut(&mut self, index: usize) -> Option<&mut Slot> {
        self.slots.get_mut(index).and_then(Option::as_mut)
    }

    /// Switches one endpoint between ticked playout and forwarding, and watches its socket
    /// between ticks while it forwards.
    pub(crate) fn set_forwarding(&mut self, index: usize, on: bool) {
        let Some(Some(slot)) = self.slots.get_mut(index) else {
            return;
        };
        if slot.forwarding == on {
            return;
        }
        slot.forwarding = on;
        slot.endpoint.set_forwarding(on);
        if on {
            self.forwarding.push(index);
            if self.arrival_events.len() < self.forwarding.len() {
                self.arrival_events
                    .resize(self.forwarding.len(), EpollEvent::empty());
            }
        } else {
            self.forwarding.retain(|&i| i != index);
        }
        if let (Some(epoll), Some(fd)) = (&self.arrivals, slot.endpoint.readiness()) {
            let _ = if on {
                epoll.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, index as u64))
            } else {
                epoll.delete(fd)
            };
        }
    }

    /// Waits up to `timeout` (whole milliseconds, rounded down) for a forwarding endpoint's
    /// socket to become readable; returns the indices of those that did, through `ready`.
    pub(crate) fn wait_arrivals(&mut self, timeout: Duration, ready: &mut Vec<usize>) {
        ready.clear();
        let Some(epoll) = &self.arrivals else { return };
        if self.arrival_events.is_empty() {
            return;
        }
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let n = epoll
            .wait(&mut self.arrival_events, EpollTimeout::from(ms))
            .unwrap_or(0);
        ready.extend(self.arrival_events[..n].iter().map(|e| e.data() as usize));
    }

    /// Has each listed endpoint send what its output ring holds now. A leg that is done is
    /// removed by the next `after_mix`, which reports it again.
    pub(crate) fn flush_outputs(&mut self, indices: &[usize]) {
        for &index in indices {
            if let Some(slot) = self.slot_mut(index) {
                let _: Step = slot.endpoint.flush_output();
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds an endpoint; returns its slot index.
    pub(crate) fn add(
        &mut self,
        room: RoomId,
        participant: ParticipantId,
        endpoint: Box<dyn Endpoint>,
    ) -> usize {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        let watched = match (&self.epoll, endpoint.readiness()) {
            (Some(epoll), Some(fd)) => epoll
                .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, index as u64))
                .is_ok(),
            _ => false,
        };
        if watched {
            self.watched += 1;
            if self.events.len() < self.watched {
                self.events.resize(self.watched, EpollEvent::empty());
            }
        }
        self.slots[index] = Some(Slot {
            endpoint,
            room,
            participant,
            watched,
            forwarding: false,
        });
        self.len += 1;
        index
    }

    /// Has every watched socket that holds datagrams read them, one per round.
    pub(crate) fn receive(&mut self) {
        let Some(epoll) = &self.epoll else { return };
        if self.watched == 0 {
            return;
        }
        for _ in 0..MAX_READ_ROUNDS {
            let n = match epoll.wait(&mut self.events, EpollTimeout::ZERO) {
                Ok(n) => n,
                Err(_) => return,
            };
            let mut took = false;
            for event in &self.events[..n] {
                if let Some(Some(slot)) = self.slots.get_mut(event.data() as usize) {
                    took |= slot.endpoint.on_readable();
                }
            }
            if !took {
                return;
            }
        }
    }

    /// Calls `step` on every endpoint; those that are done are unwatched and handed to
    /// `done` with the room and participant they carried.
    pub(crate) fn run(
        &mut self,
        mut step: impl FnMut(&mut dyn Endpoint, bool) -> Step,
        mut done: impl FnMut(RoomId, ParticipantId, Box<dyn Endpoint>),
    ) {
        for index in 0..self.slots.len() {
            let Some(slot) = self.slots[index].as_mut() else {
                continue;
            };
            if step(slot.endpoint.as_mut(), slot.watched) == Step::Done
                && let Some(slot) = self.remove(index)
            {
                done(slot.room, slot.participant, slot.endpoint);
            }
        }
    }

    /// Empties the table, handing every endpoint to `done`.
    pub(crate) fn drain(&mut self, mut done: impl FnMut(Box<dyn Endpoint>)) {
        for index in 0..self.slots.len() {
            if let Some(slot) = self.remove(index) {
                done(slot.endpoint);
            }
        }
    }

    fn remove(&mut self, index: usize) -> Option<Slot> {
        let mut slot = self.slots.get_mut(index)?.take()?;
        if slot.watched {
            if let (Some(epoll), Some(fd)) = (&self.epoll, slot.endpoint.readiness()) {
                let _ = epoll.delete(fd);
            }
            self.watched -= 1;
        }
        if slot.forwarding {
            if let (Some(epoll), Some(fd)) = (&self.arrivals, slot.endpoint.readiness()) {
                let _ = epoll.delete(fd);
            }
            self.forwarding.retain(|&i| i != index);
            slot.forwarding = false;
        }
        self.free.push(index);
        self.len -= 1;
        Some(slot)
    }
}
