//! Per-poll cost of the hand-built `MiniExecutor` against tokio's current-thread runtime:
//! one round of 100 tasks that each yield 100 times (10 100 polls), the same hot loops
//! the `executors` experiment times. Throughput is in polls per second.

use conclab::experiments::async_basics::executors::{mini_rounds, tokio_rounds};
use conclab::lab::rt::{self, Rt};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;

const TASKS: usize = 100;
const YIELDS: usize = 100;

fn per_poll(c: &mut Criterion) {
    let mut g = c.benchmark_group("100 tasks × 101 polls");
    g.throughput(Throughput::Elements((TASKS * (YIELDS + 1)) as u64));
    g.bench_function("mini executor", |b| {
        b.iter_custom(|iters| mini_rounds(TASKS, YIELDS, iters as usize).expect("the rounds finish").0)
    });
    g.bench_function("tokio current-thread", |b| {
        b.iter_custom(|iters| {
            // One fresh runtime per batch of iterations (through the lab's helper); the
            // rounds run inside a spawned task, as in the experiment.
            rt::run(Rt::current().timeout(Duration::from_secs(600)), move || async move {
                tokio::spawn(tokio_rounds(TASKS, YIELDS, iters as usize)).await.expect("the rounds do not panic")
            })
            .expect("the runtime finishes")
        })
    });
    g.finish();
}

criterion_group!(benches, per_poll);
criterion_main!(benches);
