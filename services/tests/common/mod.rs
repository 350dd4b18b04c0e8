//! What the integration tests share: servers of their own per test (NATS
//! and Redis on free ports, killed on drop; an SMTP server in [`smtp`]), a
//! fresh Postgres database per test on the server `./dev test` starts, and
//! [`stack::Stack`], the one harness: the whole system in the test process.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod proxy;
pub mod receiver;
pub mod smtp;
pub mod stack;
pub mod target;
pub mod tls;

use services::bus::Bus;
use services::Config;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Nats {
    child: Child,
    pub url: String,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Configuration beyond port and store (`start_with_config`).
    config: Option<String>,
}

impl Nats {
    pub async fn start() -> Nats {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let child = spawn_nats(port, dir.path(), None);
        let nats = Nats { child, url: format!("nats://127.0.0.1:{port}"), port, dir, config: None };
        nats.wait_ready().await;
        nats
    }

    /// A server with `config` (nats-server configuration: `tls { ... }`,
    /// `authorization { ... }`) besides its port and store; `url` is
    /// `tls://` when the configuration has a `tls` block.
    pub async fn start_with_config(config: &str) -> Nats {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let child = spawn_nats(port, dir.path(), Some(config));
        let scheme = if config.contains("tls") { "tls" } else { "nats" };
        let url = format!("{scheme}://127.0.0.1:{port}");
        let nats = Nats { child, url, port, dir, config: Some(config.to_owned()) };
        nats.wait_ready().await;
        nats
    }

    /// Kills the server and starts it again on the same port and store.
    pub async fn restart(&mut self) {
        self.stop();
        self.child = spawn_nats(self.port, self.dir.path(), self.config.as_deref());
        self.wait_ready().await;
    }

    /// Kills the server (start it again with `restart`).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Freezes the server (SIGSTOP): its connections stay open and say
    /// nothing, as when the network cuts it off. `resume` undoes it.
    pub fn pause(&self) {
        signal(&self.child, "-STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        signal(&self.child, "-CONT");
    }

    async fn wait_ready(&self) {
        // Up to 20 s: a node of a cluster starting beside busy tests may
        // take a while on a loaded machine.
        for _ in 0..800 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nats-server did not start on port {}", self.port);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `signal` (`-STOP`, `-CONT`) to `child`.
fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill").args([signal, &child.id().to_string()]).status().expect("run kill");
    assert!(status.success(), "kill {signal} {} failed", child.id());
}

fn spawn_nats(port: u16, store: &std::path::Path, config: Option<&str>) -> Child {
    let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
    let mut command = Command::new(&bin);
    command.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"]).arg(store);
    if let Some(config) = config {
        // The command line's address, port and store win over the file's.
        let file = store.join("server.conf");
        std::fs::write(&file, config).expect("write the nats-server configuration");
        command.arg("-c").arg(file);
    }
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {bin}: {e}. Run the tests with `./dev test`, which installs nats-server and sets NATS_SERVER_BIN")
        })
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// A Redis server of its own (started per test on a free port, in memory
/// only, killed on drop).
pub struct Redis {
    child: Child,
    pub url: String,
    pub port: u16,
}

impl Redis {
    pub async fn start() -> Redis {
        let port = free_port();
        Self::spawn(port, &["--port", &port.to_string()]).await
    }

    /// A Redis speaking only TLS, with a certificate of the test's CA, and
    /// wanting `password`; `url` is `rediss://:<password>@127.0.0.1:<port>`.
    pub async fn start_tls(cert: &std::path::Path, key: &std::path::Path, password: &str) -> Redis {
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let port = free_port();
        let tls_port = port.to_string();
        let args = ["--port", "0", "--tls-port", &tls_port, "--tls-cert-file", &cert, "--tls-key-file", &key];
        let args = [&args[..], &["--tls-auth-clients", "no", "--requirepass", password]].concat();
        let mut redis = Self::spawn(port, &args).await;
        redis.url = format!("rediss://:{password}@127.0.0.1:{port}");
        redis
    }

    /// Kills the server and starts an empty one on the same port.
    pub async fn restart_empty(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let restarted = Self::spawn(self.port, &["--port", &self.port.to_string()]).await;
        *self = restarted;
    }

    /// Starts redis-server with `args`, waiting until `port` answers.
    async fn spawn(port: u16, args: &[&str]) -> Redis {
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&bin)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin}: {e}. Run the tests with `./dev test`, which installs redis-server")
            });
        let redis = Redis { child, url: format!("redis://127.0.0.1:{port}"), port };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return redis;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not start on port {port}");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test InfluxDB (started by `./dev test`) and a database name of the
/// test's own.
pub fn influx_settings() -> (String, String) {
    let url = std::env::var("TEST_INFLUXDB_URL").unwrap_or_else(|_| {
        panic!("TEST_INFLUXDB_URL is not set. Run the tests with `./dev test`, which starts InfluxDB and sets it")
    });
    (url, format!("test_{}", uuid::Uuid::new_v4().simple()))
}

/// A database of its own on the test PostgreSQL, migrated.
pub struct Db {
    pub url: String,
    pub pool: PgPool,
}

impl Db {
    pub async fn fresh() -> Db {
        let admin_url = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
            panic!("TEST_DATABASE_URL is not set. Run the tests with `./dev test`, which starts PostgreSQL and sets it")
        });
        let admin = PgPoolOptions::new().max_connections(1).connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("cannot reach the test PostgreSQL at {admin_url}: {e}. Start it with `./dev test`")
        });
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("create database {name}")).execute(&admin).await.expect("create database");
        admin.close().await;
        let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        let url = url.to_string();
        let pool = PgPoolOptions::new().max_connections(10).connect(&url).await.expect("connect test database");
        projections::postgres::migrate(&pool).await.expect("migrate");
        Db { url, pool }
    }
}

pub fn config(nats: &Nats, db: &Db, extra: &[(&str, &str)]) -> Config {
    let mut map: HashMap<String, String> = HashMap::new();
    map.insert("NATS_URL".into(), nats.url.clone());
    map.insert("DATABASE_URL".into(), db.url.clone());
    if let Ok(url) = std::env::var("TEST_INFLUXDB_URL") {
        map.insert("INFLUXDB_URL".into(), url);
    }
    map.insert("INFLUXDB_BUCKET".into(), format!("test_{}", uuid::Uuid::new_v4().simple()));
    map.insert("ALLOW_PRIVATE_TARGETS".into(), "true".into());
    for (k, v) in extra {
        map.insert(k.to_string(), v.to_string());
    }
    Config::from_lookup(|name| map.get(name).cloned()).expect("test configuration")
}

pub async fn last_sequence(bus: &Bus) -> u64 {
    bus.last_sequence("MONITOR").await.expect("MONITOR's last sequence")
}

/// Every projected table as JSON, in a stable order, for comparisons.
pub async fn snapshot(pool: &PgPool) -> serde_json::Value {
    let mut tables = serde_json::Map::new();
    for (table, order) in [
        ("regions", "name"),
        ("websites", "id"),
        ("website_regions", "website_id, region"),
        ("incidents", "website_id, region, started_at"),
        ("tokens", "id"),
        ("channels", "id"),
        ("projection_offsets", "name"),
    ] {
        let columns = if table == "projection_offsets" { "name, stream_seq" } else { "*" };
        let rows: serde_json::Value = sqlx::query_scalar(&format!(
            "select coalesce(json_agg(t), '[]'::json) from (select {columns} from {table} order by {order}) t"
        ))
        .fetch_one(pool)
        .await
        .expect("snapshot");
        tables.insert(table.into(), rows);
    }
    serde_json::Value::Object(tables)
}
