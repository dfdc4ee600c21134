//! Where each rank's rows sit in the global batch. A step reads `micro`
//! micro-batches of `batch` windows; rank r holds rows
//! `rank_rows(batch, r, world)` of each. One process with the same global
//! batch orders its predicted tokens micro-batch by micro-batch, row by row;
//! so does [`in_global_order`], so the selection (and its tie-break by index) sees
//! the same sequence whatever the number of ranks.

use shared::reader::rank_rows;

/// The shape of a data-parallel step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// Windows of one micro-batch, all ranks together (--batch-size).
    pub batch: usize,
    /// Micro-batches a step (--grad-accum).
    pub micro: usize,
    pub rank: usize,
    pub world: usize,
}

impl Split {
    pub fn single(batch: usize, micro: usize) -> Self {
        Split {
            batch,
            micro,
            rank: 0,
            world: 1,
        }
    }

    /// Rows of each micro-batch that rank `r` holds.
    pub fn rows_of(&self, r: usize) -> usize {
        rank_rows(self.batch, r, self.world).len()
    }

    /// This rank's rows of each micro-batch.
    pub fn rows(&self) -> std::ops::Range<usize> {
        rank_rows(self.batch, self.rank, self.world)
    }

    /// The global order of every rank's values (`parts[r]`: rank r's
    /// micro-batches one after the other, `per_row` values a row).
    pub fn in_global_order<T: Copy>(&self, parts: &[Vec<T>], per_row: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum());
        for m in 0..self.micro {
            for (r, part) in parts.iter().enumerate() {
                let len = self.rows_of(r) * per_row;
                out.extend_from_slice(&part[m * len..(m + 1) * len]);
            }
        }
        out
    }

    /// This rank's values out of the global order ([`Self::in_global_order`]'s inverse).
    pub fn local<T: Copy>(&self, global: &[T], per_row: usize) -> Vec<T> {
        let micro_len = self.batch * per_row;
        let start = self.rows().start * per_row;
        let len = self.rows().len() * per_row;
        let mut out = Vec::with_capacity(len * self.micro);
        for m in 0..self.micro {
            let at = m * micro_len + start;
            out.extend_from_slice(&global[at..at + len]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_values_in_global_order_and_back() {
        for (batch, micro, world) in [(5, 1, 2), (7, 3, 3), (4, 2, 4), (6, 2, 1)] {
            let per_row = 3;
            // one process: value = its index in the global order
            let n = batch * micro * per_row;
            let global: Vec<usize> = (0..n).collect();
            let parts: Vec<Vec<usize>> = (0..world)
                .map(|rank| {
                    Split {
                        batch,
                        micro,
                        rank,
                        world,
                    }
                    .local(&global, per_row)
                })
                .collect();
            let s = Split {
                batch,
                micro,
                rank: 0,
                world,
            };
            assert_eq!(s.in_global_order(&parts, per_row), global);
            // each rank's values are its rows of each micro-batch
            for (rank, part) in parts.iter().enumerate() {
                let rows = rank_rows(batch, rank, world);
                let want: Vec<usize> = (0..micro)
                    .flat_map(|m| {
                        let r = rows.clone();
                        r.flat_map(move |row| {
                            (0..per_row).map(move |c| (m * batch + row) * per_row + c)
                        })
                    })
                    .collect();
                assert_eq!(part, &want);
            }
        }
    }
}
