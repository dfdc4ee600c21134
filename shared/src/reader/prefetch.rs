//! Background threads that decode row groups ahead of the step: the
//! buffer the reader is in and the next one (in [`EpochOrder`]'s order), and
//! nothing else, so memory is two buffers whatever the set's size. The
//! reader says where it is; a row group not decoded yet is waited for, and
//! the wait is counted.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::scores::scoreset::ScoreSet;
use crate::scores::shards::Windows;

use crate::reader::order::{EpochOrder, Group};

/// A decoded row group of one epoch's buffer: (epoch, buffer, group index).
type Key = (u64, usize, usize);

#[derive(Default)]
struct State {
    /// The buffer the reader is in.
    at: Option<(u64, usize)>,
    /// The row groups wanted now, in decode order: `at`'s buffer, then the next.
    wanted: Vec<Key>,
    ready: HashMap<Key, Result<Arc<Windows>, String>>,
    /// Being decoded by a worker now.
    busy: Vec<Key>,
    stop: bool,
    rows_decoded: u64,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Prefetcher {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Prefetcher {
    /// `threads` decoding threads (at least one).
    pub fn start(sets: Arc<Vec<ScoreSet>>, groups: Vec<Group>, threads: usize) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let groups = Arc::new(groups);
        let workers = (0..threads.max(1))
            .map(|i| {
                let (s, sets, groups) = (shared.clone(), sets.clone(), groups.clone());
                std::thread::Builder::new()
                    .name(format!("prefetch-{i}"))
                    .spawn(move || decode_loop(&s, &sets, &groups))
                    .expect("spawning a prefetch thread")
            })
            .collect();
        Prefetcher { shared, workers }
    }

    /// The reader is in buffer `buffer` of `epoch`: keep that buffer and the
    /// next (`order` says which row groups they hold), drop the others.
    pub fn move_to(&self, order: &mut EpochOrder, epoch: u64, buffer: usize) {
        let mut st = self.shared.lock();
        if st.at == Some((epoch, buffer)) {
            return;
        }
        let next = if buffer + 1 < order.num_buffers(epoch) {
            (epoch, buffer + 1)
        } else {
            (epoch + 1, 0)
        };
        let mut wanted = Vec::new();
        for (e, b) in [(epoch, buffer), next] {
            wanted.extend(order.buffer(e, b).into_iter().map(|g| (e, b, g)));
        }
        st.ready.retain(|k, _| wanted.contains(k));
        st.wanted = wanted;
        st.at = Some((epoch, buffer));
        self.shared.changed.notify_all();
    }

    /// Row group `group` of buffer `buffer` of `epoch` (after [`Self::move_to`]
    /// that buffer), and how long it was waited for.
    pub fn get(
        &self,
        epoch: u64,
        buffer: usize,
        group: usize,
    ) -> (Result<Arc<Windows>, String>, Duration) {
        let key = (epoch, buffer, group);
        let t0 = Instant::now();
        let mut st = self.shared.lock();
        loop {
            if let Some(w) = st.ready.get(&key) {
                return (w.clone(), t0.elapsed());
            }
            if !st.wanted.contains(&key) {
                return (
                    Err(format!("row group {key:?} was not asked for")),
                    t0.elapsed(),
                );
            }
            st = self
                .shared
                .changed
                .wait(st)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Rows decoded since the start.
    pub fn rows_decoded(&self) -> u64 {
        self.shared.lock().rows_decoded
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn decode_loop(shared: &Shared, sets: &[ScoreSet], groups: &[Group]) {
    let mut st = shared.lock();
    loop {
        if st.stop {
            return;
        }
        let next = st
            .wanted
            .iter()
            .find(|k| !st.ready.contains_key(k) && !st.busy.contains(k));
        let Some(&key) = next else {
            st = shared.changed.wait(st).unwrap_or_else(|p| p.into_inner());
            continue;
        };
        st.busy.push(key);
        drop(st);
        let g = groups[key.2];
        let decoded = sets[g.set]
            .read_row_group(g.shard, g.row_group)
            .map(Arc::new)
            .map_err(|e| e.to_string());
        // Decoded once per epoch: its mapped pages need not stay resident.
        sets[g.set].shards()[g.shard].release_row_group(g.row_group);
        st = shared.lock();
        st.busy.retain(|k| *k != key);
        if let Ok(w) = &decoded {
            st.rows_decoded += w.tokens.len() as u64;
        }
        if st.wanted.contains(&key) {
            st.ready.insert(key, decoded);
            shared.changed.notify_all();
        }
    }
}
