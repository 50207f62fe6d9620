//! Overhead of the timing helper itself: what one `Sampling::measure` sample adds on top
//! of the work it times, and what summarising samples costs.

use conclab::lab::{Sampling, Stats};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Instant;

fn timing_overhead(c: &mut Criterion) {
    let one = Sampling { warmup: 0, samples: 1 };
    c.bench_function("Sampling::time, empty body, 1 sample", |b| b.iter(|| black_box(one.time(|| {}))));
    c.bench_function("Instant::now + elapsed", |b| b.iter(|| black_box(Instant::now().elapsed())));
    let samples: Vec<f64> = (0..101).map(|i| (i * 7919 % 101) as f64).collect();
    c.bench_function("Stats::from_samples, 101 samples", |b| {
        b.iter(|| black_box(Stats::from_samples(black_box(&samples))))
    });
}

criterion_group!(benches, timing_overhead);
criterion_main!(benches);
