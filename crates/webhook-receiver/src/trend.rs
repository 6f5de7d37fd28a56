//! Each replica's memory over its current life, and the trend of it: a least-squares slope over
//! the last samples, in bytes per second. A new life (another start) starts a new series; a
//! container no longer listed is forgotten. Bounded: [`MAX_SAMPLES`] per container, and only
//! the containers the caller still lists.

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};

/// Samples kept per container (at one a second, the last 15 s: long enough to smooth a burst,
/// short enough to follow a change of load).
pub const MAX_SAMPLES: usize = 15;
/// A trend needs this many samples ...
const MIN_SAMPLES: usize = 3;
/// ... spanning at least this long (seconds).
const MIN_SPAN: f64 = 1.5;

#[derive(Default)]
struct Series {
    life: Option<DateTime<Utc>>,
    samples: VecDeque<(DateTime<Utc>, u64)>,
}

#[derive(Default)]
pub struct Trends {
    series: HashMap<String, Series>,
}

impl Trends {
    /// Records `usage` of container `id` (in the life that started at `life`) at `at`; returns
    /// the trend in bytes per second once there are enough samples.
    pub fn observe(
        &mut self,
        id: &str,
        life: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
        usage: u64,
    ) -> Option<f64> {
        let s = self.series.entry(id.to_string()).or_default();
        if s.life != life {
            s.life = life;
            s.samples.clear();
        }
        if s.samples.back().is_some_and(|(t, _)| *t >= at) {
            return slope(&s.samples);
        }
        if s.samples.len() >= MAX_SAMPLES {
            s.samples.pop_front();
        }
        s.samples.push_back((at, usage));
        slope(&s.samples)
    }

    /// Forgets every container not in `listed`.
    pub fn retain(&mut self, listed: &HashSet<&str>) {
        self.series.retain(|id, _| listed.contains(id.as_str()));
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

fn slope(samples: &VecDeque<(DateTime<Utc>, u64)>) -> Option<f64> {
    let (t0, _) = *samples.front()?;
    let pts: Vec<(f64, f64)> = samples
        .iter()
        .map(|(t, u)| ((*t - t0).num_milliseconds() as f64 / 1000.0, *u as f64))
        .collect();
    let span = pts.last()?.0;
    if pts.len() < MIN_SAMPLES || span < MIN_SPAN {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn a_steady_leak_is_its_slope_and_a_new_life_starts_over() {
        let mut t = Trends::default();
        let life = Some(at(0));
        assert_eq!(t.observe("a", life, at(1), 100), None);
        assert_eq!(
            t.observe("a", life, at(2), 300),
            None,
            "two samples are no trend"
        );
        assert_eq!(t.observe("a", life, at(3), 500), Some(200.0));
        // Noise around the same leak stays close to it.
        t.observe("a", life, at(4), 650);
        let s = t.observe("a", life, at(5), 950).unwrap();
        assert!((s - 200.0).abs() < 30.0, "{s}");
        // A restart: the old life's samples say nothing about this one.
        assert_eq!(t.observe("a", Some(at(6)), at(7), 10), None);
    }

    #[test]
    fn bounded_per_container_and_forgets_what_is_gone() {
        let mut t = Trends::default();
        for i in 0..100 {
            t.observe("a", None, at(i), (i * 10) as u64);
        }
        assert_eq!(t.series["a"].samples.len(), MAX_SAMPLES);
        t.observe("b", None, at(0), 1);
        t.retain(&HashSet::from(["b"]));
        assert_eq!(t.len(), 1);
    }
}
