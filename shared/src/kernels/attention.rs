//! Causal self-attention as one CPU op with its own backward (llm.c's
//! `attention_forward` / `attention_backward`): per (batch, head), scores
//! `q k^T`, a causal softmax and the mix with `v`, each head one task with
//! single-threaded GEMMs on data that stays in cache; the heads share the
//! cores. candle's graph for the same thing is two batched matmuls (one GEMM
//! call per head, each split across the threads), the softmax, a repeat of
//! k and v for grouped heads and two transposing copies, with a gradient
//! accumulator per node in the backward. The composed graph stays the
//! reference: the tests below check values and every gradient against it.
//!
//! The products go in blocks of [`BLOCK`] query rows, each against only the
//! keys up to its last row: the masked upper triangle is never computed
//! (5/8 of the full products at T = 256), as a flash-attention kernel skips
//! it. The probabilities are kept whole, (T, T) per head, for the backward.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::error::Result;
use crate::kernels::cross_entropy::cpu_f32;
use crate::kernels::exp::exp_in_place;
use crate::kernels::fused::{contiguous, filled, overwritten};
use crate::kernels::gemm::sgemm_serial as gemm1;
use crate::kernels::lanes;

/// q (B, H, T, D), already scaled and rotated; k (B, K, T, D), rotated; v
/// (B, T, K, D), the value projection's output as it is -> (B, T, H * D),
/// ready for the output projection. H must be a multiple of K (grouped
/// heads: head h reads kv head h / (H / K)). Position i attends to 0..=i.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let op = CausalAttention {
        keep: q.track_op() || k.track_op() || v.track_op(),
        probs: Mutex::new(None),
    };
    Ok(q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)?)
}

struct CausalAttention {
    /// Keep the probabilities (B, H, T, T) for the backward.
    keep: bool,
    probs: Mutex<Option<Vec<f32>>>,
}

#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    h: usize,
    k: usize,
    t: usize,
    d: usize,
}

impl Dims {
    fn of(q: &Layout, k: &Layout, v: &Layout) -> candle_core::Result<Dims> {
        let (b, h, t, d) = q.shape().dims4()?;
        let (b2, kh, t2, d2) = k.shape().dims4()?;
        let (b3, t3, kh3, d3) = v.shape().dims4()?;
        if (b, t, d) != (b2, t2, d2) || (b, t, kh, d) != (b3, t3, kh3, d3) || kh == 0 || h % kh != 0
        {
            candle_core::bail!(
                "causal attention: q {:?}, k {:?}, v {:?} do not fit (B,H,T,D), (B,K,T,D), (B,T,K,D)",
                q.dims(),
                k.dims(),
                v.dims()
            );
        }
        Ok(Dims { b, h, k: kh, t, d })
    }

    fn rep(&self) -> usize {
        self.h / self.k
    }

    /// Offset of v[b, 0, kv, 0]; rows of one kv head are k * d apart.
    fn v_at(&self, b: usize, kv: usize) -> usize {
        (b * self.t * self.k + kv) * self.d
    }
}

/// Query rows per block of the products (a multiple of the GEMM kernels'
/// 16-lane tiles; small enough that a block skips most of the masked part).
const BLOCK: usize = 64;

/// The row blocks of a (T, T) causal product: (first row, rows, live
/// columns), the live columns being those up to the block's last row.
fn row_blocks(t: usize) -> impl DoubleEndedIterator<Item = (usize, usize, usize)> {
    (0..t.div_ceil(BLOCK)).map(move |i| {
        let r0 = i * BLOCK;
        let rows = BLOCK.min(t - r0);
        (r0, rows, r0 + rows)
    })
}

/// Rows r0.. of the (T, T) scores, live columns 0..cols: row i becomes the
/// softmax over columns 0..=i, and its columns up to cols after i become 0.
fn causal_softmax_rows(s: &mut [f32], t: usize, (r0, rows, cols): (usize, usize, usize)) {
    for i in r0..r0 + rows {
        let row = &mut s[i * t..i * t + cols];
        let (live, dead) = row.split_at_mut(i + 1);
        let max = lanes::max(live);
        let sum = exp_in_place(live, max); // f64: see row_lse in loss.rs
        let inv = (1.0 / sum) as f32;
        live.iter_mut().for_each(|x| *x *= inv);
        dead.fill(0.0);
    }
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "causal-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dm = Dims::of(l1, l2, l3)?;
        let (q, k, v) = (
            contiguous::<f32>(s1, l1, "q")?,
            contiguous::<f32>(s2, l2, "k")?,
            contiguous::<f32>(s3, l3, "v")?,
        );
        let Dims { b, h, t, d, .. } = dm;
        let (tt, td) = (t * t, t * d);
        // One task per (batch, head): its probabilities (kept for the
        // backward) and its (T, D) output, scattered into (B, T, H*D) after.
        let mut probs = vec![0f32; if self.keep { b * h * tt } else { 0 }];
        let mut ys = overwritten(b * h * td); // the row blocks' p v products cover every row
        let work = |bh: usize, p: &mut [f32], y: &mut [f32]| {
            let (bi, hi) = (bh / h, bh % h);
            let kv = hi / dm.rep();
            let qh = &q[bh * td..][..td];
            let kh = &k[(bi * dm.k + kv) * td..][..td];
            let vh = &v[dm.v_at(bi, kv)..];
            for blk @ (r0, rows, cols) in row_blocks(t) {
                let (pr, yr) = (&mut p[r0 * t..], &mut y[r0 * d..]);
                gemm1(
                    (rows, cols, d),
                    (pr, t),
                    false,
                    (&qh[r0 * d..], d, 1),
                    (kh, 1, d),
                ); // q k^T
                causal_softmax_rows(p, t, blk);
                let pr = &p[r0 * t..];
                gemm1(
                    (rows, d, cols),
                    (yr, d),
                    false,
                    (pr, t, 1),
                    (vh, dm.k * d, 1),
                ); // p v
            }
        };
        if self.keep {
            probs
                .par_chunks_mut(tt)
                .zip(ys.par_chunks_mut(td))
                .enumerate()
                .for_each(|(bh, (p, y))| work(bh, p, y));
        } else {
            ys.par_chunks_mut(td)
                .enumerate()
                .for_each_init(|| vec![0f32; tt], |p, (bh, y)| work(bh, p, y));
        }
        // SAFETY: each (b, t) row gets its H heads' D values: every element.
        let out = unsafe {
            filled(b * t * h * d, |out| {
                out.par_chunks_mut(h * d).enumerate().for_each(|(bt, row)| {
                    let (bi, ti) = (bt / t, bt % t);
                    for hi in 0..h {
                        let src = &ys[((bi * h + hi) * t + ti) * d..][..d];
                        for (o, &x) in row[hi * d..(hi + 1) * d].iter_mut().zip(src) {
                            o.write(x);
                        }
                    }
                })
            })
        };
        if self.keep {
            *self.probs.lock().unwrap() = Some(probs);
        }
        Ok((CpuStorage::F32(out), Shape::from((b, t, h * d))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(probs) = self.probs.lock().unwrap().take() else {
            candle_core::bail!("causal attention: backward run twice, or without a forward");
        };
        let g = g.contiguous()?;
        let (qs, ql) = q.storage_and_layout();
        let (ks, kl) = k.storage_and_layout();
        let (vs, vl) = v.storage_and_layout();
        let (gs, gl) = g.storage_and_layout();
        let dm = Dims::of(ql, kl, vl)?;
        let (qd, kd, vd, gd) = (
            cpu_f32(&qs, ql, "q")?,
            cpu_f32(&ks, kl, "k")?,
            cpu_f32(&vs, vl, "v")?,
            cpu_f32(&gs, gl, "grad")?,
        );
        let (dq, dk, dv) = attention_backward(dm, &probs, qd, kd, vd, gd);
        let dev = q.device();
        Ok((
            Some(Tensor::from_vec(dq, q.shape(), dev)?),
            Some(Tensor::from_vec(dk, k.shape(), dev)?),
            Some(Tensor::from_vec(dv, v.shape(), dev)?),
        ))
    }
}

/// With P the probabilities and G = dY (per head, T x D):
/// dP = G V^T, dS = P (dP - rowsum(dP P)), dQ = dS K, dK = dS^T Q, dV = P^T G,
/// dK and dV summed over the heads that share a kv head. One task per
/// (batch, kv head), so no two tasks write the same gradient.
fn attention_backward(
    dm: Dims,
    probs: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    g: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let Dims { b, h, t, d, .. } = dm;
    let (tt, td, rep) = (t * t, t * d, dm.rep());
    let mut dq = vec![0f32; b * h * td];
    let mut dk = vec![0f32; b * dm.k * td];
    let mut dv_heads = vec![0f32; b * dm.k * td]; // (B, K, T, D), scattered below
    dq.par_chunks_mut(rep * td)
        .zip(dk.par_chunks_mut(td).zip(dv_heads.par_chunks_mut(td)))
        .enumerate()
        .for_each_init(
            || vec![0f32; tt],
            |ds, (bk, (dq, (dk, dv)))| {
                let (bi, kv) = (bk / dm.k, bk % dm.k);
                let kh = &k[bk * td..][..td];
                let vh = &v[dm.v_at(bi, kv)..];
                for r in 0..rep {
                    let hi = kv * rep + r;
                    let bh = bi * h + hi;
                    let p = &probs[bh * tt..][..tt];
                    let gh = &g[(bi * t * h + hi) * d..]; // rows h * d apart
                    let qh = &q[bh * td..][..td];
                    let dq = &mut dq[r * td..(r + 1) * td];
                    // Last block first: it reaches every key, so it writes all
                    // of dK and dV, and the earlier blocks add to theirs.
                    for (r0, rows, cols) in row_blocks(t).rev() {
                        let acc = r > 0 || cols < t;
                        let (ga, qa) = ((&gh[r0 * h * d..], h * d, 1), (&qh[r0 * d..], d, 1));
                        let dsr = &mut ds[r0 * t..];
                        gemm1((rows, cols, d), (dsr, t), false, ga, (vh, 1, dm.k * d)); // dP
                        for i in r0..r0 + rows {
                            let (pr, dr) = (&p[i * t..][..=i], &mut ds[i * t..i * t + cols]);
                            let dot = lanes::dot(pr, dr);
                            for (x, &pj) in dr[..=i].iter_mut().zip(pr) {
                                *x = pj * (*x - dot);
                            }
                            dr[i + 1..].fill(0.0);
                        }
                        let (dsr, pr) = (&ds[r0 * t..], &p[r0 * t..]);
                        let dqr = (&mut dq[r0 * d..], d);
                        gemm1((rows, d, cols), dqr, false, (dsr, t, 1), (kh, d, 1)); // dS K
                        gemm1((cols, d, rows), (&mut dk[..], d), acc, (dsr, 1, t), qa); // dS^T Q
                        gemm1((cols, d, rows), (&mut dv[..], d), acc, (pr, 1, t), ga);
                        // P^T G
                    }
                }
            },
        );
    let mut dv = vec![0f32; b * t * dm.k * d];
    dv.par_chunks_mut(dm.k * d)
        .enumerate()
        .for_each(|(bt, row)| {
            let (bi, ti) = (bt / t, bt % t);
            for kv in 0..dm.k {
                row[kv * d..(kv + 1) * d]
                    .copy_from_slice(&dv_heads[((bi * dm.k + kv) * t + ti) * d..][..d]);
            }
        });
    (dq, dk, dv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    fn randn(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::util::rng::Rng::new(seed);
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    /// candle's composed graph: what the decoder runs off the CPU.
    fn composed(q: &Tensor, k: &Tensor, v: &Tensor, rep: usize) -> Tensor {
        let (b, h, t, d) = q.dims4().unwrap();
        let v = v.transpose(1, 2).unwrap().contiguous().unwrap();
        let k = candle_transformers::utils::repeat_kv(k.clone(), rep)
            .unwrap()
            .contiguous()
            .unwrap();
        let v = candle_transformers::utils::repeat_kv(v, rep)
            .unwrap()
            .contiguous()
            .unwrap();
        let s = q.matmul(&k.t().unwrap()).unwrap();
        let mask: Vec<f32> = (0..t * t)
            .map(|i| {
                if i % t > i / t {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, (t, t), q.device()).unwrap();
        let p = candle_nn::ops::softmax(&s.broadcast_add(&mask).unwrap(), D::Minus1).unwrap();
        p.matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, t, h * d))
            .unwrap()
    }

    #[test]
    fn fused_attention_matches_the_composed_graph_with_grouped_heads() {
        let dev = Device::Cpu;
        // t = 150: three row blocks, the last one partial.
        for (b, h, kh, t, d) in [
            (2, 4, 2, 9, 8),
            (1, 3, 3, 17, 4),
            (3, 2, 1, 1, 6),
            (1, 2, 1, 150, 4),
        ] {
            let mk = |shape: (usize, usize, usize, usize), seed| {
                Var::from_vec(
                    randn(shape.0 * shape.1 * shape.2 * shape.3, seed),
                    shape,
                    &dev,
                )
                .unwrap()
            };
            let (q, k, v) = (
                mk((b, h, t, d), 1),
                mk((b, kh, t, d), 2),
                mk((b, t, kh, d), 3),
            );
            let w = Tensor::from_vec(randn(b * t * h * d, 4), (b, t, h * d), &dev).unwrap();
            let run = |fused: bool| {
                let y = if fused {
                    causal_attention(q.as_tensor(), k.as_tensor(), v.as_tensor()).unwrap()
                } else {
                    composed(q.as_tensor(), k.as_tensor(), v.as_tensor(), h / kh)
                };
                let grads = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
                let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let mut out = vec![flat(&y)];
                for x in [&q, &k, &v] {
                    out.push(flat(grads.get(x.as_tensor()).expect("a gradient")));
                }
                out
            };
            let (f, c) = (run(true), run(false));
            for (i, (a, e)) in f.iter().zip(&c).enumerate() {
                assert_eq!(a.len(), e.len());
                for (x, y) in a.iter().zip(e) {
                    assert!(
                        (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                        "{b},{h},{kh},{t},{d} output {i}: {x} vs {y}"
                    );
                }
            }
            // Inference (nothing tracked) keeps no probabilities and gives the same values.
            let y = causal_attention(
                &q.as_tensor().detach(),
                &k.as_tensor().detach(),
                &v.as_tensor().detach(),
            )
            .unwrap();
            assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), f[0]);
        }
    }

    #[test]
    fn mismatched_shapes_are_refused() {
        let dev = Device::Cpu;
        let z = |s: (usize, usize, usize, usize)| {
            Tensor::zeros(s, candle_core::DType::F32, &dev).unwrap()
        };
        assert!(causal_attention(&z((1, 3, 4, 2)), &z((1, 2, 4, 2)), &z((1, 4, 2, 2))).is_err());
        assert!(causal_attention(&z((1, 2, 4, 2)), &z((1, 2, 4, 2)), &z((1, 2, 4, 2))).is_err());
    }
}
