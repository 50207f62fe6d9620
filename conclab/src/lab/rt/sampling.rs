//! Median and quartiles of an async body: [`Sampling`] on a runtime of [`super::run`].

use super::{Rt, RtError};
use crate::lab::timing::{Sampling, Stats};
use std::future::Future;
use std::time::{Duration, Instant};

impl Sampling {
    /// Like [`Sampling::measure`] for an async body: one fresh runtime (see [`run`]) runs
    /// `warmup` + `samples` calls of `body` one after another; each returns the time it
    /// measured itself. The whole series shares `rt`'s timeout.
    ///
    /// ```
    /// use conclab::lab::{Sampling, rt::{Rt, ms}};
    /// let s = Sampling { warmup: 1, samples: 3 }
    ///     .measure_async(&Rt::current(), || async {
    ///         let t = std::time::Instant::now();
    ///         tokio::time::sleep(ms(2)).await;
    ///         t.elapsed()
    ///     })
    ///     .unwrap();
    /// assert_eq!(s.n, 3);
    /// assert!(s.median >= 0.002);
    /// ```
    pub fn measure_async<F, Fut>(&self, rt: &Rt, mut body: F) -> Result<Stats, RtError>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Duration> + 'static,
    {
        let (warmup, samples) = (self.warmup, self.samples.max(1));
        let seconds = rt.run(move || async move {
            for _ in 0..warmup {
                std::hint::black_box(body().await);
            }
            let mut out = Vec::with_capacity(samples);
            for _ in 0..samples {
                out.push(body().await.as_secs_f64());
            }
            out
        })?;
        Ok(Stats::from_samples(&seconds).expect("durations are finite"))
    }

    /// Times the whole of each `body().await` (seconds), as [`Sampling::measure_async`].
    pub fn time_async<F, Fut>(&self, rt: &Rt, mut body: F) -> Result<Stats, RtError>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future + 'static,
    {
        self.measure_async(rt, move || {
            let fut = body();
            async move {
                let t = Instant::now();
                std::hint::black_box(fut.await);
                t.elapsed()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::rt::ms;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn async_sampling_summarises_every_sample() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let s = Sampling { warmup: 2, samples: 5 }
            .measure_async(&Rt::current(), move || {
                let c = c.clone();
                async move {
                    c.fetch_add(1, Ordering::Relaxed);
                    Duration::from_millis(3)
                }
            })
            .unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 7);
        assert_eq!((s.n, s.median), (5, 0.003));
        let t = Sampling { warmup: 0, samples: 3 }.time_async(&Rt::multi(1), || tokio::time::sleep(ms(2))).unwrap();
        assert!(t.min >= 0.002, "{t:?}");
    }
}
