//! A hierarchical timing wheel, the data structure behind tokio's timers (and the Linux
//! kernel's): [`LEVELS`] levels of [`SLOTS`] slots each; a slot of level `L` spans
//! `64^L` ticks, so level 0 holds the next 64 ticks one per slot, level 1 the next 4 096
//! in slots of 64, … Insert and cancel are O(1) (plus the length of one slot's list);
//! advancing visits only occupied slots, found with one bit mask per level.
//!
//! **The invariant.** An entry with deadline `d` sits in level `L` = the index of the
//! highest 6-bit block in which `d` and the wheel's current time `elapsed` differ, in
//! slot `(d >> 6L) & 63`. Every block above `L` is equal to `elapsed`'s, so the entry lies
//! inside the level's current range (no slot wraps around), and every entry of a lower
//! level has an earlier deadline than every entry of a higher one. When `elapsed` reaches
//! the start of an occupied slot of level `L > 0`, the entries there now agree with
//! `elapsed` in block `L` as well: they are taken out and inserted again ("cascaded"),
//! which puts each one in a lower level. An entry therefore moves down at most
//! `LEVELS - 1` times before it fires from level 0, whose slots are one tick wide.
//!
//! Deadlines in a later block of [`MAX_SPAN`] ticks than `elapsed` (more than six 6-bit
//! blocks would differ) wait in an overflow list and enter the wheel when `elapsed`
//! reaches their block, which is after every entry in the wheel; deadlines already passed fire at the next [`TimerWheel::advance`].
//!
//! ```
//! use conclab::primitives::timer_wheel::TimerWheel;
//! let mut w = TimerWheel::new();
//! let a = w.insert(70, 1); // level 1: 70 differs from 0 in the second 6-bit block
//! w.insert(5, 2);
//! w.insert(5, 3);
//! assert_eq!(w.occupancy()[1].iter().sum::<usize>(), 1);
//! assert_eq!(w.advance(10), vec![2, 3]); // deadline order, ties in insertion order
//! assert_eq!(w.cancel(a), Some(1));
//! assert!(w.advance(1_000).is_empty());
//! ```

/// Levels of the wheel (tokio: 6).
pub const LEVELS: usize = 6;
/// Slots per level (tokio: 64, one bit each in a `u64` mask).
pub const SLOTS: usize = 64;
/// Ticks ahead that the wheel itself covers: `64^LEVELS` (2^36: about 2.2 years of 1 ms ticks).
pub const MAX_SPAN: u64 = 1 << (6 * LEVELS);

/// A handle to an inserted timer, for [`TimerWheel::cancel`]. A key of a timer that has
/// fired or was cancelled cancels nothing, even after its storage is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerKey {
    index: usize,
    generation: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    deadline: u64,
    id: u64,
    /// Insertion number: the tie-break between equal deadlines.
    seq: u64,
    /// Where the entry is: `Some((level, slot))`, or `None` in the overflow list.
    place: Option<(usize, usize)>,
}

#[derive(Debug, Clone, Default)]
struct Cell {
    generation: u64,
    entry: Option<Entry>,
}

/// A hierarchical timing wheel of [`LEVELS`] × [`SLOTS`] slots, in abstract ticks
/// (1 ms each in tokio). See the [module docs](self) for the invariant.
#[derive(Debug, Clone)]
pub struct TimerWheel {
    elapsed: u64,
    cells: Vec<Cell>,
    free: Vec<usize>,
    /// `slots[level][slot]`: indices into `cells`.
    slots: Vec<Vec<Vec<usize>>>,
    /// Bit `s` of `occupied[level]` is set when that slot holds an entry.
    occupied: [u64; LEVELS],
    overflow: Vec<usize>,
    next_seq: u64,
    len: usize,
    cascaded: [u64; LEVELS],
}

impl Default for TimerWheel {
    fn default() -> Self {
        TimerWheel::new()
    }
}

/// The level for deadline `when` at time `elapsed` (`when >= elapsed`, less than
/// [`MAX_SPAN`] ahead): the highest 6-bit block in which they differ.
fn level_for(elapsed: u64, when: u64) -> usize {
    let masked = (elapsed ^ when) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros() as usize;
    significant / 6
}

fn slot_for(when: u64, level: usize) -> usize {
    ((when >> (6 * level)) & (SLOTS as u64 - 1)) as usize
}

impl TimerWheel {
    /// An empty wheel at tick 0.
    pub fn new() -> TimerWheel {
        TimerWheel {
            elapsed: 0,
            cells: Vec::new(),
            free: Vec::new(),
            slots: vec![vec![Vec::new(); SLOTS]; LEVELS],
            occupied: [0; LEVELS],
            overflow: Vec::new(),
            next_seq: 0,
            len: 0,
            cascaded: [0; LEVELS],
        }
    }

    /// The wheel's current time: the `now` of the latest [`advance`](Self::advance).
    pub fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Timers waiting (inserted, not fired, not cancelled).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries that left level `L` for a lower one so far, per level (index 0 is always 0).
    pub fn cascaded(&self) -> [u64; LEVELS] {
        self.cascaded
    }

    /// Timers in the overflow list (in a later [`MAX_SPAN`] block than `elapsed`).
    pub fn overflowed(&self) -> usize {
        self.overflow.len()
    }

    /// Adds a timer that fires at tick `deadline` carrying `id`; a deadline already
    /// passed fires at the next [`advance`](Self::advance).
    pub fn insert(&mut self, deadline: u64, id: u64) -> TimerKey {
        let seq = self.next_seq;
        self.next_seq += 1;
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.cells.push(Cell::default());
                self.cells.len() - 1
            }
        };
        self.cells[index].entry = Some(Entry { deadline, id, seq, place: None });
        self.len += 1;
        self.place(index);
        TimerKey { index, generation: self.cells[index].generation }
    }

    /// Puts entry `index` where the invariant wants it at the current `elapsed`.
    fn place(&mut self, index: usize) {
        let entry = self.cells[index].entry.as_mut().expect("placing a live entry");
        let when = entry.deadline.max(self.elapsed);
        if (when ^ self.elapsed) >= MAX_SPAN {
            entry.place = None;
            self.overflow.push(index);
            return;
        }
        let level = level_for(self.elapsed, when);
        let slot = slot_for(when, level);
        entry.place = Some((level, slot));
        self.slots[level][slot].push(index);
        self.occupied[level] |= 1 << slot;
    }

    /// Removes a waiting timer and returns its id; `None` when it already fired or was
    /// cancelled.
    pub fn cancel(&mut self, key: TimerKey) -> Option<u64> {
        let cell = self.cells.get_mut(key.index)?;
        if cell.generation != key.generation {
            return None;
        }
        let entry = cell.entry.take()?;
        cell.generation += 1;
        self.free.push(key.index);
        self.len -= 1;
        let list = match entry.place {
            Some((level, slot)) => &mut self.slots[level][slot],
            None => &mut self.overflow,
        };
        list.retain(|&i| i != key.index);
        if let Some((level, slot)) = entry.place
            && list.is_empty()
        {
            self.occupied[level] &= !(1 << slot);
        }
        Some(entry.id)
    }

    /// The earliest occupied slot: `(level, slot, tick at which it must be handled)`.
    /// Lower levels always come first (see the invariant).
    fn next_expiration(&self) -> Option<(usize, usize, u64)> {
        for level in 0..LEVELS {
            let bits = self.occupied[level];
            if bits == 0 {
                continue;
            }
            let shift = 6 * level;
            let pos = slot_for(self.elapsed, level);
            // Entries sit at or after the current position: no slot wraps around.
            let ahead = bits >> pos << pos;
            debug_assert_eq!(ahead, bits, "an entry behind the wheel's position at level {level}");
            let slot = ahead.trailing_zeros() as usize;
            let level_start = if shift + 6 >= 64 { 0 } else { self.elapsed & !((1u64 << (shift + 6)) - 1) };
            let when = (level_start + ((slot as u64) << shift)).max(self.elapsed);
            return Some((level, slot, when));
        }
        None
    }

    /// Moves the wheel's time to `now` (no earlier than [`elapsed`](Self::elapsed)) and
    /// returns the ids of every timer with a deadline `<= now`, in deadline order, equal
    /// deadlines in insertion order. Slots of higher levels reached on the way cascade.
    pub fn advance(&mut self, now: u64) -> Vec<u64> {
        let now = now.max(self.elapsed);
        let mut fired: Vec<(u64, u64, u64)> = Vec::new();
        loop {
            self.admit_overflow(now);
            match self.next_expiration() {
                Some((level, slot, when)) if when <= now => {
                    self.elapsed = when;
                    let taken = std::mem::take(&mut self.slots[level][slot]);
                    self.occupied[level] &= !(1 << slot);
                    for index in taken {
                        if level == 0 {
                            let entry = self.cells[index].entry.take().expect("a live entry in a slot");
                            self.cells[index].generation += 1;
                            self.free.push(index);
                            self.len -= 1;
                            fired.push((entry.deadline, entry.seq, entry.id));
                        } else {
                            self.cascaded[level] += 1;
                            self.place(index);
                        }
                    }
                }
                // Nothing in the wheel is due; the wheel holds only deadlines of the
                // current MAX_SPAN block, so an overflow block starting by `now` comes next.
                _ => match self.overflow_block() {
                    Some(start) if start <= now && start > self.elapsed => self.elapsed = start,
                    _ => break,
                },
            }
        }
        self.elapsed = now;
        self.admit_overflow(now);
        fired.sort_unstable_by_key(|&(deadline, seq, _)| (deadline, seq));
        fired.into_iter().map(|(_, _, id)| id).collect()
    }

    /// The start of the earliest [`MAX_SPAN`] block holding an overflow entry.
    fn overflow_block(&self) -> Option<u64> {
        self.overflow.iter().filter_map(|&i| self.cells[i].entry.as_ref()).map(|e| e.deadline & !(MAX_SPAN - 1)).min()
    }

    /// Moves overflow entries that came within [`MAX_SPAN`] of `elapsed` into the wheel.
    fn admit_overflow(&mut self, _now: u64) {
        if self.overflow.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut self.overflow);
        for index in waiting {
            self.place(index);
        }
    }

    /// Entries per slot, `[level][slot]`: what a heatmap of the wheel draws.
    pub fn occupancy(&self) -> Vec<[usize; SLOTS]> {
        self.slots
            .iter()
            .map(|level| {
                let mut row = [0; SLOTS];
                for (s, list) in level.iter().enumerate() {
                    row[s] = list.len();
                }
                row
            })
            .collect()
    }

    /// Entries per level (the rows of [`occupancy`](Self::occupancy) summed).
    pub fn per_level(&self) -> [usize; LEVELS] {
        let mut out = [0; LEVELS];
        for (l, level) in self.slots.iter().enumerate() {
            out[l] = level.iter().map(Vec::len).sum();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::rng::Rng;

    #[test]
    fn levels_follow_the_highest_differing_block() {
        assert_eq!(level_for(0, 0), 0);
        assert_eq!(level_for(0, 63), 0);
        assert_eq!(level_for(0, 64), 1);
        assert_eq!(level_for(0, 4095), 1);
        assert_eq!(level_for(0, 4096), 2);
        assert_eq!(level_for(60, 70), 1); // 60 and 70 lie in different 64-tick blocks
        assert_eq!(level_for(64, 70), 0);
        assert_eq!(level_for(0, MAX_SPAN - 1), LEVELS - 1);
    }

    #[test]
    fn fires_in_deadline_order_with_ties_in_insertion_order() {
        let mut w = TimerWheel::new();
        for (d, id) in [(300, 1), (5, 2), (300, 3), (64, 4), (5, 5), (100_000, 6)] {
            w.insert(d, id);
        }
        assert_eq!(w.per_level(), [2, 3, 1, 0, 0, 0]);
        assert_eq!(w.advance(4), Vec::<u64>::new());
        assert_eq!(w.advance(300), vec![2, 5, 4, 1, 3]);
        assert_eq!(w.len(), 1);
        assert_eq!(w.advance(99_999), Vec::<u64>::new());
        assert_eq!(w.advance(100_000), vec![6]);
        assert!(w.is_empty());
    }

    #[test]
    fn entries_cascade_down_one_level_at_a_time() {
        let mut w = TimerWheel::new();
        w.insert(64 * 64 * 3 + 64 * 2 + 7, 1); // level 2
        assert_eq!(w.per_level()[2], 1);
        assert!(w.advance(64 * 64 * 3).is_empty());
        assert_eq!(w.per_level()[1], 1, "moved to level 1 at the start of its level-2 slot");
        assert!(w.advance(64 * 64 * 3 + 64 * 2).is_empty());
        assert_eq!(w.per_level()[0], 1);
        assert_eq!(w.advance(u64::from(u32::MAX)), vec![1]);
        assert_eq!(w.cascaded()[..3], [0, 1, 1]);
    }

    #[test]
    fn cancel_removes_once_and_stale_keys_cancel_nothing() {
        let mut w = TimerWheel::new();
        let a = w.insert(10, 1);
        let b = w.insert(10, 2);
        assert_eq!(w.cancel(a), Some(1));
        assert_eq!(w.cancel(a), None);
        let c = w.insert(20, 3); // reuses a's storage
        assert_eq!(w.cancel(a), None, "a stale key must not cancel the new timer");
        assert_eq!(w.advance(100), vec![2, 3]);
        assert_eq!(w.cancel(b), None);
        assert_eq!(w.cancel(c), None);
        assert_eq!(w.occupancy().iter().flatten().sum::<usize>(), 0);
    }

    #[test]
    fn past_and_far_deadlines() {
        let mut w = TimerWheel::new();
        w.advance(1_000);
        w.insert(10, 1); // already passed
        w.insert(1_000 + MAX_SPAN + 5, 2); // beyond the wheel
        assert_eq!(w.overflowed(), 1);
        assert_eq!(w.advance(1_000), vec![1]);
        assert!(w.advance(MAX_SPAN + 4).is_empty());
        assert_eq!(w.overflowed(), 0);
        assert_eq!(w.advance(1_000 + MAX_SPAN + 5), vec![2]);
    }

    /// Random inserts, cancels and advances against a sorted list: the wheel must fire
    /// exactly what the list says, in the same order.
    #[test]
    fn matches_a_sorted_list_reference() {
        for seed in 1..=40u64 {
            let mut rng = Rng::new(seed);
            let mut w = TimerWheel::new();
            // (deadline, seq, id, key)
            let mut reference: Vec<(u64, u64, u64, TimerKey)> = Vec::new();
            let mut seq = 0;
            for step in 0..600 {
                let now = w.elapsed();
                match rng.below(10) {
                    0..=4 => {
                        // spans from "already passed" to beyond the wheel
                        let span = [4, 64, 5_000, 300_000, 20_000_000, MAX_SPAN * 2][rng.below(6) as usize];
                        let deadline = (now + rng.below(span)).saturating_sub(rng.below(3));
                        let id = seed * 10_000 + step;
                        let key = w.insert(deadline, id);
                        reference.push((deadline, seq, id, key));
                        seq += 1;
                    }
                    5 if !reference.is_empty() => {
                        let (_, _, id, key) = reference.remove(rng.below(reference.len() as u64) as usize);
                        assert_eq!(w.cancel(key), Some(id));
                    }
                    _ => {
                        let jump = [1, 50, 3_000, 200_000, 30_000_000, MAX_SPAN][rng.below(6) as usize];
                        let to = now + rng.below(jump);
                        reference.sort_by_key(|&(d, s, _, _)| (d, s));
                        let due: Vec<u64> = reference.iter().filter(|e| e.0 <= to).map(|e| e.2).collect();
                        reference.retain(|e| e.0 > to);
                        assert_eq!(w.advance(to), due, "seed {seed}, step {step}, advance to {to}");
                    }
                }
                assert_eq!(w.len(), reference.len());
                let placed = w.occupancy().iter().flatten().sum::<usize>() + w.overflowed();
                assert_eq!(placed, reference.len());
            }
        }
    }
}
