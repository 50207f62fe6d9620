//! Self-check exercises of notebook 07: the reader picks a server or writes a client in a
//! cell; a checker here runs the load (bounded in time) and answers with a [`Verdict`].
//!
//! - [`check_survives_2000`]: hold [`SURVIVE_CONNECTIONS`] connections at once, every one
//!   answered, on at most [`THREAD_BUDGET`] server threads (a container's pids limit).
//! - [`check_bounded_pool`]: make [`POOL_REQUESTS`] requests from as many tasks through a
//!   pool of at most [`POOL_SIZE`] reused connections.

use crate::experiments::case_study::load::{self, Tally};
use crate::experiments::case_study::server::{ServerHandle, ServerKind, ServerOpts, Service, start_tokio_service};
use crate::lab::check::Verdict;
use crate::lab::rt::{self, Rt};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SURVIVE_EXERCISE: &str = "survive 2000 connections";
/// Connections [`check_survives_2000`] holds at once.
pub const SURVIVE_CONNECTIONS: usize = 2000;
/// The most threads the server may run on in [`check_survives_2000`]: a container with
/// `--pids-limit` (Docker) or `TasksMax` (systemd) refuses threads past such a limit.
pub const THREAD_BUDGET: usize = 64;

const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts a server of `kind` with `opts`, opens [`SURVIVE_CONNECTIONS`] connections at
/// once, has each answer one request while all are held, and shuts the server down.
/// Passes when every connection was answered, the server ran on at most
/// [`THREAD_BUDGET`] threads, and no thread or descriptor was left behind.
///
/// ```no_run
/// use conclab::prelude::*;
/// // A thread per connection holds them all — on 2 001 threads.
/// let v = check_survives_2000(ServerKind::Threads, ServerOpts::default());
/// assert!(!v.passed);
/// ```
pub fn check_survives_2000(kind: ServerKind, opts: ServerOpts) -> Verdict {
    let (room, why) = load::connection_room();
    if room < SURVIVE_CONNECTIONS {
        return Verdict::not_yet(
            SURVIVE_EXERCISE,
            format!("this process can hold only {room} connections: {why}"),
            "raise the descriptor limit (ulimit -n 8192) before starting the kernel",
        );
    }
    let threads_before = crate::lab::machine::thread_count();
    let fds_before = load::open_fds();
    let server: ServerHandle = match crate::experiments::case_study::server::start_server(kind, &opts) {
        Ok(s) => s,
        Err(e) => {
            return Verdict::not_yet(SURVIVE_EXERCISE, format!("the server did not start: {e}"), "check the options");
        }
    };
    let addr = server.addr();
    let body = move || async move {
        let (conns, mut setup) = load::connect_all(addr, SURVIVE_CONNECTIONS, STEP_TIMEOUT).await;
        let until = Instant::now() + STEP_TIMEOUT;
        let (conns, warm, _) = load::closed_loop_on(conns, 1, until, STEP_TIMEOUT).await;
        let answered = warm.samples.len();
        setup.merge(Tally { samples: Vec::new(), ..warm });
        let (held, threads) = (server.connections(), server.threads());
        let report = tokio::task::spawn_blocking(move || server.shutdown(Duration::from_secs(2))).await;
        drop(conns);
        (answered, setup, held, threads, report.ok())
    };
    let out = rt::run(Rt::multi(2).timeout(STEP_TIMEOUT * 4), body);
    let threads_after = crate::lab::machine::thread_count_settled(threads_before, Duration::from_secs(2));
    let fds_after = {
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            let n = load::open_fds();
            if n <= fds_before || Instant::now() >= until {
                break n;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let (answered, setup, held, threads, report) = match out {
        Ok(v) => v,
        Err(e) => return Verdict::not_yet(SURVIVE_EXERCISE, format!("the run failed: {e}"), "try the tokio server"),
    };
    let first = setup
        .first_error
        .clone()
        .or_else(|| report.as_ref().and_then(|r| r.first_error.clone()))
        .unwrap_or_else(|| "no error was reported".into());
    let refused = report.as_ref().map_or(0, |r| r.refused);
    if answered < SURVIVE_CONNECTIONS {
        return Verdict::not_yet(
            SURVIVE_EXERCISE,
            format!(
                "{answered} of {SURVIVE_CONNECTIONS} connections answered ({} errors, {refused} refused by the \
                 server): {first}",
                setup.errors
            ),
            if kind == ServerKind::Threads {
                "a thread per connection needs 2 000 threads and their stacks — serve the connections as tasks on a \
                 few workers (ServerKind::Tokio)"
            } else {
                "look at the first error; fewer workers leave more room to the client"
            },
        );
    }
    let detail = format!(
        "{answered} of {SURVIVE_CONNECTIONS} answered while {held} were held, on {threads} server thread(s) (budget \
         {THREAD_BUDGET})"
    );
    if threads > THREAD_BUDGET {
        return Verdict::not_yet(
            SURVIVE_EXERCISE,
            detail,
            if kind == ServerKind::Threads {
                "this machine allowed 2 001 threads, a container with a pids limit of 64 would refuse thread 65: hold \
                 the connections as tasks on a few worker threads (ServerKind::Tokio)"
            } else {
                "the tokio server runs its workers + 2 threads: fewer workers"
            },
        );
    }
    let left_threads = threads_after.saturating_sub(threads_before);
    let left_fds = fds_after.saturating_sub(fds_before);
    if left_threads > 0 || left_fds > 0 || report.as_ref().is_none_or(|r| r.detached > 0) {
        return Verdict::not_yet(
            SURVIVE_EXERCISE,
            format!("{detail}; but {left_threads} thread(s) and {left_fds} descriptor(s) were left after the shutdown"),
            "run the check again on a quiet kernel: another cell's threads may still have been ending",
        );
    }
    Verdict::pass(SURVIVE_EXERCISE, format!("{detail}; no thread or descriptor left after the shutdown"))
}

const POOL_EXERCISE: &str = "bounded connection pool";
/// Requests [`check_bounded_pool`] wants made.
pub const POOL_REQUESTS: usize = 200;
/// The most connections the pool may open in all (and so hold at once).
pub const POOL_SIZE: usize = 8;
/// The server's service time per request in [`check_bounded_pool`].
pub const POOL_SERVICE: Duration = Duration::from_millis(2);

/// What a [`check_bounded_pool`] client gets: the server's address, `connect` and
/// `request`, and counters the checker reads. Cheap to clone (into each task).
#[derive(Debug, Clone)]
pub struct PoolClient {
    addr: SocketAddr,
    next_id: Arc<AtomicU64>,
    served: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl PoolClient {
    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens a new connection to the server (within 5 s).
    pub async fn connect(&self) -> io::Result<tokio::net::TcpStream> {
        let s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(self.addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no connection within 5 s"))??;
        s.set_nodelay(true)?;
        Ok(s)
    }

    /// Makes one request on `conn` and checks the answer (within 5 s); the checker counts it.
    pub async fn request(&self, conn: &mut tokio::net::TcpStream) -> io::Result<()> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let r = tokio::time::timeout(Duration::from_secs(5), async {
            let line = format!("req {id}\n");
            conn.write_all(line.as_bytes()).await?;
            // One request at a time: the answer is the only thing on the connection.
            let mut got = Vec::with_capacity(line.len());
            let mut buf = [0u8; 64];
            while got.last() != Some(&b'\n') {
                let n = conn.read(&mut buf).await?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection"));
                }
                got.extend_from_slice(&buf[..n]);
            }
            if got == line.as_bytes() {
                Ok(())
            } else {
                Err(io::Error::other(format!("the answer was {:?}", String::from_utf8_lossy(&got))))
            }
        })
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no answer within 5 s")));
        let counter = if r.is_ok() { &self.served } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        r
    }
}

/// Gives `client` a [`PoolClient`] for a tokio server that takes [`POOL_SERVICE`] per
/// request; the reader's code makes [`POOL_REQUESTS`] requests from as many tasks. Passes
/// when every request was answered, the server accepted at most [`POOL_SIZE`]
/// connections in all (a pool reuses them), and more than one was in use at once.
///
/// ```no_run
/// use conclab::prelude::*;
/// // A connection per request, all at once: 200 connections.
/// let v = check_bounded_pool(|client| async move {
///     let tasks: Vec<_> = (0..POOL_REQUESTS)
///         .map(|_| {
///             let client = client.clone();
///             tokio::spawn(async move {
///                 let mut conn = client.connect().await.unwrap();
///                 client.request(&mut conn).await.unwrap();
///             })
///         })
///         .collect();
///     for t in tasks {
///         t.await.unwrap();
///     }
/// });
/// assert!(!v.passed);
/// ```
pub fn check_bounded_pool<F, Fut>(client: F) -> Verdict
where
    F: FnOnce(PoolClient) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let service = Service { time: POOL_SERVICE, slots: None, admit: None };
    let server = match start_tokio_service(&ServerOpts::default(), service) {
        Ok(s) => s,
        Err(e) => return Verdict::not_yet(POOL_EXERCISE, format!("the server did not start: {e}"), "run it again"),
    };
    let pc = PoolClient {
        addr: server.addr(),
        next_id: Arc::new(AtomicU64::new(0)),
        served: Arc::new(AtomicU64::new(0)),
        failed: Arc::new(AtomicU64::new(0)),
    };
    let (served, failed) = (Arc::clone(&pc.served), Arc::clone(&pc.failed));
    let out = rt::run(Rt::multi(2).timeout(Duration::from_secs(20)), move || client(pc));
    let report = server.shutdown(Duration::from_secs(1));
    let (served, failed) = (served.load(Ordering::Relaxed) as usize, failed.load(Ordering::Relaxed));
    if let Err(e) = out {
        return Verdict::not_yet(
            POOL_EXERCISE,
            format!("the run failed: {e}"),
            "await every task before the cell's future ends, and never hold a std Mutex guard across an .await",
        );
    }
    let detail = format!(
        "{served} of {POOL_REQUESTS} requests answered ({failed} failed); the server accepted {} connection(s), at \
         most {} open at once",
        report.accepted, report.peak
    );
    if served < POOL_REQUESTS {
        Verdict::not_yet(
            POOL_EXERCISE,
            detail,
            "make all 200 requests (client.request) and await them before returning",
        )
    } else if report.peak > POOL_SIZE {
        Verdict::not_yet(
            POOL_EXERCISE,
            detail,
            "bound the connections: share an Arc<Semaphore> of 8 permits and hold a permit (`let _permit = \
             sem.acquire().await.expect(\"never closed\")`) while a task uses a connection",
        )
    } else if report.accepted > POOL_SIZE {
        Verdict::not_yet(
            POOL_EXERCISE,
            detail,
            "bounded, but each request connected anew: keep the connections in an Arc<Mutex<Vec<TcpStream>>>, pop one \
             (connect only when it is empty) and push it back after the request — take the guard in its own statement \
             so it is dropped before any .await",
        )
    } else if report.peak <= 1 {
        Verdict::not_yet(
            POOL_EXERCISE,
            detail,
            "bounded, but one connection at a time: spawn the requests as tasks so up to 8 use the pool together",
        )
    } else {
        Verdict::pass(POOL_EXERCISE, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_server_is_over_the_budget_and_tokio_survives() {
        let v = check_survives_2000(ServerKind::Tokio, ServerOpts::default());
        assert!(v.passed, "{v}");
        let v = check_survives_2000(ServerKind::Tokio, ServerOpts { workers: 63, ..Default::default() });
        assert!(!v.passed && v.hint.as_deref().unwrap_or("").contains("fewer workers"), "{v}");
        if crate::lab::limits::check_threads("t", SURVIVE_CONNECTIONS + 16).is_ok() {
            let v = check_survives_2000(ServerKind::Threads, ServerOpts::default());
            assert!(!v.passed, "{v}");
            assert!(v.detail.contains("2001 server thread(s)"), "{v}");
        }
    }

    #[test]
    fn a_pool_passes_a_connection_per_request_does_not() {
        let v = check_bounded_pool(|client| async move {
            let hs: Vec<_> = (0..POOL_REQUESTS)
                .map(|_| {
                    let client = client.clone();
                    tokio::spawn(async move {
                        let mut conn = client.connect().await.unwrap();
                        client.request(&mut conn).await.unwrap();
                    })
                })
                .collect();
            for h in hs {
                h.await.unwrap();
            }
        });
        assert!(!v.passed, "{v}");
        let v = check_bounded_pool(|client| async move {
            let sem = Arc::new(tokio::sync::Semaphore::new(POOL_SIZE));
            let pool = Arc::new(std::sync::Mutex::new(Vec::<tokio::net::TcpStream>::new()));
            let mut hs = Vec::new();
            for _ in 0..POOL_REQUESTS {
                let (client, sem, pool) = (client.clone(), sem.clone(), pool.clone());
                hs.push(tokio::spawn(async move {
                    let _permit = sem.acquire().await.unwrap();
                    let reused = pool.lock().unwrap().pop();
                    let mut conn = match reused {
                        Some(c) => c,
                        None => client.connect().await.unwrap(),
                    };
                    client.request(&mut conn).await.unwrap();
                    pool.lock().unwrap().push(conn);
                }));
            }
            for h in hs {
                h.await.unwrap();
            }
        });
        assert!(v.passed, "{v}");
        let v = check_bounded_pool(|client| async move {
            let mut conn = client.connect().await.unwrap();
            for _ in 0..POOL_REQUESTS {
                client.request(&mut conn).await.unwrap();
            }
        });
        assert!(!v.passed && v.hint.as_deref().unwrap_or("").contains("one connection at a time"), "{v}");
    }
}
