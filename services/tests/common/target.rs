//! A website to check: a local HTTP server whose answers the test controls.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use poem::http::StatusCode;
use poem::listener::TcpAcceptor;
use poem::web::{Data, Path};
use poem::{get, handler, EndpointExt, Response, Route, Server};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the target answers on `/status`: the current status code, changed by
/// the test; `/slow/<ms>` sleeps first; `/loop` redirects to itself.
pub struct Target {
    pub base: String,
    pub status: Arc<AtomicU16>,
    pub hits: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct State {
    status: Arc<AtomicU16>,
    hits: Arc<AtomicU64>,
}

#[handler]
fn status(state: Data<&State>) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let code = StatusCode::from_u16(state.status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK);
    Response::builder().status(code).body("status")
}

#[handler]
async fn slow(state: Data<&State>, Path(ms): Path<u64>) -> &'static str {
    state.hits.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "slow"
}

#[handler]
fn redirect_loop() -> Response {
    Response::builder().status(StatusCode::FOUND).header("location", "/loop").finish()
}

impl Target {
    pub async fn start() -> Target {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind target");
        let port = listener.local_addr().expect("address").port();
        let state = State { status: Arc::new(AtomicU16::new(200)), hits: Arc::new(AtomicU64::new(0)) };
        let app = Route::new()
            .at("/status", get(status))
            .at("/slow/:ms", get(slow))
            .at("/loop", get(redirect_loop))
            .data(state.clone());
        let acceptor = TcpAcceptor::from_tokio(listener).expect("acceptor");
        let task = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(app).await;
        });
        Target { base: format!("http://127.0.0.1:{port}"), status: state.status, hits: state.hits, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn answer(&self, code: u16) {
        self.status.store(code, Ordering::SeqCst);
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}
