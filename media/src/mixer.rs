//! Talker-aware mix-minus.
//!
//! Every tick the room sums its talkers' inputs once in `i32`, then gives each participant
//! `saturate(sum − own input)`: everyone but itself, in O(N). Most participants in a real
//! room are silent at any instant, and a silent participant's mix-minus *is* the full mix, so
//! the mixer computes one shared output for all of them and a private one only per talker
//! (Asterisk's `bridge_softmix` lever, which Janus lacks). Downstream, the shared output is
//! resampled and encoded once per distinct rate and codec instead of once per listener.
//!
//! Participants join and leave between ticks. All buffers are allocated when a participant
//! joins (or when the mixer is built); [`MixMinus::mix`] allocates nothing.

/// How a participant takes part in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MixMode {
    /// Talks and listens.
    Full,
    /// Listens only: contributes nothing even if it writes input (a recorder, a transcriber).
    ListenOnly,
    /// Talks only: gets no output (a playback source, an announcer).
    SendOnly,
}

impl MixMode {
    fn talks(self) -> bool {
        !matches!(self, MixMode::ListenOnly)
    }
    fn listens(self) -> bool {
        !matches!(self, MixMode::SendOnly)
    }
}

/// A participant's place in a [`MixMinus`]; stable until it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(u32);

impl Slot {
    /// The slot's index, for callers that keep per-slot state in arrays of their own.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Why a participant cannot join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MixError {
    /// The room's configured maximum is reached.
    #[error("the room is full ({0} participants)")]
    Full(usize),
    /// The slot does not name a current participant.
    #[error("no participant in slot {0:?}")]
    UnknownSlot(Slot),
}

/// What a participant hears this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output<'a> {
    /// The full mix, shared with every other participant who did not talk this tick.
    /// Callers may resample or encode it once and reuse the result.
    Shared(&'a [i16]),
    /// A private mix-minus: this participant talked, so its own voice is taken out.
    Private(&'a [i16]),
    /// This participant is send-only and hears nothing.
    None,
}

impl<'a> Output<'a> {
    /// The samples, if any.
    pub fn samples(self) -> Option<&'a [i16]> {
        match self {
            Output::Shared(s) | Output::Private(s) => Some(s),
            Output::None => None,
        }
    }
}

struct Channel {
    mode: MixMode,
    input: Box<[i16]>,
    output: Box<[i16]>,
    /// Input was written since the last tick.
    talked: bool,
    /// `output` holds a private mix-minus from the last tick.
    private: bool,
}

/// A mix-minus mixer for one room at one rate and frame size.
pub struct MixMinus {
    frame_samples: usize,
    channels: Vec<Option<Channel>>,
    free: Vec<u32>,
    talkers: Vec<u32>,
    sum: Box<[i32]>,
    shared: Box<[i16]>,
    live: usize,
    max: usize,
}

impl MixMinus {
    /// A mixer for frames of `frame_samples` samples, for up to `max_participants`.
    ///
    /// The participant table is reserved up front so that joining only allocates the new
    /// participant's own two frame buffers.
    pub fn new(frame_samples: usize, max_participants: usize) -> MixMinus {
        MixMinus {
            frame_samples,
            channels: Vec::with_capacity(max_participants),
            free: Vec::with_capacity(max_participants),
            talkers: Vec::with_capacity(max_participants),
            sum: vec![0; frame_samples].into_boxed_slice(),
            shared: vec![0; frame_samples].into_boxed_slice(),
            live: 0,
            max: max_participants,
        }
    }

    /// Samples per frame this mixer works on.
    pub fn frame_samples(&self) -> usize {
        self.frame_samples
    }

    /// Participants currently in the room.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether nobody is in the room: an empty room's tick can be skipped entirely.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Adds a participant; its input starts silent.
    pub fn join(&mut self, mode: MixMode) -> Result<Slot, MixError> {
        if self.live >= self.max {
            return Err(MixError::Full(self.max));
        }
        let channel = Channel {
            mode,
            input: vec![0; self.frame_samples].into_boxed_slice(),
            output: vec![0; self.frame_samples].into_boxed_slice(),
            talked: false,
            private: false,
        };
        self.live += 1;
        if let Some(index) = self.free.pop() {
            self.channels[index as usize] = Some(channel);
            return Ok(Slot(index));
        }
        self.channels.push(Some(channel));
        Ok(Slot((self.channels.len() - 1) as u32))
    }

    /// Removes a participant. Its buffers are returned so that the caller can drop them
    /// off the real-time thread.
    pub fn leave(&mut self, slot: Slot) -> Result<(), MixError> {
        let entry = self
            .channels
            .get_mut(slot.index())
            .ok_or(MixError::UnknownSlot(slot))?;
        if entry.take().is_none() {
            return Err(MixError::UnknownSlot(slot));
        }
        self.free.push(slot.0);
        self.live -= 1;
        Ok(())
    }

    /// Changes how a participant takes part, from the next tick on.
    pub fn set_mode(&mut self, slot: Slot, mode: MixMode) -> Result<(), MixError> {
        self.channel_mut(slot)?.mode = mode;
        Ok(())
    }

    /// The buffer to fill with this participant's next frame.
    ///
    /// Taking it marks the participant as a talker for the next [`mix`](Self::mix); a
    /// participant with nothing to say should call [`set_silent`](Self::set_silent) instead
    /// and then costs next to nothing.
    pub fn input_mut(&mut self, slot: Slot) -> Result<&mut [i16], MixError> {
        let channel = self.channel_mut(slot)?;
        channel.talked = true;
        Ok(&mut channel.input)
    }

    /// Says that this participant contributes silence this tick.
    pub fn set_silent(&mut self, slot: Slot) -> Result<(), MixError> {
        self.channel_mut(slot)?.talked = false;
        Ok(())
    }

    fn channel_mut(&mut self, slot: Slot) -> Result<&mut Channel, MixError> {
        self.channels
            .get_mut(slot.index())
            .and_then(Option::as_mut)
            .ok_or(MixError::UnknownSlot(slot))
    }

    /// Mixes one tick: every input written since the last call is consumed, and a participant
    /// that writes nothing before the next call counts as silent then.
    ///
    /// Cost: one pass over each talker's input to sum, one pass per listening talker to
    /// subtract and saturate, and one pass to saturate the shared mix. Silent participants
    /// cost nothing beyond a flag check.
    pub fn mix(&mut self) {
        self.talkers.clear();
        self.sum.fill(0);
        for (index, entry) in self.channels.iter().enumerate() {
            let Some(ch) = entry else { continue };
            if ch.talked && ch.mode.talks() {
                for (acc, &x) in self.sum.iter_mut().zip(ch.input.iter()) {
                    *acc += i32::from(x);
                }
                self.talkers.push(index as u32);
            }
        }
        for (out, &acc) in self.shared.iter_mut().zip(self.sum.iter()) {
            *out = saturate(acc);
        }
        for &index in &self.talkers {
            let Some(ch) = self.channels[index as usize].as_mut() else {
                continue;
            };
            if ch.mode.listens() {
                for ((out, &acc), &own) in ch
                    .output
                    .iter_mut()
                    .zip(self.sum.iter())
                    .zip(ch.input.iter())
                {
                    *out = saturate(acc - i32::from(own));
                }
            }
        }
        for entry in self.channels.iter_mut().flatten() {
            entry.private = entry.talked && entry.mode.talks() && entry.mode.listens();
            entry.talked = false;
        }
    }

    /// What a participant hears after the last [`mix`](Self::mix).
    pub fn output(&self, slot: Slot) -> Result<Output<'_>, MixError> {
        let ch = self
            .channels
            .get(slot.index())
            .and_then(Option::as_ref)
            .ok_or(MixError::UnknownSlot(slot))?;
        Ok(match (ch.mode.listens(), ch.private) {
            (false, _) => Output::None,
            (true, true) => Output::Private(&ch.output),
            (true, false) => Output::Shared(&self.shared),
        })
    }

    /// The full mix of the last tick (everyone who talked).
    pub fn shared(&self) -> &[i16] {
        &self.shared
    }

    /// Participants who talked in the last tick, in slot order.
    pub fn talkers(&self) -> impl Iterator<Item = Slot> + '_ {
        self.talkers.iter().map(|&i| Slot(i))
    }
}

/// Narrows a 32-bit sum to 16 bits, clipping instead of wrapping (Janus wraps, and a loud
/// moment then becomes a burst of noise).
#[inline(always)]
pub fn saturate(x: i32) -> i16 {
    x.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests;
