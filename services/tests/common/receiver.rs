//! A stand-in for webhook endpoints and chat services: a local HTTP server
//! that records every POST (path, headers, body) and answers by the first
//! path segment: `/ok/...` 200, `/fail/...` 500, `/gone/...` 410,
//! `/hang/...` never (until the test ends).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use poem::http::{HeaderMap, StatusCode};
use poem::listener::TcpAcceptor;
use poem::web::Data;
use poem::{handler, Body, EndpointExt, Request, Response, Route, Server};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

pub struct Receiver {
    pub base: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

#[handler]
async fn receive(request: &Request, body: Body, log: Data<&Arc<Mutex<Vec<Received>>>>) -> Response {
    let path = request.uri().path().to_owned();
    let body = body.into_string().await.unwrap_or_default();
    log.lock().unwrap().push(Received {
        method: request.method().to_string(),
        path: path.clone(),
        headers: request.headers().clone(),
        body,
        at: Instant::now(),
    });
    let status = match path.split('/').nth(1).unwrap_or_default() {
        "fail" => StatusCode::INTERNAL_SERVER_ERROR,
        "gone" => StatusCode::GONE,
        "hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK
        }
        _ => StatusCode::OK,
    };
    Response::builder().status(status).body("{\"ok\":true}")
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let port = listener.local_addr().expect("address").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let app = Route::new().at("/*path", receive).data(received.clone());
        let acceptor = TcpAcceptor::from_tokio(listener).expect("acceptor");
        let task = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(app).await;
        });
        Receiver { base: format!("http://127.0.0.1:{port}"), received, task }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.base.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Everything received on `path` so far.
    pub fn at(&self, path: &str) -> Vec<Received> {
        self.received.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
