//! A TCP proxy a test puts between pgferry and a server, to break the network in
//! the ways a real one breaks.
//!
//! [`Proxy::blackhole`] is a silent partition (a NAT or load balancer that
//! dropped its state, a cable pulled between two switches): nothing is
//! forwarded in either direction, but every socket stays open, so neither end
//! sees a reset or an end of stream; new connections are accepted and hang.
//! Only deadlines in the application notice it: the proxy's kernel answers TCP
//! keepalive probes, as a middlebox that keeps the connection would.
//! [`Proxy::heal`] forwards again what was held; [`Proxy::heal_new_connections`]
//! forwards only connections opened from then on and keeps holding the older
//! ones (a flow whose state a middlebox still lacks); [`Proxy::drop_connections`]
//! closes every connection at once, and [`Proxy::delay`] holds each chunk for a
//! while before forwarding it.
//!
//! The proxy runs on its own Tokio runtime, so a synchronous test drives it; it
//! listens on 127.0.0.1 on a free port and stops when dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct State {
    /// Nothing is forwarded; sockets stay open.
    blackholed: bool,
    /// How long each chunk waits before it is forwarded.
    delay: Duration,
    /// Raised to close every open connection.
    generation: u64,
    /// Connections numbered below this are held even when not blackholed.
    held_below: u64,
}

/// A running proxy to one upstream port on 127.0.0.1.
pub struct Proxy {
    port: u16,
    /// Connections accepted so far; each is numbered by this count at its accept.
    opened: Arc<AtomicU64>,
    state: watch::Sender<State>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Proxy {
    /// Starts forwarding from a free port to `127.0.0.1:upstream_port`.
    pub fn start(upstream_port: u16) -> Proxy {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("proxy runtime");
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).expect("proxy binds a free port");
        let port = listener.local_addr().expect("proxy address").port();
        let (state, watching) = watch::channel(State::default());
        let upstream = SocketAddr::from(([127, 0, 0, 1], upstream_port));
        let opened = Arc::new(AtomicU64::new(0));
        runtime.spawn(accept(listener, upstream, watching, Arc::clone(&opened)));
        Proxy { port, opened, state, runtime: Some(runtime) }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `url` (a test cluster's URL) with its port replaced by the proxy's.
    pub fn url(&self, url: &str, upstream_port: u16) -> String {
        url.replacen(&format!(":{upstream_port}/"), &format!(":{}/", self.port), 1)
    }

    /// Stops forwarding in both directions and keeps every socket open: a
    /// half-open connection for both ends.
    pub fn blackhole(&self) {
        self.state.send_modify(|s| s.blackholed = true);
    }

    /// Forwards again, without delay; what was held goes through.
    pub fn heal(&self) {
        self.state.send_modify(|s| {
            s.blackholed = false;
            s.delay = Duration::ZERO;
            s.held_below = 0;
        });
    }

    /// Forwards connections opened from now on; the open ones stay held
    /// until [`Proxy::heal`].
    pub fn heal_new_connections(&self) {
        let opened = self.opened.load(Ordering::SeqCst);
        self.state.send_modify(|s| {
            s.blackholed = false;
            s.held_below = opened;
        });
    }

    /// Holds each chunk for `delay` before forwarding it.
    pub fn delay(&self, delay: Duration) {
        self.state.send_modify(|s| s.delay = delay);
    }

    /// Closes every open connection (both sockets); new ones are accepted.
    pub fn drop_connections(&self) {
        self.state.send_modify(|s| s.generation += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, state: watch::Receiver<State>, opened: Arc<AtomicU64>) {
    while let Ok((client, _)) = listener.accept().await {
        let id = opened.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(connection(client, id, upstream, state.clone()));
    }
}

/// One client's connection, until either side closes it or the proxy drops it.
async fn connection(client: TcpStream, id: u64, upstream: SocketAddr, mut state: watch::Receiver<State>) {
    let generation = state.borrow().generation;
    let dropped = {
        let mut state = state.clone();
        async move {
            let _ = state.wait_for(|s| s.generation != generation).await;
        }
    };
    let forward = async {
        forwarding(id, &mut state).await;
        let Ok(server) = TcpStream::connect(upstream).await else { return };
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        tokio::join!(
            pump(id, client_read, server_write, state.clone()),
            pump(id, server_read, client_write, state.clone())
        );
    };
    tokio::select! {
        () = forward => {}
        () = dropped => {}
    }
}

/// Waits until the proxy forwards connection `id`.
async fn forwarding(id: u64, state: &mut watch::Receiver<State>) {
    let _ = state.wait_for(|s| !s.blackholed && id >= s.held_below).await;
}

/// Copies one direction; a chunk read while blackholed is held until healed.
async fn pump(id: u64, mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut state: watch::Receiver<State>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        forwarding(id, &mut state).await;
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        forwarding(id, &mut state).await;
        let delay = state.borrow().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream as StdStream;
    use std::time::Instant;

    use super::*;

    /// An echo server on a free port.
    fn echo() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buffer) {
                        if n == 0 || stream.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        port
    }

    fn round_trip(stream: &mut StdStream, text: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(text)?;
        let mut answer = vec![0u8; text.len()];
        stream.read_exact(&mut answer)?;
        Ok(answer)
    }

    #[test]
    fn forwards_holds_while_blackholed_delivers_after_healing_and_drops() {
        let proxy = Proxy::start(echo());
        let mut stream = StdStream::connect(("127.0.0.1", proxy.port())).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        assert_eq!(round_trip(&mut stream, b"one").unwrap(), b"one");

        proxy.blackhole();
        let held = round_trip(&mut stream, b"two").unwrap_err();
        assert!(matches!(held.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{held}");
        let mut fresh = StdStream::connect(("127.0.0.1", proxy.port())).unwrap();
        fresh.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        assert!(round_trip(&mut fresh, b"new").is_err(), "a new connection hangs too");

        proxy.heal_new_connections();
        let mut newer = StdStream::connect(("127.0.0.1", proxy.port())).unwrap();
        newer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(round_trip(&mut newer, b"newer").unwrap(), b"newer", "a connection opened after it is forwarded");
        assert!(round_trip(&mut fresh, b"!").is_err(), "one opened before it is still held");

        proxy.heal();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut late = [0u8; 3];
        stream.read_exact(&mut late).unwrap();
        assert_eq!(&late, b"two", "what was held is delivered after healing");

        proxy.delay(Duration::from_millis(300));
        let started = Instant::now();
        assert_eq!(round_trip(&mut stream, b"slow").unwrap(), b"slow");
        assert!(started.elapsed() >= Duration::from_millis(600), "each direction waited");

        proxy.drop_connections();
        let mut end = [0u8; 1];
        assert!(matches!(stream.read(&mut end), Ok(0) | Err(_)), "the connection was closed");
    }
}
