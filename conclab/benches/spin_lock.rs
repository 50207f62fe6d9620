//! Uncontended lock + unlock: the hand-built `SpinLock` (one compare-and-swap to take,
//! one store to release) against `std::sync::Mutex` and `parking_lot::Mutex`, which
//! take the same fast path when no one else holds the lock.

use conclab::primitives::SpinLock;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn uncontended(c: &mut Criterion) {
    let spin = SpinLock::new(0u64);
    c.bench_function("SpinLock lock+increment+unlock", |b| b.iter(|| *black_box(&spin).lock() += 1));
    let std_mutex = std::sync::Mutex::new(0u64);
    c.bench_function("std::sync::Mutex lock+increment+unlock", |b| {
        b.iter(|| *black_box(&std_mutex).lock().unwrap() += 1)
    });
    let pl = parking_lot::Mutex::new(0u64);
    c.bench_function("parking_lot::Mutex lock+increment+unlock", |b| b.iter(|| *black_box(&pl).lock() += 1));
}

criterion_group!(benches, uncontended);
criterion_main!(benches);
