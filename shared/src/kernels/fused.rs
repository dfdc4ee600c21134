//! Fused CPU kernels with their own backward passes, for training.
//!
//! candle's composed ops each allocate a fresh tensor forward and several
//! backward (RMSNorm is ~6 ops, rotary ~8 on (B, H, T, D), SwiGLU ~7); on this CPU those allocations and passes cost more than the
//! arithmetic. Each kernel here is one pass forward and one backward, checked
//! against the composed ops (values and gradients) in the tests below. Use
//! them on the CPU only: other devices take the composed path.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::error::Result;
use crate::kernels::lanes::{self, multiversioned};

/// The contiguous data of a CPU tensor's storage, or an error naming `what`.
pub(crate) fn contiguous<'a, T: candle_core::WithDType>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => candle_core::bail!("{what}: input must be contiguous"),
    }
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    contiguous::<f32>(s, l, op)
}

/// An output buffer of `n` values for a kernel that writes every one of them
/// before anything reads it. Zero-filled: for the kernels that do not write
/// through [`filled`] yet.
pub(crate) fn overwritten(n: usize) -> Vec<f32> {
    vec![0.0; n]
}

/// A buffer of `n` values that `write` fills through `MaybeUninit::write`,
/// with no zero-fill first (a full extra pass over every output, ~8% of a
/// small model's step, docs/performance.md) and no reference to an unwritten
/// f32 at any time.
///
/// # Safety
/// `write` must write all `n` elements of the slice it is given.
pub(crate) unsafe fn filled(n: usize, write: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    write(&mut v.spare_capacity_mut()[..n]);
    // SAFETY: the caller's contract: every one of the n elements is written.
    unsafe { v.set_len(n) };
    v
}

// ---------------------------------------------------------------- RMSNorm

/// x (.., C) * rsqrt(mean(x^2) + eps) * weight (C), with gradients for both.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
    Ok(x.contiguous()?
        .apply_op2(&weight.contiguous()?, RmsNorm { eps })?)
}

struct RmsNorm {
    eps: f32,
}

fn inv_rms(row: &[f32], eps: f32) -> f32 {
    // Accumulated in f64 (see row_lse in loss.rs); hidden sizes reach 8192.
    let ms = lanes::sum_sq(row) / row.len() as f64;
    (1.0 / (ms + eps as f64).sqrt()) as f32
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w) = (slice(s1, l1, self.name())?, slice(s2, l2, self.name())?);
        let c = w.len();
        // SAFETY: every row of c values is written (x.len() is rows * c).
        let out = unsafe {
            filled(x.len(), |out| {
                out.par_chunks_mut(c)
                    .zip(x.par_chunks(c))
                    .for_each(|(o, x)| {
                        let r = inv_rms(x, self.eps);
                        for ((oj, xj), wj) in o.iter_mut().zip(x).zip(w) {
                            oj.write(xj * r * wj);
                        }
                    })
            })
        };
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let n = x.elem_count();
        let packed = x.apply_op3_no_bwd(w, &g.contiguous()?, &RmsNormGrad { eps: self.eps })?;
        let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        let dw = packed.narrow(0, n, w.elem_count())?.reshape(w.shape())?;
        Ok((Some(dx), Some(dw)))
    }
}

/// With r = rsqrt(mean(x^2) + eps), xh = x r:
/// dx = r (g w - xh mean(g w xh)), dw = sum over rows of g xh.
/// Output: dx flattened, then dw (one tensor; the caller splits it).
struct RmsNormGrad {
    eps: f32,
}

multiversioned! {
    /// One row of [`RmsNormGrad`], r its rsqrt: dx = r (g w - x r mean(g w x r)),
    /// and dw += g x r. The dot product is summed in sixteen lanes.
    fn rms_norm_grad_row(dx: &mut [MaybeUninit<f32>], dw: &mut [f32], x: &[f32], g: &[f32], w: &[f32], r: f32) {
        let c = x.len();
        let (dx, dw, g, w) = (&mut dx[..c], &mut dw[..c], &g[..c], &w[..c]);
        let mut dot = [0f32; 16];
        let body = c - c % 16;
        for ((dw, x), (g, w)) in dw[..body]
            .chunks_exact_mut(16)
            .zip(x.chunks_exact(16))
            .zip(g.chunks_exact(16).zip(w.chunks_exact(16)))
        {
            for l in 0..16 {
                let xh = x[l] * r;
                dw[l] += g[l] * xh;
                dot[l] += g[l] * w[l] * xh;
            }
        }
        for j in body..c {
            let xh = x[j] * r;
            dw[j] += g[j] * xh;
            dot[0] += g[j] * w[j] * xh;
        }
        let mean = dot.iter().sum::<f32>() / c as f32;
        for j in 0..c {
            dx[j].write(r * (g[j] * w[j] - x[j] * r * mean));
        }
    }
}

impl CustomOp3 for RmsNormGrad {
    fn name(&self) -> &'static str {
        "rms-norm-grad"
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
        let (x, w, g) = (
            slice(s1, l1, self.name())?,
            slice(s2, l2, self.name())?,
            slice(s3, l3, self.name())?,
        );
        let c = w.len();
        const ROWS: usize = 64; // rows per task; each task sums its own dw
        let mut partials: Vec<Vec<f32>> = Vec::new();
        // SAFETY: rms_norm_grad_row writes every dx of each row.
        let dx = unsafe {
            filled(x.len(), |dx| {
                partials = dx
                    .par_chunks_mut(c * ROWS)
                    .zip(x.par_chunks(c * ROWS).zip(g.par_chunks(c * ROWS)))
                    .map(|(dx, (x, g))| {
                        let mut dw = vec![0f32; c];
                        for ((dx, x), g) in dx.chunks_mut(c).zip(x.chunks(c)).zip(g.chunks(c)) {
                            rms_norm_grad_row(dx, &mut dw, x, g, w, inv_rms(x, self.eps));
                        }
                        dw
                    })
                    .collect();
            })
        };
        let mut out = dx;
        out.resize(x.len() + c, 0.0);
        let dw = &mut out[x.len()..];
        for p in &partials {
            dw.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        let n = out.len();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }
}

// ---------------------------------------------------------------- SwiGLU

/// silu(gate) * up, elementwise over two tensors of one shape: the MLP's
/// activation in one pass (candle: silu, then mul; its silu backward alone
/// is five passes).
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if gate.dims() != up.dims() {
        return Err(candle_core::Error::ShapeMismatchBinaryOp {
            lhs: gate.shape().clone(),
            rhs: up.shape().clone(),
            op: "swiglu",
        }
        .into());
    }
    Ok(gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)?)
}

struct SwiGlu;

const SWIGLU_CHUNK: usize = 1 << 14; // elements per rayon task

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + crate::kernels::exp::exp(-x))
}

multiversioned! {
    /// SwiGLU forward, o = silu(a) * b. `exp` per element vectorizes only as
    /// wide as the loop is compiled (SSE2 in a default build: 5% of a d512
    /// scoring pass in `perf`), hence `multiversioned!`.
    fn swiglu_forward(o: &mut [MaybeUninit<f32>], a: &[f32], b: &[f32]) {
        for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
            o.write(a * sigmoid(a) * b);
        }
    }
}

multiversioned! {
    /// SwiGLU backward: with s = sigmoid(a), da = g b s (1 + a (1 - s)) and
    /// db = g a s.
    fn swiglu_backward(da: &mut [MaybeUninit<f32>], db: &mut [MaybeUninit<f32>], a: &[f32], b: &[f32], g: &[f32]) {
        let n = a.len();
        let (da, db, b, g) = (&mut da[..n], &mut db[..n], &b[..n], &g[..n]);
        for i in 0..n {
            let s = sigmoid(a[i]);
            da[i].write(g[i] * b[i] * s * (1.0 + a[i] * (1.0 - s)));
            db[i].write(g[i] * a[i] * s);
        }
    }
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (a, b) = (slice(s1, l1, self.name())?, slice(s2, l2, self.name())?);
        // SAFETY: swiglu_forward writes every element of each chunk (a and b
        // have the output's length).
        let out = unsafe {
            filled(a.len(), |out| {
                out.par_chunks_mut(SWIGLU_CHUNK)
                    .zip(a.par_chunks(SWIGLU_CHUNK).zip(b.par_chunks(SWIGLU_CHUNK)))
                    .for_each(|(o, (a, b))| swiglu_forward(o, a, b))
            })
        };
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let n = gate.elem_count();
        let packed = gate.apply_op3_no_bwd(up, &g.contiguous()?, &SwiGluGrad)?;
        let dgate = packed.narrow(0, 0, n)?.reshape(gate.shape())?;
        let dup = packed.narrow(0, n, n)?.reshape(up.shape())?;
        Ok((Some(dgate), Some(dup)))
    }
}

/// With s = sigmoid(a): d/da = g b s (1 + a (1 - s)), d/db = g a s.
/// Output: d gate flattened, then d up (one tensor; the caller splits it).
struct SwiGluGrad;

impl CustomOp3 for SwiGluGrad {
    fn name(&self) -> &'static str {
        "swiglu-grad"
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
        let (a, b, g) = (
            slice(s1, l1, self.name())?,
            slice(s2, l2, self.name())?,
            slice(s3, l3, self.name())?,
        );
        let n = a.len();
        // SAFETY: swiglu_backward writes every da and db of each chunk.
        let out = unsafe {
            filled(2 * n, |out| {
                let (da, db) = out.split_at_mut(n);
                da.par_chunks_mut(SWIGLU_CHUNK)
                    .zip(db.par_chunks_mut(SWIGLU_CHUNK))
                    .zip(
                        a.par_chunks(SWIGLU_CHUNK)
                            .zip(b.par_chunks(SWIGLU_CHUNK))
                            .zip(g.par_chunks(SWIGLU_CHUNK)),
                    )
                    .for_each(|((da, db), ((a, b), g))| swiglu_backward(da, db, a, b, g))
            })
        };
        Ok((CpuStorage::F32(out), Shape::from(2 * n)))
    }
}

// ---------------------------------------------------------------- rotary

/// Rotary embedding in the Hugging Face convention (halves, not interleaved),
/// fused with the head split and a scale: x (B, T, N, D) contiguous (a
/// projection's output, reshaped) -> scale * rope(x) as (B, N, T, D).
/// cos, sin: (T, D/2).
pub fn rope_to_heads(x: &Tensor, cos: &Tensor, sin: &Tensor, scale: f32) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op3(
        &cos.contiguous()?,
        &sin.contiguous()?,
        Rope {
            scale,
            inverse: false,
        },
    )?)
}

/// Forward: (B, T, N, D) -> (B, N, T, D) rotating by +angle. Inverse (the
/// backward): (B, N, T, D) -> (B, T, N, D) rotating by -angle.
struct Rope {
    scale: f32,
    inverse: bool,
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "rope-to-heads"
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
        let x = slice(s1, l1, self.name())?;
        let (cos, sin) = (slice(s2, l2, self.name())?, slice(s3, l3, self.name())?);
        // Input dims: forward (B, T, N, D); inverse (B, N, T, D).
        let (b, d1, d2, d) = l1.shape().dims4()?;
        let (t, n) = if self.inverse { (d2, d1) } else { (d1, d2) };
        let h = d / 2;
        if cos.len() < t * h || sin.len() < t * h {
            candle_core::bail!("{}: rotary tables shorter than {t} positions", self.name());
        }
        let sign = if self.inverse { -1.0 } else { 1.0 };
        // SAFETY: every (b, head, t) row of D values is written, j and j + h
        // for each j < D/2.
        let out = unsafe {
            filled(x.len(), |out| {
                // One task per output (b, head) plane of T x D, contiguous in the output
                // for the forward; for the inverse the output is (B, T, N, D), so a
                // task owns a (b, t) plane of N x D instead.
                if !self.inverse {
                    out.par_chunks_mut(t * d).enumerate().for_each(|(bn, o)| {
                        let (bi, ni) = (bn / n, bn % n);
                        for ti in 0..t {
                            let src = &x[((bi * t + ti) * n + ni) * d..][..d];
                            let (c, s) = (&cos[ti * h..][..h], &sin[ti * h..][..h]);
                            let o = &mut o[ti * d..][..d];
                            for j in 0..h {
                                let (x1, x2) = (src[j], src[j + h]);
                                o[j].write(self.scale * (x1 * c[j] - x2 * s[j]));
                                o[j + h].write(self.scale * (x2 * c[j] + x1 * s[j]));
                            }
                        }
                    });
                } else {
                    out.par_chunks_mut(n * d).enumerate().for_each(|(bt, o)| {
                        let (bi, ti) = (bt / t, bt % t);
                        let (c, s) = (&cos[ti * h..][..h], &sin[ti * h..][..h]);
                        for ni in 0..n {
                            let src = &x[((bi * n + ni) * t + ti) * d..][..d];
                            let o = &mut o[ni * d..][..d];
                            for j in 0..h {
                                let (x1, x2) = (src[j], src[j + h]);
                                let sj = sign * s[j];
                                o[j].write(self.scale * (x1 * c[j] - x2 * sj));
                                o[j + h].write(self.scale * (x2 * c[j] + x1 * sj));
                            }
                        }
                    });
                }
            })
        };
        let shape = if self.inverse {
            Shape::from((b, t, n, d))
        } else {
            Shape::from((b, n, t, d))
        };
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dx = g.contiguous()?.apply_op3_no_bwd(
            cos,
            sin,
            &Rope {
                scale: self.scale,
                inverse: true,
            },
        )?;
        Ok((Some(dx), None, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn randn(shape: &[usize], seed: u64) -> Vec<f32> {
        let mut rng = crate::util::rng::Rng::new(seed);
        let n: usize = shape.iter().product();
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    /// (value, gradient of sum(out * w) wrt each input) for f over vars.
    fn value_and_grads(
        shapes: &[&[usize]],
        f: impl Fn(&[Tensor]) -> Tensor,
    ) -> (Vec<f32>, Vec<Vec<f32>>) {
        let dev = Device::Cpu;
        let vars: Vec<Var> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| Var::from_vec(randn(s, 10 + i as u64), *s, &dev).unwrap())
            .collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let out = f(&ts);
        let w = Tensor::from_vec(randn(out.dims(), 99), out.dims(), &dev).unwrap();
        let grads = (&out * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let g = ts.iter().filter_map(|t| grads.get(t).map(flat)).collect();
        (flat(&out), g)
    }

    fn assert_close(a: &(Vec<f32>, Vec<Vec<f32>>), b: &(Vec<f32>, Vec<Vec<f32>>), tol: f32) {
        let pairs = a.0.iter().zip(&b.0).chain(
            a.1.iter()
                .zip(&b.1)
                .flat_map(|(x, y)| x.iter().zip(y.iter())),
        );
        let mut n = 0;
        for (x, y) in pairs {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
            n += 1;
        }
        assert!(n > a.0.len(), "no gradients compared");
    }

    #[test]
    fn rms_norm_matches_the_composed_norm_for_input_and_weight() {
        // Rows of 16 (whole lanes) and of 21 (a remainder past the lanes).
        for (x, w) in [
            (&[3usize, 130, 16][..], &[16usize][..]),
            (&[2, 70, 21], &[21]),
        ] {
            let fused = value_and_grads(&[x, w], |v| rms_norm(&v[0], &v[1], 1e-5).unwrap());
            let composed = value_and_grads(&[x, w], |v| {
                candle_nn::ops::rms_norm_slow(&v[0], &v[1], 1e-5).unwrap()
            });
            assert_close(&fused, &composed, 1e-4);
        }
    }

    #[test]
    fn swiglu_matches_silu_times_up() {
        let shape: &[usize] = &[3, 7, 1500]; // more than one chunk
        let fused = value_and_grads(&[shape, shape], |v| swiglu(&v[0], &v[1]).unwrap());
        let composed =
            value_and_grads(&[shape, shape], |v| (v[0].silu().unwrap() * &v[1]).unwrap());
        assert_close(&fused, &composed, 1e-5);
        assert!(swiglu(
            &Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap(),
            &Tensor::zeros((3, 2), candle_core::DType::F32, &Device::Cpu).unwrap()
        )
        .is_err());
    }

    #[test]
    fn rope_to_heads_matches_transpose_plus_rope_slow() {
        let (b, t, n, d) = (2, 5, 3, 8);
        let shapes: [&[usize]; 3] = [&[b, t, n, d], &[t, d / 2], &[t, d / 2]];
        let fused = value_and_grads(&shapes, |v| {
            let (c, s) = (v[1].detach(), v[2].detach());
            rope_to_heads(&v[0], &c, &s, 0.5).unwrap()
        });
        let composed = value_and_grads(&shapes, |v| {
            let (c, s) = (v[1].detach(), v[2].detach());
            let x = v[0].transpose(1, 2).unwrap().contiguous().unwrap();
            (candle_nn::rotary_emb::rope_slow(&x, &c, &s).unwrap() * 0.5).unwrap()
        });
        // cos/sin are detached on both sides: the value and dx are compared.
        assert_eq!((fused.1.len(), composed.1.len()), (1, 1));
        assert_close(&fused, &composed, 1e-5);
    }
}
