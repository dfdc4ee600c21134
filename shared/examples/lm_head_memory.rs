//! Peak memory of the composed LM head + per-token loss (the path every
//! non-CPU device takes), forward and backward, run here on the CPU:
//! `whole` builds the (N, V) logits as graph nodes, `chunked` is
//! `model::loss::lm_head_losses`; `fused` is the CPU kernel, for reference.
//! One mode per process, so each peak is its own.
//! Usage: cargo run --release -p shared --example lm_head_memory -- whole|chunked|fused [N] [C] [V]
//! (bench/lm_head_memory.sh runs both at Qwen2.5's vocabulary).
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use shared::model::loss::{lm_head_losses, per_token_loss};

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "chunked".into());
    let num: Vec<usize> = args.filter_map(|a| a.parse().ok()).collect();
    let n = num.first().copied().unwrap_or(2048);
    let c = num.get(1).copied().unwrap_or(256);
    let v = num.get(2).copied().unwrap_or(151_936);
    shared::util::device::force_composed(mode != "fused");
    let dev = Device::Cpu;
    let mut rng = shared::util::rng::Rng::new(7); // the same inputs in every process
    let mut randn = |len: usize, scale: f64| -> Vec<f32> {
        (0..len).map(|_| (rng.normal() * scale) as f32).collect()
    };
    let h = Var::from_vec(randn(n * c, 1.0), (1, n, c), &dev).unwrap();
    let w = Var::from_vec(randn(v * c, 0.05), (v, c), &dev).unwrap();
    let ids: Vec<u32> = (0..n as u32).map(|i| i * 7919 % v as u32).collect();
    let targets = Tensor::from_vec(ids, (1, n), &dev).unwrap();
    let before = shared::process::peak_rss_mb();
    let t0 = Instant::now();
    let loss = match mode.as_str() {
        "whole" => {
            let logits = h
                .as_tensor()
                .broadcast_matmul(&w.as_tensor().t().unwrap())
                .unwrap();
            per_token_loss(&logits, &targets).unwrap()
        }
        "chunked" | "fused" => lm_head_losses(h.as_tensor(), w.as_tensor(), &targets).unwrap(),
        other => panic!("mode {other}: whole, chunked or fused"),
    };
    let mean = loss.mean_all().unwrap();
    let grads = mean.backward().unwrap();
    let gw = grads
        .get(w.as_tensor())
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap();
    println!(
        "{{\"mode\":\"{mode}\",\"n\":{n},\"c\":{c},\"v\":{v},\"loss\":{:.7},\"grad_w_sq\":{:.9e},\"setup_peak_mib\":{before:.0},\"peak_mib\":{:.0},\"seconds\":{:.2}}}",
        mean.to_scalar::<f32>().unwrap(),
        gw.to_scalar::<f32>().unwrap(),
        shared::process::peak_rss_mb(),
        t0.elapsed().as_secs_f64()
    );
}
