//! A TCP proxy in front of a shared server (the test PostgreSQL or
//! InfluxDB), so a test can make that server go away for its own client
//! without stopping it for everyone: [`Proxy::stop`] closes the listening
//! port and drops every open connection.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    pub port: u16,
    cancel: CancellationToken,
    accept: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to
    /// `target` (`host:port`).
    pub async fn start(target: &str) -> Proxy {
        Self::start_at(0, target).await
    }

    /// Forwards to `target` from loopback port `port` (0: a free one); a
    /// stopped proxy comes back on its port this way.
    pub async fn start_at(port: u16, target: &str) -> Proxy {
        let target: SocketAddr = tokio::net::lookup_host(target)
            .await
            .unwrap_or_else(|e| panic!("resolving {target}: {e}"))
            .next()
            .unwrap_or_else(|| panic!("{target} has no address"));
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let cancel = CancellationToken::new();
        let accept_cancel = cancel.clone();
        let accept = tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    _ = accept_cancel.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => client,
                        Err(_) => continue,
                    },
                };
                let cancel = accept_cancel.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else { return };
                    let mut client = client;
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Proxy { port, cancel, accept: tokio::sync::Mutex::new(Some(accept)) }
    }

    /// The server goes away: the port refuses connections and every open
    /// one is closed.
    pub async fn stop(&self) {
        self.cancel.cancel();
        if let Some(accept) = self.accept.lock().await.take() {
            let _ = accept.await;
        }
        // The connection tasks drop their sockets as soon as they run.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
