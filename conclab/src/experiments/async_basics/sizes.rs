//! An `async fn` is a state machine, and its future stores whatever is alive across an
//! `.await`: the sizes (`size_of_val`) of futures whose bodies differ only in that.

use crate::lab::rt::{self, Rt, ms};
use crate::lab::{Figure, Finding, LabError, ParamError, Report, Table, fmt_num};
use crate::primitives::future::{Countdown, TwoWaits, two_waits};
use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::mem::size_of_val;

/// The array sizes [`future_sizes`] can use (each is its own compiled function: the
/// size is a const generic, as a future's layout is fixed at compile time).
pub const ARRAY_SIZES: [usize; 5] = [64, 256, 1024, 4096, 16384];

/// Parameters of [`future_sizes`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FutureSizes {
    /// Bytes of the `[u8; N]` array the bodies hold: one of 64, 256, 1024, 4096, 16384.
    pub array_bytes: usize,
}

impl Default for FutureSizes {
    fn default() -> Self {
        FutureSizes { array_bytes: 1024 }
    }
}

impl FutureSizes {
    /// Checks the parameter; nothing has run when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        if ARRAY_SIZES.contains(&self.array_bytes) {
            return Ok(());
        }
        let list: Vec<String> = ARRAY_SIZES.iter().map(|n| n.to_string()).collect();
        Err(ParamError::new("array_bytes", format!("one of {}", list.join(", ")), self.array_bytes))
    }
}

/// One measured future.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SizeRow {
    /// Short name, as on the figure's x axis.
    pub future: String,
    /// What its body does, in code.
    pub body: String,
    /// `size_of_val` of the future before its first poll, in bytes.
    pub bytes: usize,
    /// Bytes it allocated on the heap (the `Box::pin`ed inner future), 0 if none.
    pub heap_bytes: usize,
    /// Whether the figure shows it (the table lists every row).
    pub in_figure: bool,
}

/// Result of [`future_sizes`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FutureSizesReport {
    pub params: FutureSizes,
    pub rows: Vec<SizeRow>,
    /// `size_of::<tokio::time::Sleep>()`.
    pub sleep_bytes: usize,
    /// What the futures returned when awaited (all of them ran to completion).
    pub outputs: u64,
}

pub const SMALL: &str = "small fn";
pub const HELD: &str = "array held";
pub const SCOPED: &str = "scope ends first";
pub const DROPPED: &str = "drop() first";
pub const NESTED: &str = "nested";
pub const BOXED: &str = "boxed inner";
pub const IN_TURN: &str = "2 arrays in turn";
pub const AT_ONCE: &str = "2 arrays at once";
pub const SLEEP: &str = "tokio sleep";
pub const EMPTY: &str = "async {}";
pub const ASYNC_FN: &str = "two_waits";
pub const ENUM: &str = "TwoWaits enum";

async fn small() -> u64 {
    Countdown::new(2).await as u64
}

async fn holds<const N: usize>() -> u64 {
    let buf = [7u8; N];
    Countdown::new(2).await;
    black_box(&buf)[N / 2] as u64
}

async fn scoped<const N: usize>() -> u64 {
    let x = {
        let buf = [7u8; N];
        black_box(&buf)[N / 2] as u64
    };
    Countdown::new(2).await;
    x
}

/// An array that is not `Copy`, so that `drop` really moves it out (on a `Copy` array,
/// `drop(buf)` would drop a copy and leave `buf` alive).
struct Big<const N: usize>([u8; N]);

async fn dropped<const N: usize>() -> u64 {
    let buf = Big([7u8; N]);
    let x = black_box(&buf).0[N / 2] as u64;
    // The lesson: does moving the value out before the `.await` free its room?
    #[allow(clippy::drop_non_drop)]
    drop(buf);
    Countdown::new(2).await;
    x
}

async fn nested<const N: usize>() -> u64 {
    holds::<N>().await + 1
}

async fn boxed<const N: usize>() -> u64 {
    Box::pin(holds::<N>()).await + 1
}

async fn in_turn<const N: usize>() -> u64 {
    let x = {
        let a = [1u8; N];
        Countdown::new(2).await;
        black_box(&a)[0] as u64
    };
    let b = [2u8; N];
    Countdown::new(2).await;
    x + black_box(&b)[0] as u64
}

async fn at_once<const N: usize>() -> u64 {
    let a = [1u8; N];
    let b = [2u8; N];
    Countdown::new(2).await;
    black_box(&a)[0] as u64 + black_box(&b)[0] as u64
}

async fn sleeps() -> u64 {
    tokio::time::sleep(ms(1)).await;
    1
}

/// Measures each future's size before its first poll, then awaits it (so every one is a
/// real, running future); returns the rows and the sum of the outputs.
async fn measure<const N: usize>() -> (Vec<SizeRow>, u64) {
    let mut rows = Vec::new();
    let mut sum = 0u64;
    let mut row = |future: &str, body: &str, bytes: usize, heap_bytes: usize, in_figure: bool| {
        rows.push(SizeRow { future: future.into(), body: body.into(), bytes, heap_bytes, in_figure })
    };
    let n = N;
    let f = async {};
    row(EMPTY, "async {}", size_of_val(&f), 0, false);
    f.await;
    let f = small();
    row(SMALL, "Countdown::new(2).await", size_of_val(&f), 0, true);
    sum += f.await;
    let f = holds::<N>();
    row(HELD, &format!("let buf = [7u8; {n}]; Countdown::new(2).await; use(&buf)"), size_of_val(&f), 0, true);
    sum += f.await;
    let f = scoped::<N>();
    row(SCOPED, &format!("{{ let buf = [7u8; {n}]; use(&buf) }} Countdown::new(2).await"), size_of_val(&f), 0, true);
    sum += f.await;
    let f = dropped::<N>();
    row(
        DROPPED,
        &format!("let buf = Big([7u8; {n}]) (not Copy); use(&buf); drop(buf); Countdown::new(2).await"),
        size_of_val(&f),
        0,
        true,
    );
    sum += f.await;
    let f = nested::<N>();
    row(NESTED, "holds().await + 1", size_of_val(&f), 0, true);
    sum += f.await;
    let f = boxed::<N>();
    let heap = size_of_val(&holds::<N>());
    row(BOXED, "Box::pin(holds()).await + 1", size_of_val(&f), heap, true);
    sum += f.await;
    let f = in_turn::<N>();
    row(
        IN_TURN,
        &format!("{{ let a = [1u8; {n}]; wait.await; use(&a) }} let b = [2u8; {n}]; wait.await; use(&b)"),
        size_of_val(&f),
        0,
        true,
    );
    sum += f.await;
    let f = at_once::<N>();
    row(AT_ONCE, &format!("let a = [1u8; {n}]; let b = [2u8; {n}]; wait.await; use(&a, &b)"), size_of_val(&f), 0, true);
    sum += f.await;
    let f = sleeps();
    row(SLEEP, "tokio::time::sleep(1 ms).await", size_of_val(&f), 0, true);
    sum += f.await;
    let f = two_waits("x".into(), 2);
    row(ASYNC_FN, "primitives::two_waits: two awaits, a String and a Vec held", size_of_val(&f), 0, false);
    sum += f.await.len() as u64;
    let f = TwoWaits::new("x", 2);
    row(ENUM, "primitives::TwoWaits: the same, one enum variant per .await", size_of_val(&f), 0, false);
    sum += f.await.len() as u64;
    (rows, sum)
}

/// Measures `size_of_val` of futures whose bodies differ in what they hold across an
/// `.await`, with an `[u8; array_bytes]` array: held, dropped before, in a nested call,
/// behind `Box::pin`, two in turn or at once; plus a plain small `async fn`, a tokio sleep,
/// and [`two_waits`] next to its hand-written state machine [`TwoWaits`]. Each future is
/// then awaited on a current-thread runtime (through [`crate::lab::rt`]).
pub fn future_sizes(p: &FutureSizes) -> Result<FutureSizesReport, LabError> {
    p.validate()?;
    let n = p.array_bytes;
    let (rows, outputs) = rt::run(Rt::current(), move || async move {
        match n {
            64 => measure::<64>().await,
            256 => measure::<256>().await,
            1024 => measure::<1024>().await,
            4096 => measure::<4096>().await,
            _ => measure::<16384>().await,
        }
    })?;
    Ok(FutureSizesReport { params: p.clone(), rows, sleep_bytes: std::mem::size_of::<tokio::time::Sleep>(), outputs })
}

impl FutureSizesReport {
    /// The size of the future named `future` (one of the constants of this module).
    pub fn bytes(&self, future: &str) -> Option<usize> {
        self.rows.iter().find(|r| r.future == future).map(|r| r.bytes)
    }

    fn b(&self, future: &str) -> f64 {
        self.bytes(future).unwrap_or(0) as f64
    }
}

fn bytes(n: f64) -> String {
    format!("{} B", crate::lab::findings::group(n as u64))
}

/// `+1 024 B` / `−8 B` / `+0 B`.
fn signed(d: f64) -> String {
    if d < 0.0 { format!("−{}", bytes(-d)) } else { format!("+{}", bytes(d)) }
}

impl Report for FutureSizesReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let n = self.params.array_bytes as f64;
        let (small, held, scoped, dropped) = (self.b(SMALL), self.b(HELD), self.b(SCOPED), self.b(DROPPED));
        out.push(Finding::note(format!(
            "Holding a {} array across the .await made the future {} bigger than the small async fn ({} vs {}); \
             ending the array's scope before the .await: {} ({} — {})",
            bytes(n),
            bytes(held - small),
            bytes(held),
            bytes(small),
            bytes(scoped),
            signed(scoped - small),
            if scoped - small < n / 2.0 { "the array is not stored" } else { "the array is still stored" }
        )));
        out.push(Finding::note(if dropped - small < n / 2.0 {
            format!("drop(array) before the .await: {} — no room kept for the array either", bytes(dropped))
        } else {
            format!(
                "drop(array) before the .await: {} — the array's room is still kept: drop() ends the value, but \
                 this compiler keeps the variable's slot until its scope ends (end the scope with {{ }} instead)",
                bytes(dropped)
            )
        }));
        let (nested, boxed) = (self.b(NESTED), self.b(BOXED));
        out.push(Finding::note(format!(
            "Awaiting the holding fn inside another: {} — the inner future ({}) is stored inside the outer one \
             ({} of its own). Box::pin(inner).await: {} — only a pointer and a state stay in the outer future; \
             the inner {} moved to one heap allocation",
            bytes(nested),
            bytes(held),
            signed(nested - held),
            bytes(boxed),
            bytes(held)
        )));
        let (turn, once) = (self.b(IN_TURN), self.b(AT_ONCE));
        out.push(Finding::note(format!(
            "Two {} arrays, each held across its own .await: {} ({}× the array) — {}; both held across one \
             .await: {} ({}× the array)",
            bytes(n),
            bytes(turn),
            fmt_num(turn / n),
            if turn < 1.5 * n {
                "the compiler lays them over the same bytes, since they are never alive together"
            } else {
                "this compiler gives each its own bytes although they are never alive together"
            },
            bytes(once),
            fmt_num(once / n)
        )));
        out.push(Finding::note(format!(
            "Awaiting tokio::time::sleep: {}, because the Sleep being awaited ({}) lives inside the future",
            bytes(self.b(SLEEP)),
            bytes(self.sleep_bytes as f64)
        )));
        let (a, e) = (self.b(ASYNC_FN), self.b(ENUM));
        out.push(Finding::note(format!(
            "two_waits as an async fn: {}; written by hand as the enum TwoWaits: {}{}",
            bytes(a),
            bytes(e),
            if a == e {
                " — the same layout".to_string()
            } else {
                format!(
                    " — the compiler's layout is {} {} than the hand-written one",
                    bytes((a - e).abs()),
                    if a > e { "bigger" } else { "smaller" }
                )
            }
        )));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let n = self.params.array_bytes;
        let mut f = Figure::bars(
            "A future stores what is alive across its .awaits",
            &format!("what the async body holds (the array is [u8; {n}])"),
            "size_of_val of the future (bytes)",
        );
        // The colour says what the data show: whether the future has room for the array.
        let big = format!("at least {n} B: room for the array inside");
        let small = format!("under {n} B: no array inside");
        for r in self.rows.iter().filter(|r| r.in_figure) {
            let series = if r.bytes >= n { &big } else { &small };
            // The size in the label too: next to a 16 KiB bar, a 12 B one has no visible height.
            f = f.bar(&format!("{} ({} B)", r.future, r.bytes), series, r.bytes as f64, None);
        }
        f = f.note(format!(
            "Sizes before the first poll; each future was then awaited. Box::pin's row counts only the outer future: \
             its inner future ({} B) is on the heap. The table lists every body.",
            self.rows.iter().find(|r| r.future == BOXED).map_or(0, |r| r.heap_bytes)
        ));
        vec![f]
    }

    fn table(&self) -> Table {
        let mut t = Table::new("Sizes of futures", &["future", "bytes", "heap bytes", "body"]);
        for r in &self.rows {
            t.row(vec![r.future.clone(), r.bytes.to_string(), r.heap_bytes.to_string(), r.body.clone()]);
        }
        t.note(format!(
            "size_of_val of each future before its first poll; `wait` is Countdown::new(2), `use` a black_box read; \
             size_of::<tokio::time::Sleep>() = {} B.",
            self.sleep_bytes
        ));
        t
    }
}

crate::impl_params!(FutureSizes);

/// This part's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![crate::lab::Experiment::new(
        "future-sizes",
        "04-async",
        "size_of_val of futures holding an array across .await or not, nested, Box::pin'ed, vs a hand-written enum",
        future_sizes,
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_sizes_outside_the_set() {
        assert!(future_sizes(&FutureSizes { array_bytes: 100 }).is_err());
        let e = FutureSizes { array_bytes: 0 }.validate().unwrap_err();
        assert!(e.to_string().contains("one of 64, 256, 1024, 4096, 16384"), "{e}");
    }

    #[test]
    fn holding_an_array_across_an_await_stores_it_and_boxing_moves_it_out() {
        for n in [64, 4096] {
            let r = future_sizes(&FutureSizes { array_bytes: n }).unwrap();
            let b = |k| r.bytes(k).unwrap();
            assert!(b(HELD) >= b(SMALL) + n, "{:?}", r.rows);
            assert!(b(SCOPED) < n, "{:?}", r.rows);
            assert!(b(NESTED) >= b(HELD));
            assert!(b(BOXED) < 64 && r.rows.iter().any(|r| r.future == BOXED && r.heap_bytes >= n));
            assert!(b(AT_ONCE) >= 2 * n);
            assert!(b(SLEEP) >= r.sleep_bytes);
            assert_eq!(b(EMPTY), 1);
            assert!(r.findings().len() >= 5);
            assert!(r.figure().errors.is_empty() && r.figure().to_svg().contains("<svg"));
        }
    }
}
