//! NATS and Redis on an untrusted network: a NATS that speaks only TLS
//! (with a certificate of a CA made for the test), verifies client
//! certificates and wants a user and password, and a Redis that speaks only
//! TLS and wants a password. The whole system runs through them; a client
//! without the CA, or with a wrong password, is refused at once with an
//! error naming the settings to fix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::smtp::Smtp;
use common::stack::{eventually, Stack};
use common::target::Target;
use common::{config, Db, Nats, Redis};
use poem::http::Method;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::json;
use services::bus::{Bus, BusError};
use services::config::{NatsCredentials, NatsSecurity, Secret};
use std::path::{Path, PathBuf};
use std::time::Duration;

const PASSWORD: &str = "correct horse battery staple";
/// Redis's, which goes in a URL.
const REDIS_PASSWORD: &str = "redis-test-password-0123";

/// A CA, a server certificate for 127.0.0.1/localhost and a client
/// certificate, all PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Pki {
    fn make(dir: &Path) -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "website monitor test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issue = |names: Vec<String>, name: &str| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(names).expect("params");
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.signed_by(&key, &ca, &ca_key).expect("certificate");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = issue(vec!["localhost".into(), "127.0.0.1".into()], "nats");
        let (client_cert, client_key) = issue(vec!["monitor".into()], "monitor");
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write pem");
            path
        };
        Pki {
            ca: write("ca.pem", &ca.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server-key.pem", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client-key.pem", &client_key),
        }
    }

    /// The server's configuration: TLS only, client certificates verified
    /// against the CA, one user.
    fn server_config(&self) -> String {
        format!(
            "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: true\n  timeout: 2\n}}\n\
             authorization {{\n  user: monitor\n  password: {PASSWORD:?}\n}}\n",
            self.server_cert, self.server_key, self.ca
        )
    }

    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("NATS_CA_FILE", self.ca.display().to_string()),
            ("NATS_CERT_FILE", self.client_cert.display().to_string()),
            ("NATS_KEY_FILE", self.client_key.display().to_string()),
            ("NATS_USER", "monitor".into()),
            ("NATS_PASSWORD", PASSWORD.into()),
        ]
    }

    fn security(&self, ca: bool, password: &str) -> NatsSecurity {
        NatsSecurity {
            ca_file: ca.then(|| self.ca.clone()),
            client_cert: Some((self.client_cert.clone(), self.client_key.clone())),
            credentials: NatsCredentials::UserPassword {
                user: "monitor".into(),
                password: Secret::from(password.to_owned()),
            },
        }
    }
}

async fn refusal(url: &str, security: &NatsSecurity) -> String {
    match tokio::time::timeout(Duration::from_secs(10), Bus::connect_with(url, security)).await {
        Ok(Err(BusError::Refused(reason))) => {
            eprintln!("refused: {reason}");
            reason
        }
        Ok(Err(other)) => panic!("refused, but not as a refusal: {other}"),
        Ok(Ok(_)) => panic!("connected although it should have been refused"),
        Err(_) => panic!("neither connected nor refused within 10 s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_website_is_checked_end_to_end_through_nats_and_redis_over_tls_with_passwords() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::make(dir.path());
    let nats = Nats::start_with_config(&pki.server_config()).await;
    assert!(nats.url.starts_with("tls://"), "{}", nats.url);
    let redis = Redis::start_tls(&pki.server_cert, &pki.server_key, REDIS_PASSWORD).await;
    let mut settings = pki.settings();
    settings.push(("REDIS_URL", redis.url.clone()));
    settings.push(("REDIS_CA_FILE", pki.ca.display().to_string()));
    let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let stack = Stack::start_on(nats, Smtp::stopped(), &extra).await;
    let target = Target::start().await;
    stack.start_pipeline();
    stack.start_detector();

    let id =
        stack.add_website(json!({ "url": target.url("/status"), "name": "over tls", "interval_seconds": 10 })).await;
    let entry = eventually(Duration::from_secs(20), "the website up in /monitor", || async {
        let entry = stack.monitor(&id).await;
        (entry["status"] == "up").then_some(entry)
    })
    .await;
    assert_eq!(entry["regions"][0]["status_code"], 200, "{entry}");
    assert!(target.hits() >= 1);
    let (status, _) = stack.call(Method::GET, "/health", None).await;
    assert!(status.is_success());
}

#[tokio::test]
async fn a_client_without_the_ca_or_with_a_wrong_password_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::make(dir.path());
    let nats = Nats::start_with_config(&pki.server_config()).await;

    let without_ca = refusal(&nats.url, &pki.security(false, PASSWORD)).await;
    assert!(without_ca.contains("TLS") && without_ca.contains("NATS_CA_FILE"), "{without_ca}");

    let wrong_password = refusal(&nats.url, &pki.security(true, "not the password")).await;
    assert!(wrong_password.contains("NATS_USER and NATS_PASSWORD"), "{wrong_password}");
    assert!(!wrong_password.contains("not the password"), "the password is never shown: {wrong_password}");

    // Plain NATS to a TLS-only server with the right password is refused
    // too: the credentials never travel in the clear.
    let plain = nats.url.replace("tls://", "nats://");
    let mut no_tls = pki.security(false, PASSWORD);
    no_tls.client_cert = None;
    let reason = refusal(&plain, &no_tls).await;
    assert!(reason.contains("TLS"), "{reason}");

    // The right CA, certificate and password connect.
    let bus = Bus::connect_with(&nats.url, &pki.security(true, PASSWORD)).await.expect("connects");
    bus.client.flush().await.expect("round trip");

    // A service started with a wrong password stops at once, saying why.
    let work = tempfile::tempdir().expect("tempdir");
    let mut env = pki.settings();
    env.retain(|(k, _)| *k != "NATS_PASSWORD");
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_detector"))
            .current_dir(work.path())
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("NATS_URL", &nats.url)
            .env("NATS_PASSWORD", "not the password")
            .env("RUST_LOG", "info")
            .output(),
    )
    .await
    .expect("the detector stops within 20 s")
    .expect("run the detector");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("NATS_USER and NATS_PASSWORD"), "{stderr}");
    assert!(!stderr.contains("not the password"), "{stderr}");
}

#[tokio::test]
async fn redis_without_the_ca_or_with_a_wrong_password_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::make(dir.path());
    let nats = Nats::start().await;
    let db = Db::fresh().await;
    let redis = Redis::start_tls(&pki.server_cert, &pki.server_key, REDIS_PASSWORD).await;
    let ca = pki.ca.display().to_string();
    let connect = |settings: Vec<(&'static str, String)>| {
        let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let config = config(&nats, &db, &extra);
        async move {
            let deps = services::Deps::connect(&config).await.expect("deps");
            let connection =
                tokio::time::timeout(Duration::from_secs(10), deps.redis.get_multiplexed_async_connection()).await;
            match connection.expect("an answer within 10 s") {
                Ok(mut connection) => {
                    redis::cmd("PING").query_async::<String>(&mut connection).await.map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            }
        }
    };

    let pong = connect(vec![("REDIS_URL", redis.url.clone()), ("REDIS_CA_FILE", ca.clone())]).await;
    assert_eq!(pong.as_deref(), Ok("PONG"));

    let without_ca = connect(vec![("REDIS_URL", redis.url.clone())]).await;
    assert!(without_ca.as_ref().is_err_and(|e| e.to_lowercase().contains("certificate")), "{without_ca:?}");

    let wrong = redis.url.replace(REDIS_PASSWORD, "not-the-password");
    let wrong_password = connect(vec![("REDIS_URL", wrong), ("REDIS_CA_FILE", ca)]).await;
    assert!(wrong_password.is_err(), "{wrong_password:?}");
    assert!(!format!("{wrong_password:?}").contains("not-the-password"), "{wrong_password:?}");
}

#[tokio::test]
async fn an_nkey_seed_file_logs_in_and_a_foreign_seed_is_refused_naming_nats_nkey() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::make(dir.path());
    let user = nkeys::KeyPair::new_user();
    let config = format!(
        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n}}\nauthorization {{\n  users: [ {{ nkey: {} }} ]\n}}\n",
        pki.server_cert,
        pki.server_key,
        user.public_key()
    );
    let nats = Nats::start_with_config(&config).await;
    let seed_file = |name: &str, pair: &nkeys::KeyPair| {
        let path = dir.path().join(name);
        std::fs::write(&path, pair.seed().expect("seed")).expect("write seed");
        path
    };
    let security = |seed: PathBuf| NatsSecurity {
        ca_file: Some(pki.ca.clone()),
        client_cert: None,
        credentials: NatsCredentials::NKey(seed),
    };

    let bus = Bus::connect_with(&nats.url, &security(seed_file("user.nk", &user))).await.expect("connects");
    bus.client.flush().await.expect("round trip");

    let stranger = seed_file("stranger.nk", &nkeys::KeyPair::new_user());
    let reason = refusal(&nats.url, &security(stranger)).await;
    assert!(reason.contains("NATS_NKEY"), "{reason}");

    let missing = refusal(&nats.url, &security(dir.path().join("missing.nk"))).await;
    assert!(missing.contains("NATS_NKEY") && missing.contains("missing.nk"), "{missing}");
}
