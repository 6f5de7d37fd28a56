//! Analysis of an end-to-end run of the stack. `scripts/e2e-test` runs the stack under load and
//! records, per run, Docker's own event stream, the agent's incidents and metrics, and Locust's
//! statistics; this crate turns them into figures and checks. The crash and recovery times come
//! from Docker, not from the agent, so the agent's own account is checked rather than trusted.
//!
//! - [`events`]: Docker events → crashes, recoveries, starts of other services.
//! - [`report`]: one run's figures and checks; the summary table.

pub mod events;
pub mod report;

/// Nearest-rank percentile of `values` (`p` in 0..=100); `None` when empty.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&v, 50.0), Some(3.0));
        assert_eq!(percentile(&v, 95.0), Some(5.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
    }
}
