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
        Self::launch(None).await
    }

    /// A server with `config` (nats-server configuration: `tls { ... }`,
    /// `authorization { ... }`) besides its port and store; `url` is
    /// `tls://` when the configuration has a `tls` block.
    pub async fn start_with_config(config: &str) -> Nats {
        Self::launch(Some(config)).await
    }

    /// Starts a server on a free port, and on another if a server of
    /// someone else's took that port first (see [`Self::wait_ready`]).
    async fn launch(config: Option<&str>) -> Nats {
        for _ in 0..STARTS {
            if let Some(nats) = Self::start_on(free_port(), config).await {
                return nats;
            }
        }
        panic!("nats-server did not start on any of {STARTS} free ports");
    }

    /// A server on `port`, or `None` if it exited without answering
    /// there (another server has the port).
    pub async fn start_on(port: u16, config: Option<&str>) -> Option<Nats> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let child = spawn_nats(port, dir.path(), config);
        let scheme = if config.is_some_and(|c| c.contains("tls")) { "tls" } else { "nats" };
        let url = format!("{scheme}://127.0.0.1:{port}");
        let mut nats = Nats { child, url, port, dir, config: config.map(str::to_owned) };
        nats.wait_ready().await.then_some(nats)
    }

    /// Kills the server and starts it again on the same port and store.
    pub async fn restart(&mut self) {
        self.stop();
        self.child = spawn_nats(self.port, self.dir.path(), self.config.as_deref());
        assert!(self.wait_ready().await, "nats-server did not start again on port {}", self.port);
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

    /// Waits until this server answers on its port: true when it does,
    /// false when it exited first (its port was taken). Another server
    /// answering on the port is not this one: each names itself
    /// ([`server_name`]) and says its name in the INFO it greets with.
    async fn wait_ready(&mut self) -> bool {
        let name = server_name(self.dir.path(), self.config.as_deref());
        // Up to 20 s: a node of a cluster starting beside busy tests may
        // take a while on a loaded machine.
        for _ in 0..800 {
            if self.child.try_wait().expect("the state of nats-server").is_some() {
                return false;
            }
            if greeting(self.port).is_some_and(|info| info.contains(&format!("\"server_name\":\"{name}\""))) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nats-server did not start on port {}", self.port);
    }
}

/// Tries to start a server this many times, each on a new free port.
const STARTS: usize = 5;

/// The name a test's nats-server goes by: the configuration's
/// `server_name`, else one made from its store's directory (unique, and
/// the same after a restart).
fn server_name(store: &std::path::Path, config: Option<&str>) -> String {
    let configured = config.and_then(|c| {
        c.lines()
            .find_map(|line| line.trim().strip_prefix("server_name:").map(|n| n.trim().trim_matches('"').to_owned()))
    });
    configured.unwrap_or_else(|| {
        let dir = store.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        format!("test{}", dir.trim_start_matches('.'))
    })
}

/// The first line a server on `port` sends (NATS: its INFO), if one
/// answers within a second.
fn greeting(port: u16) -> Option<String> {
    use std::io::BufRead;
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line).ok()?;
    Some(line)
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
    if !config.is_some_and(|c| c.contains("server_name:")) {
        command.args(["--name", &server_name(store, None)]);
    }
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
        for _ in 0..STARTS {
            let port = free_port();
            if let Some(redis) = Self::spawn(port, &["--port", &port.to_string()]).await {
                return redis;
            }
        }
        panic!("redis-server did not start on any of {STARTS} free ports");
    }

    /// A Redis speaking only TLS, with a certificate of the test's CA, and
    /// wanting `password`; `url` is `rediss://:<password>@127.0.0.1:<port>`.
    pub async fn start_tls(cert: &std::path::Path, key: &std::path::Path, password: &str) -> Redis {
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        for _ in 0..STARTS {
            let port = free_port();
            let tls_port = port.to_string();
            let args = ["--port", "0", "--tls-port", &tls_port, "--tls-cert-file", &cert, "--tls-key-file", &key];
            let args = [&args[..], &["--tls-auth-clients", "no", "--requirepass", password]].concat();
            if let Some(mut redis) = Self::spawn(port, &args).await {
                redis.url = format!("rediss://:{password}@127.0.0.1:{port}");
                return redis;
            }
        }
        panic!("redis-server did not start on any of {STARTS} free ports");
    }

    /// Kills the server and starts an empty one on the same port.
    pub async fn restart_empty(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let restarted = Self::spawn(self.port, &["--port", &self.port.to_string()]).await;
        *self = restarted.unwrap_or_else(|| panic!("redis-server did not start again on port {}", self.port));
    }

    /// Starts redis-server with `args`, waiting until it listens on `port`;
    /// `None` if it exited first (its port was taken). A server of
    /// someone else's answering on the port is not taken for this one: a
    /// Redis says which process it is (`process_id` in `INFO server`),
    /// and a TLS one is given time to fail to bind.
    async fn spawn(port: u16, args: &[&str]) -> Option<Redis> {
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
        let mut redis = Redis { child, url: format!("redis://127.0.0.1:{port}"), port };
        let tls = args.contains(&"--tls-port");
        let ours = format!("process_id:{}\r\n", redis.child.id());
        for _ in 0..200 {
            if redis.child.try_wait().expect("the state of redis-server").is_some() {
                return None;
            }
            if tls {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return redis.child.try_wait().expect("the state of redis-server").is_none().then_some(redis);
                }
            } else if redis_info(port).is_some_and(|info| info.contains(&ours)) {
                return Some(redis);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not start on port {port}");
    }
}

/// What a Redis without a password on `port` answers to `INFO server`,
/// if one answers within a second.
fn redis_info(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream.write_all(b"INFO server\r\n").ok()?;
    let mut answer = vec![0; 8192];
    let n = stream.read(&mut answer).ok()?;
    Some(String::from_utf8_lossy(&answer[..n]).into_owned())
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
