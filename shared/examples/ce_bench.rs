//! Times the per-token cross-entropy, fused CPU kernel vs composed candle ops,
//! forward and forward+backward, on (N, V) logits.
//! Usage: cargo run --release -p shared --example ce_bench [N] [V]
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use shared::model::loss::{composed_per_token_loss, per_token_loss};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (n, v) = (
        args.first().copied().unwrap_or(4080),
        args.get(1).copied().unwrap_or(4096),
    );
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (1, n, v), &dev).unwrap()).unwrap();
    let t = Tensor::from_vec(
        (0..n as u32).map(|i| i % v as u32).collect::<Vec<_>>(),
        (1, n),
        &dev,
    )
    .unwrap();
    for round in 0..2 {
        for (name, fused) in [("fused", true), ("composed", false)] {
            let f = |fused: bool| {
                if fused {
                    per_token_loss(x.as_tensor(), &t).unwrap()
                } else {
                    composed_per_token_loss(x.as_tensor(), &t).unwrap()
                }
            };
            let mut fwd = Vec::new();
            let mut both = Vec::new();
            for _ in 0..5 {
                let s = Instant::now();
                let l = f(fused);
                let _ = l.sum_all().unwrap().to_scalar::<f32>().unwrap();
                fwd.push(s.elapsed().as_secs_f64() * 1e3);
                let s = Instant::now();
                let l = f(fused);
                let g = l.sum_all().unwrap().backward().unwrap();
                let _ = g.get(x.as_tensor()).unwrap();
                both.push(s.elapsed().as_secs_f64() * 1e3);
            }
            fwd.sort_by(f64::total_cmp);
            both.sort_by(f64::total_cmp);
            if round == 1 {
                println!("{name:>9} ({n}x{v}): forward {:.1} ms, forward+backward {:.1} ms (median of 5)", fwd[2], both[2]);
            }
        }
    }
}
