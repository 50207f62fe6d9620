//! Every experiment, run with small parameters, joins every thread it started before it
//! returns: the process's thread count is the same before and after each one. (Its own
//! test binary, so no other test's threads come and go meanwhile.)

use conclab::experiments::experiments;
use conclab::lab::machine::thread_count_settled;
use conclab::lab::thread_count;
use std::time::Duration;

/// Small parameters per experiment, so the whole sweep takes seconds.
fn quick(name: &str) -> &'static [(&'static str, &'static str)] {
    match name {
        "spawn-cost" => &[("counts", "1,64"), ("samples", "2")],
        "timeline" => &[("tasks", "3"), ("work_ms", "5")],
        "processes" => &[("threads", "3")],
        "stacks" => &[("threads", "3"), ("stack_kib", "128")],
        "ping-pong" => &[("round_trips", "200"), ("samples", "1")],
        "scaling" => &[("threads", "1,2,3"), ("work_ms", "10"), ("samples", "1")],
        "histogram" => &[("threads", "1,2"), ("duration_ms", "10"), ("samples", "1")],
        "actor" => &[("clients", "1,2"), ("duration_ms", "10"), ("samples", "1")],
        "interior-costs" => &[("ops", "10000"), ("samples", "1")],
        "racy-counter" => &[("threads", "1,2"), ("increments", "20000"), ("runs", "1")],
        "lifecycle" => &[("detached_ms", "30"), ("scoped", "3"), ("scoped_ms", "20")],
        "capture-cost" => &[("sizes_kib", "1,64"), ("spawns", "3"), ("samples", "1")],
        "pool-vs-spawn" => &[("items", "50"), ("work_ns", "100"), ("pool_threads", "16"), ("samples", "1")],
        "oversubscription" => &[("threads", "1,2,8"), ("work_ms", "10"), ("phases", "10"), ("samples", "1")],
        "orderings" => &[("threads", "1,2"), ("duration_ms", "5"), ("samples", "1")],
        "litmus" => &[("trials", "2000"), ("runs", "1")],
        "contention" => &[("threads", "1,2"), ("duration_ms", "5"), ("samples", "1")],
        "queues" => &[("pairs", "1,2"), ("items", "5000"), ("samples", "1")],
        "false-sharing" => &[("threads", "1,2"), ("duration_ms", "5"), ("samples", "1")],
        "deadlock" => &[("hold_ms", "10"), ("check_ms", "3")],
        "lock-strategies" => &[("threads", "2"), ("duration_ms", "10"), ("samples", "1")],
        "philosophers" => &[("duration_ms", "60"), ("reach_us", "1000")],
        "executors" => &[("tasks", "1,100"), ("yields", "10"), ("samples", "1")],
        "overlap" => &[("tasks", "4"), ("threads", "1,4"), ("work_ms", "1"), ("wait_ms", "2"), ("samples", "1")],
        "poll-trace" => &[("a_ms", "2"), ("b_ms", "6")],
        "future-sizes" => &[("array_bytes", "64")],
        "laziness" => &[("work_ms", "4"), ("wait_ms", "3")],
        "why-async" => &[
            ("threads", "1,100"),
            ("tasks", "1,100"),
            ("echo", "1,100"),
            ("wait_ms", "5"),
            ("compute", "1,4"),
            ("work_us", "200"),
            ("samples", "1"),
        ],
        "await-flow" => &[("sleeps", "1,4"), ("sleep_ms", "2"), ("step_ms", "2"), ("samples", "1")],
        "sleep-lateness" => &[("sizes_us", "100,1000"), ("samples", "3")],
        "timer-wheel" => &[("timers", "500"), ("steps", "10")],
        "cancellation" => {
            &[("steps", "10"), ("step_ms", "5"), ("cancel_at_ms", "12"), ("tasks", "10"), ("repeats", "1")]
        }
        "cancel-safety" => &[("frames", "40")],
        "task-lifecycle" => {
            &[("step_ms", "2"), ("set_tasks", "2"), ("blocking_ms", "30"), ("shutdown_timeout_ms", "10")]
        }
        "paused-time" => &[("failures", "4"), ("real_scale", "1000")],
        "runtime-flavors" => &[("workers", "1,2"), ("run_ms", "60"), ("repeats", "1")],
        "blocking-pool" => {
            &[("pool_sizes", "1,4"), ("jobs", "8"), ("job_ms", "2"), ("keep_alive_ms", "1,100"), ("bursts", "2")]
        }
        "work-stealing" => &[("tasks", "8"), ("task_us", "200")],
        "coop-budget" => &[("items", "2000")],
        "stream-buffering" => &[("ks", "1,8"), ("requests", "16")],
        "backpressure" => &[("items", "200"), ("item_bytes", "256"), ("consume_us", "200"), ("capacity", "8")],
        "heartbeat" => &[("workers", "1"), ("chunks", "4"), ("chunk_ms", "2")],
        "coordination" => &[("tasks", "5"), ("messages", "40")],
        "retry-storm" => &[("clients", "100")],
        "circuit-breaker" => &[("clients", "5")],
        "load-shedding" => &[("ramp_ms", "2000")],
        "graceful-shutdown" => &[("rate_per_s", "50")],
        "tower-vs-hand" => &[("ramp_ms", "2000")],
        "tower-retry" => &[("clients", "100")],
        "scheduler-intervals" => &[("intervals", "4,61"), ("run_ms", "40")],
        "server-scaling" => &[("connections", "4,50"), ("requests", "100")],
        "overload" => &[("loads", "0.5,2"), ("modes", "none,shed"), ("duration_ms", "50")],
        "connection-pool" => &[("tasks", "20"), ("pools", "1,4")],
        _ => &[],
    }
}

#[test]
fn no_thread_outlives_its_experiment() {
    let mut leaks = Vec::new();
    for e in experiments() {
        let pairs: Vec<(String, String)> = quick(e.name).iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert!(!pairs.is_empty() || e.param_names().is_empty(), "{} has no quick parameters in this test", e.name);
        let before = thread_count();
        let result = e.run(&pairs);
        // A joined thread leaves the kernel's count a moment after `join` returns.
        let after = thread_count_settled(before, Duration::from_millis(200));
        if let Err(err) = &result {
            panic!("{} failed with quick parameters: {err}", e.name);
        }
        // lifecycle's detached thread is the lesson: it ends by itself, and the
        // experiment waits for that before returning, so it is checked like the others.
        if after != before {
            leaks.push(format!("{}: {before} threads before, {after} after", e.name));
        }
    }
    assert!(leaks.is_empty(), "threads left behind:\n{}", leaks.join("\n"));
}
