//! Every background loop runs under a supervisor: a panic inside it is caught at the task
//! boundary, logged, counted (`healing_task_panics_total{task}`) and the loop started again
//! after a short pause (doubling up to 10 s while it keeps panicking). A loop that ends on its
//! own (its channel closed) is not restarted. Aborting the supervisor's task aborts the loop.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::metrics::Metrics;

const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(10);
/// A loop that ran this long before panicking starts again after the first pause.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Spawns `make()` as the loop `task` (a fixed name: it labels the metric), restarting it after
/// each panic.
pub fn spawn<F, Fut>(task: &'static str, metrics: &Metrics, make: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let metrics = metrics.clone();
    tokio::spawn(async move {
        let mut pause = FIRST_PAUSE;
        loop {
            let started = tokio::time::Instant::now();
            let mut inner = AbortOnDrop(tokio::spawn(make()));
            match (&mut inner.0).await {
                Ok(()) => return,
                Err(e) if e.is_panic() => {
                    let what = panic_message(e.into_panic());
                    metrics.task_panics.with_label_values(&[task]).inc();
                    if started.elapsed() >= HEALTHY_RUN {
                        pause = FIRST_PAUSE;
                    }
                    tracing::error!(task, error = %what, restart_in_ms = pause.as_millis() as u64, "background task panicked; restarting it");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                Err(_) => return,
            }
        }
    })
}

/// A panic's message, when it has one.
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .map(|s| crate::text::bounded(&s, 200))
        .unwrap_or_else(|| "a panic".to_string())
}

/// Aborts the loop when its supervisor goes (the supervisor's own task was aborted at shutdown).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_loop_is_counted_and_started_again() {
        let metrics = Metrics::new(&[], &[], &[]);
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let handle = spawn("resync", &metrics, move || {
            let r = r.clone();
            async move {
                if r.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("boom");
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert!(metrics
            .render()
            .contains("healing_task_panics_total{task=\"resync\"} 2"));
        handle.abort();
        let _ = handle.await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "aborted with its supervisor"
        );
    }
}
