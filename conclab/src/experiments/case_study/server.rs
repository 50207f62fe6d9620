//! Two servers of the same line-echo protocol (one line in, the same line out), each on
//! 127.0.0.1 with an ephemeral port:
//!
//! - [`ServerKind::Threads`]: `std::net`, one OS thread per connection with a small stack
//!   (64 KiB by default, [`ServerOpts::stack_kib`]); the accept loop polls a non-blocking
//!   listener every millisecond so it can be told to stop.
//! - [`ServerKind::Tokio`]: a tokio runtime of its own (on its own thread, through
//!   [`crate::lab::rt::run`]) whose accept loop sits in a `select!` with a
//!   `CancellationToken`; each connection is a task in a `TaskTracker`.
//!
//! Both shut down the same way ([`ServerHandle::shutdown`]): stop accepting (the listener
//! is closed), let every connection finish the request it is answering and close at its
//! next idle point (drain), and at the deadline close what is left (abort). Then every
//! thread is joined. Dropping a [`ServerHandle`] does the same with a 1 s deadline, so a
//! server cannot outlive the call that started it, whatever path that takes.

use crate::lab::rt::{self, Rt};
use serde::Serialize;
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The longest line a server accepts, newline included; a longer one is answered with
/// `ERR line longer than 1024 bytes` and the connection is closed.
pub const MAX_LINE: usize = 1024;
/// The accept queue each listener asks for (the kernel caps it at `net.core.somaxconn`):
/// a burst of connects never overflows it, which would cost a client a 1 s SYN retry.
const BACKLOG: i32 = 4096;
/// How often a blocked connection thread wakes to look at the stop flags (a backstop:
/// shutdown wakes it at once by shutting its socket down).
const THREAD_TICK: Duration = Duration::from_secs(1);
/// After the abort, the longest shutdown waits for connections to end before it gives up
/// on them (they are closed by then; this only bounds the join).
const ABORT_WAIT: Duration = Duration::from_secs(2);

crate::choices! {
    /// How a server serves its connections.
    pub enum ServerKind {
        /// One OS thread per connection (`std::net`, blocking reads).
        Threads = "threads",
        /// One tokio task per connection on a multi-thread runtime of its own.
        Tokio = "tokio",
    }
}

impl ServerKind {
    /// A short name for figures and tables.
    pub fn label(self) -> &'static str {
        match self {
            ServerKind::Threads => "thread per connection",
            ServerKind::Tokio => "tokio tasks",
        }
    }
}

/// How to run a server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerOpts {
    /// Worker threads of the tokio server's runtime: 1..=64 (unused by the thread server).
    pub workers: usize,
    /// Stack of each connection thread of the thread server, KiB: 16..=8192 (the OS
    /// reserves it; only the pages a thread touches count in memory).
    pub stack_kib: usize,
    /// The longest the server may live: 1 s..=1 h. Past it the server stops by itself.
    pub lifetime: Duration,
}

impl Default for ServerOpts {
    fn default() -> Self {
        ServerOpts { workers: 2, stack_kib: 64, lifetime: Duration::from_secs(300) }
    }
}

impl ServerOpts {
    fn check(&self) -> io::Result<()> {
        let bad = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        if !(1..=64).contains(&self.workers) {
            return bad(format!("workers must be 1..=64, got {}", self.workers));
        }
        if !(16..=8192).contains(&self.stack_kib) {
            return bad(format!("stack_kib must be 16..=8192, got {}", self.stack_kib));
        }
        if self.lifetime < Duration::from_secs(1) || self.lifetime > Duration::from_secs(3600) {
            return bad(format!("lifetime must be 1 s..=1 h, got {:?}", self.lifetime));
        }
        Ok(())
    }
}

/// A service time and admission control for the tokio server (the `overload` and
/// `connection-pool` experiments): each request holds one of `slots` (a `Semaphore`,
/// FIFO) for `time` before its echo, like a handler that waits on a database with
/// `slots` connections; with `admit`, at most that many requests may be in the server
/// at once (in service or waiting for a slot) and any more is answered [`BUSY`] at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Service {
    /// How long a request holds its slot (a tokio timer: rounded up to whole ms).
    pub time: Duration,
    /// Requests in service at once; `None`: no limit (each request only waits `time`).
    pub slots: Option<usize>,
    /// Requests admitted at once; `None`: every request waits for a slot, however many.
    pub admit: Option<usize>,
}

/// The answer to a request the server refused under [`Service::admit`].
pub(crate) const BUSY: &[u8] = b"BUSY\n";

/// A [`Service`] at run time.
#[derive(Debug)]
struct ServiceState {
    time: Duration,
    slots: Option<tokio::sync::Semaphore>,
    admit: Option<tokio::sync::Semaphore>,
}

impl ServiceState {
    fn new(s: Service) -> ServiceState {
        ServiceState {
            time: s.time,
            slots: s.slots.map(tokio::sync::Semaphore::new),
            admit: s.admit.map(tokio::sync::Semaphore::new),
        }
    }

    /// Serves one request: false when it was refused (no admission permit free).
    async fn serve(&self) -> bool {
        let _admitted = match &self.admit {
            Some(a) => match a.try_acquire() {
                Ok(p) => Some(p),
                Err(_) => return false,
            },
            None => None,
        };
        let _slot = match &self.slots {
            // Never closed, so acquire only waits.
            Some(s) => s.acquire().await.ok(),
            None => None,
        };
        // A zero sleep would still wait for the timer's next tick.
        if !self.time.is_zero() {
            tokio::time::sleep(self.time).await;
        }
        true
    }
}

/// What a shutdown did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShutdownReport {
    /// Connections accepted over the server's life.
    pub accepted: usize,
    /// Connections open when the shutdown began.
    pub open_at_stop: usize,
    /// Of those, how many closed by themselves before the deadline (each answered the
    /// request it was in, then closed at its next idle point).
    pub drained: usize,
    /// Connections still open at the deadline and closed by force.
    pub aborted: usize,
    /// Connections the server could not serve (a thread the OS refused, an accept error).
    pub refused: usize,
    /// Most connections open at once.
    pub peak: usize,
    /// From the start of the shutdown until every thread of the server was joined.
    pub took: Duration,
    /// Connection threads that had not ended even after the abort (0 unless something is
    /// badly wrong); they were detached, not joined.
    pub detached: usize,
    /// The first error the server met (why it refused a connection, why it ended).
    pub first_error: Option<String>,
}

/// Counters both servers keep, read by the handle.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    abort: AtomicBool,
    accepted: AtomicUsize,
    live: AtomicUsize,
    peak: AtomicUsize,
    refused: AtomicUsize,
    drained: AtomicUsize,
    aborted: AtomicUsize,
    /// Connection threads alive (thread server).
    threads: AtomicUsize,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn error(&self, e: String) {
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(e);
        }
    }

    fn opened(&self) {
        self.accepted.fetch_add(1, Ordering::AcqRel);
        let now = self.live.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(now, Ordering::AcqRel);
    }

    /// A connection ended: counted as drained or aborted when a shutdown was under way.
    fn closed(&self) {
        if self.abort.load(Ordering::Acquire) {
            self.aborted.fetch_add(1, Ordering::AcqRel);
        } else if self.stop.load(Ordering::Acquire) {
            self.drained.fetch_add(1, Ordering::AcqRel);
        }
        self.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The raw descriptors of the thread server's open connections, so a shutdown can wake
/// threads blocked in `read`. A thread removes its entry (under the lock) before it closes
/// its socket, so a descriptor here is never one the OS has reused.
type Registry = Mutex<HashMap<u64, RawFd>>;

enum Inner {
    Threads { accept: JoinHandle<()>, registry: Arc<Registry>, conns: Arc<Mutex<Vec<JoinHandle<()>>>> },
    Tokio { thread: JoinHandle<Result<(), rt::RtError>>, stop: CancellationToken, deadline_ms: Arc<AtomicU64> },
}

/// A running server. [`ServerHandle::shutdown`] stops it; dropping it does the same with
/// a 1 s deadline.
pub struct ServerHandle {
    kind: ServerKind,
    addr: SocketAddr,
    workers: usize,
    shared: Arc<Shared>,
    inner: Option<Inner>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerHandle({}, {}, {} connections)", self.kind, self.addr, self.connections())
    }
}

/// Starts a server of `kind` on 127.0.0.1 (an ephemeral port: see [`ServerHandle::addr`]).
/// Bad options are an `InvalidInput` error naming what is allowed.
///
/// ```
/// use conclab::experiments::case_study::server::{ServerKind, ServerOpts, start_server};
/// use std::io::{BufRead, BufReader, Write};
/// let server = start_server(ServerKind::Threads, &ServerOpts::default()).unwrap();
/// let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
/// s.write_all(b"hello\n").unwrap();
/// let mut line = String::new();
/// BufReader::new(&s).read_line(&mut line).unwrap();
/// assert_eq!(line, "hello\n");
/// drop(s);
/// let report = server.shutdown(std::time::Duration::from_secs(1));
/// assert_eq!(report.accepted, 1);
/// ```
pub fn start_server(kind: ServerKind, opts: &ServerOpts) -> io::Result<ServerHandle> {
    opts.check()?;
    match kind {
        ServerKind::Threads => start_threads(opts),
        ServerKind::Tokio => start_tokio(opts, None),
    }
}

/// Starts the tokio server with a per-request [`Service`] (time, slots, admission).
pub(crate) fn start_tokio_service(opts: &ServerOpts, service: Service) -> io::Result<ServerHandle> {
    opts.check()?;
    let bad = |m: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, m.to_string()));
    if service.slots == Some(0) || service.admit == Some(0) {
        return bad("a service needs at least one slot and one admission");
    }
    if service.time > Duration::from_secs(10) {
        return bad("a service time of at most 10 s");
    }
    start_tokio(opts, Some(service))
}

impl ServerHandle {
    /// The address it listens on (127.0.0.1, an ephemeral port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Which server this is.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// Threads the server runs on now: the accept thread and one per live connection
    /// (threads); the runtime's workers, the thread that drives it and the one that
    /// started it (tokio).
    pub fn threads(&self) -> usize {
        match self.kind {
            ServerKind::Threads => 1 + self.shared.threads.load(Ordering::Acquire),
            ServerKind::Tokio => self.workers + 2,
        }
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.shared.live.load(Ordering::Acquire)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::Acquire)
    }

    /// Stops accepting, lets open connections finish their request and close (drain),
    /// closes what is left at `deadline` (abort), and joins every thread. Bounded: at
    /// most about `deadline` + 2 s.
    pub fn shutdown(mut self, deadline: Duration) -> ShutdownReport {
        self.stop(deadline)
    }

    fn stop(&mut self, deadline: Duration) -> ShutdownReport {
        let t0 = Instant::now();
        let open_at_stop = self.connections();
        let mut detached = 0;
        match self.inner.take() {
            Some(Inner::Threads { accept, registry, conns }) => {
                self.shared.stop.store(true, Ordering::Release);
                // The accept loop looks at the flag every millisecond; it closes the listener.
                if accept.join().is_err() {
                    self.shared.error("the accept thread panicked".into());
                }
                wake(&registry, libc::SHUT_RD);
                if !wait_until(deadline, || self.connections() == 0) {
                    self.shared.abort.store(true, Ordering::Release);
                    wake(&registry, libc::SHUT_RDWR);
                    wait_until(ABORT_WAIT, || self.connections() == 0);
                }
                let handles = std::mem::take(&mut *conns.lock().unwrap_or_else(|p| p.into_inner()));
                for h in handles {
                    // A thread that has counted itself closed is about to return.
                    if self.connections() == 0 || h.is_finished() || wait_until(ABORT_WAIT, || h.is_finished()) {
                        if h.join().is_err() {
                            self.shared.error("a connection thread panicked".into());
                        }
                    } else {
                        detached += 1;
                    }
                }
            }
            Some(Inner::Tokio { thread, stop, deadline_ms }) => {
                deadline_ms.store(deadline.as_millis() as u64, Ordering::Release);
                self.shared.stop.store(true, Ordering::Release);
                stop.cancel();
                // The server's body ends within the deadline + ABORT_WAIT; `rt::run` then
                // shuts the runtime down and joins its threads, and is bounded itself.
                match thread.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => self.shared.error(format!("the tokio server: {e}")),
                    Err(_) => self.shared.error("the tokio server's thread panicked".into()),
                }
            }
            None => {}
        }
        let s = &self.shared;
        ShutdownReport {
            accepted: s.accepted.load(Ordering::Acquire),
            open_at_stop,
            drained: s.drained.load(Ordering::Acquire),
            aborted: s.aborted.load(Ordering::Acquire),
            refused: s.refused.load(Ordering::Acquire),
            peak: s.peak.load(Ordering::Acquire),
            took: t0.elapsed(),
            detached,
            first_error: s.first_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if self.inner.is_some() {
            self.stop(Duration::from_secs(1));
        }
    }
}

/// Polls `done` every millisecond for at most `limit`; whether it became true.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Shuts every registered connection down in direction `how`: a thread blocked in `read`
/// returns at once (end of file), one blocked in `write` fails (after `SHUT_RDWR`).
fn wake(registry: &Registry, how: libc::c_int) {
    let reg = registry.lock().unwrap_or_else(|p| p.into_inner());
    for fd in reg.values() {
        // SAFETY: the descriptor is open: its thread removes it from the registry, under
        // this lock, before closing it. shutdown(2) does not close or free it.
        unsafe { libc::shutdown(*fd, how) };
    }
}

/// A listening socket on 127.0.0.1 with a long accept queue.
fn listen_std() -> io::Result<TcpListener> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    // std listens with a short queue; listen(2) again on a listening socket only changes it.
    // SAFETY: a plain syscall on a descriptor we own.
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(listener)
}

fn start_threads(opts: &ServerOpts) -> io::Result<ServerHandle> {
    let listener = listen_std()?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::default());
    let registry: Arc<Registry> = Arc::new(Mutex::new(HashMap::new()));
    let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
    let (sh, reg, cs) = (Arc::clone(&shared), Arc::clone(&registry), Arc::clone(&conns));
    let stack = opts.stack_kib * 1024;
    let lifetime = opts.lifetime;
    let accept = std::thread::Builder::new()
        .name("cl-accept".into())
        .spawn(move || accept_loop(listener, sh, reg, cs, stack, lifetime))?;
    Ok(ServerHandle {
        kind: ServerKind::Threads,
        addr,
        workers: 0,
        shared,
        inner: Some(Inner::Threads { accept, registry, conns }),
    })
}

fn accept_loop(
    listener: TcpListener,
    sh: Arc<Shared>,
    reg: Arc<Registry>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    stack: usize,
    lifetime: Duration,
) {
    let born = Instant::now();
    let mut next_id = 0u64;
    while !sh.stop.load(Ordering::Acquire) {
        if born.elapsed() > lifetime {
            // Past its lifetime the server stops by itself; its threads see the flags
            // within THREAD_TICK.
            sh.error(format!("the server stopped itself after its lifetime of {} s", lifetime.as_secs()));
            sh.stop.store(true, Ordering::Release);
            sh.abort.store(true, Ordering::Release);
            break;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                next_id += 1;
                sh.opened();
                sh.threads.fetch_add(1, Ordering::AcqRel);
                let (s2, r2, id) = (Arc::clone(&sh), Arc::clone(&reg), next_id);
                let spawned = std::thread::Builder::new().name("cl-conn".into()).stack_size(stack).spawn(move || {
                    serve_blocking(stream, id, &s2, &r2);
                    s2.closed();
                    s2.threads.fetch_sub(1, Ordering::AcqRel);
                });
                match spawned {
                    Ok(h) => {
                        let mut v = conns.lock().unwrap_or_else(|p| p.into_inner());
                        v.push(h);
                        // Join finished threads now and then, so the list stays the size of
                        // the live connections.
                        if v.len().is_power_of_two() && v.len() >= 64 {
                            let (done, live): (Vec<_>, Vec<_>) = v.drain(..).partition(|h| h.is_finished());
                            *v = live;
                            drop(v);
                            for h in done {
                                let _ = h.join();
                            }
                        }
                    }
                    Err(e) => {
                        // The stream was moved into the closure the OS refused, and is closed.
                        sh.threads.fetch_sub(1, Ordering::AcqRel);
                        sh.live.fetch_sub(1, Ordering::AcqRel);
                        sh.refused.fetch_add(1, Ordering::AcqRel);
                        let live = sh.live.load(Ordering::Acquire);
                        sh.error(format!("the OS refused connection thread {} (with {live} alive): {e}", live + 1));
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => {
                // Out of descriptors, say: the pending client waits and times out.
                sh.refused.fetch_add(1, Ordering::AcqRel);
                sh.error(format!("accept failed: {e}"));
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    // Dropping the listener here closes it: new connects are refused from now on.
}

/// One connection, on its own thread: echo lines until the client closes, the server
/// stops (between requests) or aborts.
fn serve_blocking(stream: TcpStream, id: u64, sh: &Shared, reg: &Registry) {
    let ok = stream.set_nonblocking(false).is_ok()
        && stream.set_nodelay(true).is_ok()
        && stream.set_read_timeout(Some(THREAD_TICK)).is_ok()
        && stream.set_write_timeout(Some(THREAD_TICK)).is_ok();
    if ok {
        reg.lock().unwrap_or_else(|p| p.into_inner()).insert(id, stream.as_raw_fd());
        echo_lines(&stream, sh);
    }
    // Out of the registry before the socket closes (see `Registry`).
    reg.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    drop(stream);
}

fn too_long() -> Vec<u8> {
    format!("ERR line longer than {MAX_LINE} bytes\n").into_bytes()
}

fn echo_lines(stream: &TcpStream, sh: &Shared) {
    let mut reader = BufReader::with_capacity(MAX_LINE, stream);
    let mut writer = stream;
    let mut line = Vec::with_capacity(64);
    loop {
        // Stop only between requests: a request already read is answered first.
        if sh.abort.load(Ordering::Acquire) || (sh.stop.load(Ordering::Acquire) && line.is_empty()) {
            return;
        }
        let room = (MAX_LINE - line.len()) as u64;
        match (&mut reader).take(room).read_until(b'\n', &mut line) {
            Ok(0) if room > 0 => return,
            Ok(_) if line.last() == Some(&b'\n') => {
                if writer.write_all(&line).is_err() {
                    return;
                }
                line.clear();
            }
            Ok(_) if line.len() >= MAX_LINE => {
                let _ = writer.write_all(&too_long());
                return;
            }
            // Part of a line: read on.
            Ok(_) => {}
            // The read timeout: look at the flags and wait on (the partial line is kept).
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn start_tokio(opts: &ServerOpts, service: Option<Service>) -> io::Result<ServerHandle> {
    let shared = Arc::new(Shared::default());
    let stop = CancellationToken::new();
    let deadline_ms = Arc::new(AtomicU64::new(1000));
    let (addr_tx, addr_rx) = std::sync::mpsc::sync_channel::<io::Result<SocketAddr>>(1);
    let (sh, st, dl) = (Arc::clone(&shared), stop.clone(), Arc::clone(&deadline_ms));
    // Its own runtime: the process's thread count changes while it runs beside the
    // clients, so only its own threads are checked.
    let server_rt =
        Rt::multi(opts.workers).timeout(opts.lifetime).grace(Duration::from_millis(500)).strict_threads(false);
    let thread = std::thread::Builder::new()
        .name("cl-tokio-srv".into())
        .spawn(move || rt::run(server_rt, move || serve_tokio(sh, st, dl, addr_tx, service)))?;
    let mut handle = ServerHandle {
        kind: ServerKind::Tokio,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        workers: opts.workers,
        shared,
        inner: Some(Inner::Tokio { thread, stop, deadline_ms }),
    };
    // From here on, dropping `handle` stops and joins the server, also on the error paths.
    match addr_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(addr)) => handle.addr = addr,
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(io::Error::other("the tokio server did not listen within 10 s")),
    }
    Ok(handle)
}

async fn serve_tokio(
    sh: Arc<Shared>,
    stop: CancellationToken,
    deadline_ms: Arc<AtomicU64>,
    addr_tx: std::sync::mpsc::SyncSender<io::Result<SocketAddr>>,
    service: Option<Service>,
) {
    let service = service.map(|s| Arc::new(ServiceState::new(s)));
    let bound = (|| {
        let s = tokio::net::TcpSocket::new_v4()?;
        s.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let l = s.listen(BACKLOG as u32)?;
        Ok::<_, io::Error>((l.local_addr()?, l))
    })();
    let listener = match bound {
        Ok((addr, l)) => {
            let _ = addr_tx.send(Ok(addr));
            l
        }
        Err(e) => {
            let _ = addr_tx.send(Err(e));
            return;
        }
    };
    let tracker = TaskTracker::new();
    let abort = CancellationToken::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok((socket, _)) => {
                    sh.opened();
                    let (sh, stop, abort) = (Arc::clone(&sh), stop.clone(), abort.clone());
                    let service = service.clone();
                    tracker.spawn(async move {
                        tokio::select! {
                            biased;
                            _ = abort.cancelled() => {}
                            _ = echo_lines_async(socket, &stop, service.as_deref()) => {}
                        }
                        sh.closed();
                    });
                }
                Err(e) => {
                    // Out of descriptors, say: the pending client waits and times out.
                    sh.refused.fetch_add(1, Ordering::AcqRel);
                    sh.error(format!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
    // Stop accepting: new connects are refused from now on.
    drop(listener);
    tracker.close();
    let deadline = Duration::from_millis(deadline_ms.load(Ordering::Acquire));
    if tokio::time::timeout(deadline, tracker.wait()).await.is_err() {
        sh.abort.store(true, Ordering::Release);
        abort.cancel();
        if tokio::time::timeout(ABORT_WAIT, tracker.wait()).await.is_err() {
            sh.error("connection tasks did not end after the abort".into());
        }
    }
}

/// One connection, as a task: echo lines until the client closes or the server stops
/// (between requests: a request already read is answered first).
async fn echo_lines_async(mut socket: tokio::net::TcpStream, stop: &CancellationToken, service: Option<&ServiceState>) {
    let _ = socket.set_nodelay(true);
    let (rd, mut wr) = socket.split();
    let mut reader = tokio::io::BufReader::with_capacity(MAX_LINE, rd);
    let mut line = Vec::with_capacity(64);
    loop {
        let room = (MAX_LINE - line.len()) as u64;
        let idle = line.is_empty();
        let mut limited = (&mut reader).take(room);
        let read = tokio::select! {
            biased;
            _ = stop.cancelled(), if idle => return,
            r = limited.read_until(b'\n', &mut line) => r,
        };
        match read {
            Ok(0) if room > 0 => return,
            Ok(_) if line.last() == Some(&b'\n') => {
                let served = match service {
                    Some(s) => s.serve().await,
                    None => true,
                };
                if wr.write_all(if served { &line } else { BUSY }).await.is_err() {
                    return;
                }
                line.clear();
            }
            Ok(_) if line.len() >= MAX_LINE => {
                let _ = wr.write_all(&too_long()).await;
                return;
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn talk(addr: SocketAddr, lines: &[&[u8]]) -> Vec<String> {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut r = BufReader::new(&s);
        let mut out = Vec::new();
        for l in lines {
            (&s).write_all(l).unwrap();
            let mut got = String::new();
            r.read_line(&mut got).unwrap();
            out.push(got);
        }
        out
    }

    #[test]
    fn both_servers_echo_refuse_long_lines_and_shut_down() {
        for kind in ServerKind::ALL.iter().copied() {
            let server = start_server(kind, &ServerOpts::default()).unwrap();
            assert!(server.addr().ip().is_loopback());
            let got = talk(server.addr(), &[b"a\n", b"bc\n"]);
            assert_eq!(got, vec!["a\n".to_string(), "bc\n".to_string()], "{kind}");
            let long = vec![b'x'; MAX_LINE + 10];
            let got = talk(server.addr(), &[&long]);
            assert!(got[0].starts_with("ERR line longer than 1024"), "{kind}: {got:?}");
            // An idle connection held open is drained by the shutdown.
            let idle = TcpStream::connect(server.addr()).unwrap();
            assert!(
                wait_until(Duration::from_secs(5), || server.accepted() == 3 && server.connections() == 1),
                "{kind}"
            );
            let report = server.shutdown(Duration::from_secs(2));
            assert_eq!(report.accepted, 3, "{kind}: {report:?}");
            assert_eq!((report.drained, report.aborted, report.detached), (1, 0, 0), "{kind}: {report:?}");
            assert!(report.first_error.is_none(), "{kind}: {report:?}");
            // The server closed its side: the idle client reads end of file.
            idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            assert_eq!((&idle).read(&mut [0u8; 8]).unwrap(), 0, "{kind}");
        }
    }

    #[test]
    fn bad_options_are_refused_with_the_range() {
        let e = start_server(ServerKind::Tokio, &ServerOpts { workers: 0, ..Default::default() }).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("1..=64"), "{e}");
        let e = start_server(ServerKind::Threads, &ServerOpts { stack_kib: 1, ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("16..=8192"), "{e}");
    }
}
