//! The shard's notion of time: an absolute deadline grid and the clock that reads it.
//!
//! Ticks are scheduled on a fixed grid, `next += 20 ms`, never `now + 20 ms`: sleeping
//! late once must not shift every later tick (drift), and a late wake-up must mix the
//! ticks it missed so that every reader still gets 50 frames a second. The arithmetic
//! lives in [`TickSchedule`], a pure value tested without a thread or a real clock; the
//! [`Clock`] trait is the one place the thread touches real time.

use std::time::{Duration, Instant};

/// One tick's period: the 20 ms frame.
pub const TICK: Duration = Duration::from_millis(chamade_media::FRAME_MS as u64);

/// Most ticks run on one wake-up. A stall longer than this (a suspended VM, a debugger)
/// gives the missed audio time up instead of bursting through it: the readers could not
/// play a burst in time anyway.
pub const DEFAULT_MAX_TICKS_PER_WAKE: u32 = 5;

/// What to do after waking up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wake {
    /// Ticks to run now (0 after an early wake-up).
    pub run: u32,
    /// Ticks whose whole period passed before this wake-up: deadline misses.
    pub missed: u64,
    /// Ticks given up because catching up would exceed the per-wake bound.
    pub skipped: u64,
}

/// The absolute deadline grid of one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickSchedule {
    period: Duration,
    next: Duration,
    max_ticks_per_wake: u32,
}

impl TickSchedule {
    /// A grid of `period` whose first deadline is `first` (time since the clock's origin),
    /// running at most `max_ticks_per_wake` ticks per wake-up (at least one).
    pub fn new(first: Duration, period: Duration, max_ticks_per_wake: u32) -> TickSchedule {
        TickSchedule {
            period: period.max(Duration::from_nanos(1)),
            next: first,
            max_ticks_per_wake: max_ticks_per_wake.max(1),
        }
    }

    /// The next deadline: sleep until then.
    pub fn next(&self) -> Duration {
        self.next
    }

    /// Accounts for waking up at `now` and moves the deadline on.
    ///
    /// Every deadline at or before `now` is due. The first is on time (a wake-up is never
    /// exact); each further one is a miss. At most `max_ticks_per_wake` run; the rest are
    /// skipped, and the next deadline is still the first grid point after `now`, so a
    /// stall never shifts the grid.
    pub fn wake(&mut self, now: Duration) -> Wake {
        if now < self.next {
            return Wake::default();
        }
        let late = now - self.next;
        let period = self.period.as_nanos();
        let whole = late.as_nanos() / period;
        let rem = late.as_nanos() % period;
        // rem < period, which is a Duration, so it fits in u64 nanoseconds.
        let rem = Duration::from_nanos(u64::try_from(rem).unwrap_or(u64::MAX));
        let missed = u64::try_from(whole).unwrap_or(u64::MAX);
        let due = missed.saturating_add(1);
        let run = due.min(u64::from(self.max_ticks_per_wake));
        // next + due·period, computed without the multiplication: the grid point after now.
        self.next = now - rem + self.period;
        Wake {
            run: u32::try_from(run).unwrap_or(self.max_ticks_per_wake),
            missed,
            skipped: due - run,
        }
    }
}

/// Where a shard thread reads the time and waits.
///
/// Times are durations since an origin fixed by the clock, so that [`TickSchedule`] can be
/// pure. Production uses [`SystemClock`]; tests drive the loop with a stepped clock.
pub trait Clock {
    /// Time since the clock's origin.
    fn now(&mut self) -> Duration;
    /// Blocks until `deadline` (returns at once if it has passed).
    fn sleep_until(&mut self, deadline: Duration);

    /// Whether this clock is the machine's: only then may the shard wait on sockets
    /// between ticks, since a stepped test clock does not move while it blocks.
    fn is_real(&self) -> bool {
        false
    }
}

/// The monotonic system clock, with its origin at construction.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
    pub fn new() -> SystemClock {
        SystemClock::starting_at(Instant::now())
    }

    /// A clock whose origin is `origin`: the shard's tick grid is `origin + k × 20 ms`, so
    /// legs that know the origin can wake just after each tick instead of polling.
    pub fn starting_at(origin: Instant) -> SystemClock {
        SystemClock { origin }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&mut self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep_until(&mut self, deadline: Duration) {
        let now = self.now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
    }

    fn is_real(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn grid_does_not_drift_over_ten_thousand_ticks() {
        let mut s = TickSchedule::new(TICK, TICK, 5);
        let mut ran = 0u64;
        for i in 0..10_000u64 {
            // Wake a varying amount late, always within the period.
            let jitter = Duration::from_micros((i * 7_919) % 19_000);
            let w = s.wake(s.next() + jitter);
            assert_eq!(
                w,
                Wake {
                    run: 1,
                    missed: 0,
                    skipped: 0
                }
            );
            ran += u64::from(w.run);
        }
        assert_eq!(ran, 10_000);
        assert_eq!(s.next(), TICK * 10_001);
    }

    #[test]
    fn early_wake_runs_nothing_and_keeps_the_deadline() {
        let mut s = TickSchedule::new(TICK, TICK, 5);
        assert_eq!(s.wake(TICK - MS), Wake::default());
        assert_eq!(s.next(), TICK);
    }

    #[test]
    fn late_wake_counts_misses_and_catches_up() {
        let mut s = TickSchedule::new(TICK, TICK, 5);
        // 3.5 periods late: the tick due at 20 ms plus three whole missed ones.
        let w = s.wake(TICK + TICK * 3 + 10 * MS);
        assert_eq!(
            w,
            Wake {
                run: 4,
                missed: 3,
                skipped: 0
            }
        );
        // Still on the grid: the next deadline is the first grid point after now.
        assert_eq!(s.next(), TICK * 5);
        assert_eq!(
            s.wake(TICK * 5),
            Wake {
                run: 1,
                missed: 0,
                skipped: 0
            }
        );
    }

    #[test]
    fn catch_up_is_bounded_and_resyncs_to_the_grid() {
        let mut s = TickSchedule::new(TICK, TICK, 5);
        let w = s.wake(TICK + TICK * 100 + 3 * MS);
        assert_eq!(
            w,
            Wake {
                run: 5,
                missed: 100,
                skipped: 96
            }
        );
        assert_eq!(s.next(), TICK * 102);
    }

    #[test]
    fn wake_exactly_on_a_later_deadline_counts_it_due() {
        let mut s = TickSchedule::new(TICK, TICK, 5);
        let w = s.wake(TICK * 3);
        assert_eq!(
            w,
            Wake {
                run: 3,
                missed: 2,
                skipped: 0
            }
        );
        assert_eq!(s.next(), TICK * 4);
    }
}
