//! Schedules over training steps: the learning rate (linear warmup, then
//! cosine decay to a floor) and the selection ratio k (constant or linear).

/// Learning rate at `step` (0-based) of `total`.
pub fn lr_at(step: u64, total: u64, peak: f64, warmup: u64, min_ratio: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / span as f64).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    peak * (min_ratio + (1.0 - min_ratio) * cosine)
}

/// Selection ratio at `step`: linear from `start` to `end` (== start for constant).
pub fn ratio_at(step: u64, total: u64, start: f64, end: f64) -> f64 {
    let progress = if total > 1 {
        step as f64 / (total - 1) as f64
    } else {
        1.0
    };
    start + (end - start) * progress.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_to_the_floor() {
        assert!((lr_at(0, 100, 1.0, 10, 0.1) - 0.1).abs() < 1e-12);
        assert!((lr_at(9, 100, 1.0, 10, 0.1) - 1.0).abs() < 1e-12);
        assert!((lr_at(10, 100, 1.0, 10, 0.1) - 1.0).abs() < 1e-12);
        assert!((lr_at(100, 100, 1.0, 10, 0.1) - 0.1).abs() < 1e-12);
        assert!((lr_at(55, 100, 1.0, 10, 0.0) - 0.5).abs() < 1e-12);
        assert!((ratio_at(0, 11, 0.2, 0.8) - 0.2).abs() < 1e-12);
        assert!((ratio_at(10, 11, 0.2, 0.8) - 0.8).abs() < 1e-12);
    }
}
