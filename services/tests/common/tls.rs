//! An HTTPS server with a self-signed certificate made for the test
//! (rcgen), expiring at a known time.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use poem::listener::{Acceptor, Listener, RustlsCertificate, RustlsConfig, TcpListener};
use poem::{handler, Route, Server};

pub struct TlsServer {
    pub base: String,
    pub not_after: chrono::DateTime<chrono::Utc>,
    task: tokio::task::JoinHandle<()>,
}

#[handler]
fn hello() -> &'static str {
    "hello over tls"
}

impl TlsServer {
    /// Serves `/` on 127.0.0.1 with a certificate for `localhost` that
    /// expires on 2031-01-01.
    pub async fn start() -> TlsServer {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.not_after = rcgen::date_time_ymd(2031, 1, 1);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("certificate");
        let config = RustlsConfig::new()
            .fallback(RustlsCertificate::new().cert(cert.pem().into_bytes()).key(key.serialize_pem().into_bytes()));
        let acceptor = TcpListener::bind("127.0.0.1:0").rustls(config).into_acceptor().await.expect("bind");
        let port = acceptor.local_addr().first().and_then(|a| a.as_socket_addr().map(|s| s.port())).expect("port");
        let task = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(Route::new().at("/", hello)).await;
        });
        let not_after = chrono::DateTime::parse_from_rfc3339("2031-01-01T00:00:00Z").expect("date").to_utc();
        TlsServer { base: format!("https://localhost:{port}"), not_after, task }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
