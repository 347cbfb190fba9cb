//! A loopback TCP proxy that counts what a client sends a store server — commands or
//! statements, and round trips — so every library is measured the same way, whatever its
//! client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::wire::{Counter, Protocol};

/// A running proxy; it stops when the runtime it was started on does.
#[derive(Clone, Debug)]
pub struct CountingProxy {
    /// The port clients connect to.
    pub port: u16,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    /// Commands (Redis) or statements (PostgreSQL).
    messages: AtomicU64,
    /// Round trips: client sends that follow a server reply (or open the connection).
    flights: AtomicU64,
}

impl CountingProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: String, protocol: Protocol) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let counts = Arc::new(Counts::default());
        let counted = Arc::clone(&counts);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let counts = Arc::clone(&counted);
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        let _ = forward(client, server, protocol, counts).await;
                    }
                });
            }
        });
        Ok(Self { port, counts })
    }

    /// Commands (Redis) or statements (PostgreSQL) so far.
    pub fn messages(&self) -> u64 {
        self.counts.messages.load(Ordering::SeqCst)
    }

    /// Round trips so far.
    pub fn round_trips(&self) -> u64 {
        self.counts.flights.load(Ordering::SeqCst)
    }
}

async fn forward(
    client: TcpStream,
    server: TcpStream,
    protocol: Protocol,
    counts: Arc<Counts>,
) -> std::io::Result<()> {
    use std::sync::atomic::AtomicBool;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Whether the client spoke last: its next send after a reply starts a round trip.
    let awaiting = Arc::new(AtomicBool::new(false));
    let awaiting_reply = Arc::clone(&awaiting);
    let upstream = async {
        let mut counter = Counter::new(protocol);
        let mut buffer = vec![0_u8; 64 * 1024];
        loop {
            let read = client_read.read(&mut buffer).await?;
            if read == 0 {
                return server_write.shutdown().await;
            }
            let messages = counter.feed(&buffer[..read]);
            counts.messages.fetch_add(messages, Ordering::SeqCst);
            if !awaiting.swap(true, Ordering::SeqCst) {
                counts.flights.fetch_add(1, Ordering::SeqCst);
            }
            server_write.write_all(&buffer[..read]).await?;
        }
    };
    let downstream = async {
        let mut buffer = vec![0_u8; 64 * 1024];
        loop {
            let read = server_read.read(&mut buffer).await?;
            if read == 0 {
                return client_write.shutdown().await;
            }
            awaiting_reply.store(false, Ordering::SeqCst);
            client_write.write_all(&buffer[..read]).await?;
        }
    };
    let (up, down) = tokio::join!(upstream, downstream);
    up.and(down)
}
