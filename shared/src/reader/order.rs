//! The order training reads windows in: shuffled at two levels so that each
//! row group is decoded once per epoch. Per epoch, the row groups of every
//! set are permuted and cut into buffers of `buffer_groups` consecutive ones;
//! within a buffer its windows are permuted again. A window's place is a pure
//! function of (seed, epoch, cursor): no state but the cursor, so a resumed
//! run reads exactly what the uninterrupted one would have.

use crate::util::rng::{Permutation, Rng};

/// One row group of the training data: which set, shard and group, and how
/// many windows it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Group {
    pub set: usize,
    pub shard: usize,
    pub row_group: usize,
    pub windows: usize,
}

/// Where the window at a cursor lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub epoch: u64,
    /// Buffer within the epoch.
    pub buffer: usize,
    /// Index into [`EpochOrder::groups`].
    pub group: usize,
    /// Window within the row group.
    pub offset: usize,
}

pub struct EpochOrder {
    groups: Vec<Group>,
    total: u64,
    buffer_groups: usize,
    seed: u64,
    /// The epoch `layout` describes.
    epoch: Option<u64>,
    layout: Layout,
}

/// One epoch's row-group order and each buffer's first window.
#[derive(Default)]
struct Layout {
    order: Vec<usize>,
    buffer_start: Vec<u64>,
}

impl EpochOrder {
    pub fn new(groups: Vec<Group>, buffer_groups: usize, seed: u64) -> Self {
        let total = groups.iter().map(|g| g.windows as u64).sum();
        EpochOrder {
            groups,
            total,
            buffer_groups: buffer_groups.max(1),
            seed,
            epoch: None,
            layout: Layout::default(),
        }
    }

    /// Windows per epoch.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Makes `self.layout` describe `epoch`.
    fn ensure(&mut self, epoch: u64) {
        if self.epoch != Some(epoch) {
            let n = self.groups.len() as u64;
            let perm = Permutation::new(n, self.stream(&format!("groups-{epoch}")));
            let order: Vec<usize> = (0..n).map(|i| perm.get(i) as usize).collect();
            let mut buffer_start = Vec::with_capacity(order.len() / self.buffer_groups + 1);
            let mut at = 0u64;
            for chunk in order.chunks(self.buffer_groups) {
                buffer_start.push(at);
                at += chunk
                    .iter()
                    .map(|&g| self.groups[g].windows as u64)
                    .sum::<u64>();
            }
            self.layout = Layout {
                order,
                buffer_start,
            };
            self.epoch = Some(epoch);
        }
    }

    fn stream(&self, name: &str) -> u64 {
        Rng::derive(self.seed, name).next_u64()
    }

    /// The row groups (indices into [`Self::groups`]) of buffer `b` of `epoch`, in order.
    pub fn buffer(&mut self, epoch: u64, b: usize) -> Vec<usize> {
        let k = self.buffer_groups;
        self.ensure(epoch);
        let l = &self.layout;
        let end = ((b + 1) * k).min(l.order.len());
        l.order[(b * k).min(end)..end].to_vec()
    }

    pub fn num_buffers(&mut self, epoch: u64) -> usize {
        self.ensure(epoch);
        self.layout.buffer_start.len()
    }

    /// The window at position `cursor` of the endless sequence of epochs.
    pub fn slot(&mut self, cursor: u64) -> Slot {
        let (epoch, at) = (cursor / self.total, cursor % self.total);
        let k = self.buffer_groups;
        let seed = self.seed;
        self.ensure(epoch);
        let l = &self.layout;
        let buffer = l.buffer_start.partition_point(|&s| s <= at) - 1;
        let start = l.buffer_start[buffer];
        let members = &l.order[buffer * k..((buffer + 1) * k).min(l.order.len())];
        let end = l
            .buffer_start
            .get(buffer + 1)
            .copied()
            .unwrap_or(self.total);
        let within_seed = Rng::derive(seed, &format!("windows-{epoch}-{buffer}")).next_u64();
        let mut q = Permutation::new(end - start, within_seed).get(at - start) as usize;
        for &g in members {
            let n = self.groups[g].windows;
            if q < n {
                return Slot {
                    epoch,
                    buffer,
                    group: g,
                    offset: q,
                };
            }
            q -= n;
        }
        unreachable!("a buffer's permutation stays inside the buffer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(sizes: &[usize]) -> Vec<Group> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &windows)| Group {
                set: 0,
                shard: 0,
                row_group: i,
                windows,
            })
            .collect()
    }

    #[test]
    fn every_window_exactly_once_per_epoch_buffer_by_buffer() {
        let sizes = [7, 7, 7, 3, 7, 7, 2, 5, 7];
        let mut o = EpochOrder::new(groups(&sizes), 3, 42);
        let total = o.total();
        for epoch in 0..3u64 {
            let mut seen = std::collections::HashSet::new();
            let mut last_buffer = 0;
            for c in epoch * total..(epoch + 1) * total {
                let s = o.slot(c);
                assert_eq!(s.epoch, epoch);
                assert!(s.buffer >= last_buffer, "buffers are visited in order");
                last_buffer = s.buffer;
                assert!(o.buffer(epoch, s.buffer).contains(&s.group));
                assert!(s.offset < sizes[s.group]);
                assert!(seen.insert((s.group, s.offset)), "{s:?} twice");
            }
            assert_eq!(seen.len() as u64, total);
        }
    }

    #[test]
    fn the_order_is_a_function_of_seed_and_cursor() {
        let sizes = [16; 10];
        let mut a = EpochOrder::new(groups(&sizes), 4, 7);
        let mut b = EpochOrder::new(groups(&sizes), 4, 7);
        let mut c = EpochOrder::new(groups(&sizes), 4, 8);
        let seq = |o: &mut EpochOrder, r: std::ops::Range<u64>| {
            r.map(|i| o.slot(i))
                .map(|s| (s.group, s.offset))
                .collect::<Vec<_>>()
        };
        let whole = seq(&mut a, 0..480);
        // Read from the middle first (a resumed run), then from the start.
        let tail = seq(&mut b, 200..480);
        assert_eq!(tail, whole[200..]);
        assert_eq!(seq(&mut b, 0..200), whole[..200]);
        assert_ne!(seq(&mut c, 0..480), whole, "another seed, another order");
        // Epochs differ from each other.
        assert_ne!(whole[..160], whole[160..320]);
    }
}
