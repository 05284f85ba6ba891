//! Pricing as fal publishes it: $0.025 per generated second, seconds counted at 15 fps.

/// Frames per billed second.
pub const BILLING_FPS: f64 = 15.0;
/// USD per billed second.
pub const USD_PER_SECOND: f64 = 0.025;

/// Billed seconds for `num_frames` stage-1 frames: `num_frames / 15`.
pub fn billable_seconds(num_frames: u32) -> f64 {
    f64::from(num_frames) / BILLING_FPS
}

/// Cost in USD of `seconds` billed seconds: `0.025 * seconds`.
pub fn cost_usd(seconds: f64) -> f64 {
    USD_PER_SECOND * seconds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_request_costs_27_cents() {
        // 162 frames = 10.8 s = $0.27.
        assert!((billable_seconds(162) - 10.8).abs() < 1e-12);
        assert!((cost_usd(billable_seconds(162)) - 0.27).abs() < 1e-12);
        assert!((cost_usd(billable_seconds(15)) - 0.025).abs() < 1e-12);
        assert!((billable_seconds(961) - 64.066_666_666_666_67).abs() < 1e-9);
    }
}
