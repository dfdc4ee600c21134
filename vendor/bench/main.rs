//! The vendor patches measured on candle alone: training steps of a stack
//! of linear layers (the shapes of a d512 decoder's projections), upstream
//! candle-core against each prefix of vendor/patches. Built and run by
//! scripts/vendor-bench.sh, once per patch level; prints the median step
//! time and a checksum of the gradients (the patches must not change them).

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let (tokens, d, ff, layers, steps) = (2048, 512, 1536, 4, 15);
    let x = Tensor::randn(0f32, 1.0, (tokens, d), &dev)?;
    // Deterministic weights: the same at every patch level.
    let weight = |o: usize, i: usize, s: f64| -> candle_core::Result<Var> {
        let t = Tensor::arange(0u32, (o * i) as u32, &dev)?
            .to_dtype(DType::F32)?
            .affine(0.618034, s)?
            .sin()?
            .affine(0.02, 0.0)?
            .reshape((o, i))?;
        Var::from_tensor(&t)
    };
    let mut ws = Vec::new();
    for l in 0..layers {
        ws.push((weight(ff, d, l as f64)?, weight(d, ff, 0.5 + l as f64)?));
    }
    let x = x.affine(0.0, 0.0)?.add(&weight(tokens, d, 9.0)?.as_tensor().affine(50.0, 0.0)?)?;
    let mut times = Vec::new();
    let mut checksum = 0f64;
    for step in 0..steps + 2 {
        let t0 = Instant::now();
        let mut h = x.clone();
        for (up, down) in &ws {
            let a = h.matmul(&up.as_tensor().t()?)?.relu()?;
            h = (h + a.matmul(&down.as_tensor().t()?)?)?;
        }
        let loss = h.sqr()?.mean_all()?;
        let grads = loss.backward()?;
        let mut sum = 0f64;
        for (up, down) in &ws {
            for w in [up, down] {
                let g = grads.get(w.as_tensor()).expect("a gradient per weight");
                sum += g.abs()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        if step >= 2 {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        checksum = sum;
    }
    times.sort_by(f64::total_cmp);
    println!(
        "median step {:.1} ms (of {steps}), gradient |sum| {checksum:.6e}",
        times[steps / 2]
    );
    Ok(())
}
