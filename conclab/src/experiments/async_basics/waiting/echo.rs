//! A TCP echo server on 127.0.0.1 that answers each request after a delay, and the two
//! kinds of client unit that talk to it (a blocking one for OS threads, an async one for
//! tokio tasks).
//!
//! Why the *server* waits and not the client: the client then really waits on its socket.
//! A thread blocks in `read()` and the kernel parks it; a task's read finds no data,
//! registers with the runtime's reactor (epoll) and its worker moves on to other tasks —
//! exactly the difference async is about. Had the client slept instead, this would be the
//! sleep experiment again with a socket beside it.
//!
//! The server runs on a runtime of its own (through [`crate::lab::rt::run`], on a thread
//! of its own) and is the same for both kinds of client, so its share of the memory and
//! CPU is the same in both measurements. [`EchoServer`] stops and joins it when dropped,
//! so it cannot outlive the experiment that started it, whatever path that takes.

use crate::lab::RunError;
use crate::lab::rt::{self, Rt, RtError};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Connections each listener should have to queue at most at once: units are spread
/// over enough listeners that a burst of connects never overflows an accept queue
/// (an overflow costs the client a 1 s SYN retransmission and would spoil the timing).
const PER_LISTENER: usize = 1000;
/// The accept queue each listener asks for (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: u32 = 4096;
/// File descriptors kept free for everything else the process does.
pub(crate) const FD_MARGIN: usize = 128;

/// What the server and the experiment share.
#[derive(Debug)]
pub(crate) struct EchoCtl {
    /// Requests read so far (reset by the experiment before each run).
    requests: AtomicUsize,
    /// While set, answers wait for [`EchoCtl::release`] instead of the delay.
    hold: AtomicBool,
    release: watch::Sender<bool>,
    delay: Duration,
    /// Connections the server could not serve (reset with `requests`).
    errors: AtomicUsize,
}

impl EchoCtl {
    /// Starts a run: counts from 0; with `hold`, answers wait until [`EchoCtl::release`].
    pub(crate) fn arm(&self, hold: bool) {
        self.requests.store(0, Ordering::Release);
        self.errors.store(0, Ordering::Release);
        self.release.send_replace(false);
        self.hold.store(hold, Ordering::Release);
    }

    /// Lets every held answer go.
    pub(crate) fn release(&self) {
        self.release.send_replace(true);
    }

    /// Requests the server has read since [`EchoCtl::arm`]: each of these clients is now
    /// waiting for its answer.
    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::Acquire)
    }

    pub(crate) fn errors(&self) -> usize {
        self.errors.load(Ordering::Acquire)
    }
}

/// A running echo server; dropping it stops it and joins its thread.
#[derive(Debug)]
pub(crate) struct EchoServer {
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) ctl: Arc<EchoCtl>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<Result<(), RtError>>>,
}

/// Listeners for up to `connections` at once.
pub(crate) fn listeners_for(connections: usize) -> usize {
    connections.div_ceil(PER_LISTENER).max(1)
}

impl EchoServer {
    /// Starts a server with `listeners` listening sockets on 127.0.0.1 (ephemeral ports)
    /// that answers each request `delay` after reading it. It runs at most `limit`.
    pub(crate) fn start(listeners: usize, delay: Duration, limit: Duration) -> Result<EchoServer, RunError> {
        let (release, _) = watch::channel(false);
        let ctl = Arc::new(EchoCtl {
            requests: AtomicUsize::new(0),
            hold: AtomicBool::new(false),
            release,
            delay,
            errors: AtomicUsize::new(0),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let (addr_tx, addr_rx) = std::sync::mpsc::sync_channel(1);
        let c = Arc::clone(&ctl);
        // The server's runtime is its own: the thread count of the whole process changes
        // while it runs beside the clients, so only its own threads are checked.
        let server_rt = Rt::current().timeout(limit).grace(Duration::from_millis(200)).strict_threads(false);
        let thread = std::thread::Builder::new()
            .name("conclab-echo".into())
            .spawn(move || rt::run(server_rt, move || serve(listeners, c, stop_rx, addr_tx)))
            .map_err(|e| RunError::new("starting the echo server", e))?;
        // From here on, dropping `server` stops and joins it, also on the error paths below.
        let mut server = EchoServer { addrs: Vec::new(), ctl, stop: Some(stop_tx), thread: Some(thread) };
        match addr_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(addrs)) => server.addrs = addrs,
            Ok(Err(e)) => return Err(RunError::new("starting the echo server", e)),
            Err(_) => return Err(RunError::new("starting the echo server", "it did not listen within 10 s")),
        }
        Ok(server)
    }

    /// The listener unit `i` connects to (units are spread over all of them).
    pub(crate) fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i % self.addrs.len()]
    }

    /// Stops the server and joins its thread; says whether it ended cleanly.
    pub(crate) fn stop(mut self) -> Result<(), RunError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), RunError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        self.ctl.release();
        match self.thread.take().map(|t| t.join()) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(RunError::new("the echo server", e)),
            Some(Err(_)) => Err(RunError::new("the echo server", "its thread panicked")),
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        // `rt::run` bounds how long the server's thread can take to end (its timeout and
        // grace), so this join is bounded too.
        let _ = self.shutdown();
    }
}

type Addrs = std::sync::mpsc::SyncSender<Result<Vec<SocketAddr>, String>>;

async fn serve(listeners: usize, ctl: Arc<EchoCtl>, mut stop: watch::Receiver<bool>, addrs: Addrs) {
    let mut bound = Vec::new();
    for _ in 0..listeners {
        let listener = (|| {
            let s = tokio::net::TcpSocket::new_v4()?;
            s.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            s.listen(BACKLOG)
        })();
        match listener.and_then(|l| Ok((l.local_addr()?, l))) {
            Ok(pair) => bound.push(pair),
            Err(e) => {
                let _ = addrs.send(Err(format!("could not listen on 127.0.0.1: {e}")));
                return;
            }
        }
    }
    let _ = addrs.send(Ok(bound.iter().map(|(a, _)| *a).collect()));
    for (_, listener) in bound {
        tokio::spawn(accept_loop(listener, Arc::clone(&ctl)));
    }
    // Serve until told to stop; the runtime's shutdown then drops every connection.
    let _ = stop.wait_for(|s| *s).await;
}

async fn accept_loop(listener: tokio::net::TcpListener, ctl: Arc<EchoCtl>) {
    loop {
        match listener.accept().await {
            Ok((socket, _)) => {
                tokio::spawn(answer(socket, Arc::clone(&ctl)));
            }
            Err(_) => {
                // Out of descriptors, say: count it and let the client time out.
                ctl.errors.fetch_add(1, Ordering::AcqRel);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

async fn answer(mut socket: tokio::net::TcpStream, ctl: Arc<EchoCtl>) {
    let mut request = [0u8; 8];
    if socket.read_exact(&mut request).await.is_err() {
        ctl.errors.fetch_add(1, Ordering::AcqRel);
        return;
    }
    let mut released = ctl.release.subscribe();
    ctl.requests.fetch_add(1, Ordering::AcqRel);
    if ctl.hold.load(Ordering::Acquire) {
        let _ = released.wait_for(|r| *r).await;
    } else {
        tokio::time::sleep(ctl.delay).await;
    }
    if socket.write_all(&request).await.is_err() {
        ctl.errors.fetch_add(1, Ordering::AcqRel);
    }
    // Dropping the socket closes it: the server closes first, so the TIME_WAIT state
    // stays on the server's side and no client port stays tied up between runs.
}

/// One blocking client unit: connect, send 8 bytes, wait for their echo, then for the
/// server to close. Every step has a `timeout`.
pub(crate) fn echo_blocking(addr: SocketAddr, id: u64, timeout: Duration) -> Result<(), String> {
    let step = |what: &str, e: std::io::Error| format!("{what} {addr}: {e}");
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| step("connecting to", e))?;
    s.set_read_timeout(Some(timeout)).map_err(|e| step("setting a timeout on", e))?;
    s.set_write_timeout(Some(timeout)).map_err(|e| step("setting a timeout on", e))?;
    let request = id.to_le_bytes();
    s.write_all(&request).map_err(|e| step("writing to", e))?;
    let mut reply = [0u8; 8];
    s.read_exact(&mut reply).map_err(|e| step("reading the echo from", e))?;
    if reply != request {
        return Err(format!("the echo of {request:?} came back as {reply:?}"));
    }
    let mut rest = [0u8; 1];
    match s.read(&mut rest).map_err(|e| step("waiting for the close of", e))? {
        0 => Ok(()),
        _ => Err("the server sent more than the echo".into()),
    }
}

/// The same unit as an async task: the waits park the task, not the thread.
pub(crate) async fn echo_async(addr: SocketAddr, id: u64, timeout: Duration) -> Result<(), String> {
    let unit = async {
        let step = |what: &str, e: std::io::Error| format!("{what} {addr}: {e}");
        let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| step("connecting to", e))?;
        let request = id.to_le_bytes();
        s.write_all(&request).await.map_err(|e| step("writing to", e))?;
        let mut reply = [0u8; 8];
        s.read_exact(&mut reply).await.map_err(|e| step("reading the echo from", e))?;
        if reply != request {
            return Err(format!("the echo of {request:?} came back as {reply:?}"));
        }
        let mut rest = [0u8; 1];
        match s.read(&mut rest).await.map_err(|e| step("waiting for the close of", e))? {
            0 => Ok(()),
            _ => Err("the server sent more than the echo".into()),
        }
    };
    tokio::time::timeout(timeout, unit)
        .await
        .unwrap_or_else(|_| Err(format!("no echo from {addr} within {} s", timeout.as_secs_f64())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::rt::{self, Rt};
    use std::time::Instant;

    #[test]
    fn the_server_echoes_after_its_delay_and_stops_when_dropped() {
        let server = EchoServer::start(2, Duration::from_millis(20), Duration::from_secs(30)).unwrap();
        let t = Instant::now();
        echo_blocking(server.addr(0), 7, Duration::from_secs(10)).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(20));
        let addr = server.addr(1);
        let r = rt::run(Rt::current(), move || echo_async(addr, 9, Duration::from_secs(10))).unwrap();
        assert_eq!(r, Ok(()));
        assert_eq!(server.ctl.requests(), 2);
        drop(server);
        // Its thread has been joined and its runtime shut down: nothing listens any more.
        assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn held_answers_wait_for_the_release() {
        let server = EchoServer::start(1, Duration::from_millis(1), Duration::from_secs(30)).unwrap();
        server.ctl.arm(true);
        let addr = server.addr(0);
        let client = std::thread::spawn(move || echo_blocking(addr, 1, Duration::from_secs(10)));
        let t = Instant::now();
        while server.ctl.requests() < 1 && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(30));
        assert!(!client.is_finished(), "held until released");
        server.ctl.release();
        assert_eq!(client.join().unwrap(), Ok(()));
        server.stop().unwrap();
    }

    #[test]
    fn a_failing_run_still_stops_the_server() {
        fn run() -> Result<(), RunError> {
            let _server = EchoServer::start(1, Duration::from_millis(1), Duration::from_secs(30))?;
            Err(RunError::new("a run", "failed half-way"))
        }
        assert!(run().is_err());
        assert_eq!(listeners_for(1), 1);
        assert_eq!(listeners_for(2500), 3);
    }
}
