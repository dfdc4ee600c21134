//! A fraction of tokens kept, in (0, 1]: one check for every flag that
//! takes one (`trainer train --select-ratio`, `scorer view|export --ratio`).

/// `r` if it is in (0, 1], else the message that says why not.
pub fn check_ratio(flag: &str, r: f64) -> Result<f64, String> {
    if r > 0.0 && r <= 1.0 {
        Ok(r)
    } else {
        Err(format!(
            "{flag} must be in (0, 1] (a fraction of the tokens kept), got {r}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_outside_zero_to_one_are_refused() {
        for bad in [1.5, -3.0, 0.0, f64::NAN, f64::INFINITY] {
            let e = check_ratio("--ratio", bad).unwrap_err();
            assert!(e.contains("--ratio") && e.contains("(0, 1]"), "{e}");
        }
        assert_eq!(check_ratio("--ratio", 1.0), Ok(1.0));
        assert_eq!(check_ratio("--ratio", 0.6), Ok(0.6));
    }
}
