//! Settings from the environment (and a `.env` file, loaded by the binaries).
//! Every setting has a default that works with `./dev up`; a malformed value
//! stops the service at start with one line naming the setting.

use events::RegionName;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// One server or several, comma-separated (`nats://`, or `tls://` for
    /// TLS from the first byte of the handshake on).
    pub nats_url: String,
    /// TLS and credentials for NATS (`NATS_CA_FILE`, `NATS_CERT_FILE`,
    /// `NATS_KEY_FILE`, `NATS_USER`/`NATS_PASSWORD`, `NATS_NKEY`,
    /// `NATS_CREDS`).
    pub nats: NatsSecurity,
    /// Servers of a cluster each stream is kept on (`NATS_REPLICAS`,
    /// default 1; 3 on a three-node cluster).
    pub nats_replicas: usize,
    pub database_url: String,
    /// `redis://` or `rediss://` (TLS); a password goes in the URL
    /// (`rediss://:password@host:6380`).
    pub redis_url: String,
    /// A CA certificate (PEM) to trust for `rediss://` (`REDIS_CA_FILE`;
    /// unset: the system's roots).
    pub redis_ca_file: Option<PathBuf>,
    /// Where this process serves `GET /metrics` without authentication
    /// (`METRICS_HOST`, default 127.0.0.1, and `METRICS_PORT`; unset: not
    /// served, the API still serves it behind its access rules).
    pub metrics: MetricsConfig,
    /// Postgres connections per process (`DATABASE_POOL_SIZE`).
    pub database_pool_size: u32,
    pub influxdb: InfluxConfig,
    /// How long CHECKS keeps results (InfluxDB keeps the long-term copy).
    pub checks_max_age: Duration,
    pub api: ApiConfig,
    pub projector: ProjectorConfig,
    pub cron: CronConfig,
    pub worker: WorkerConfig,
    /// Consecutive failures that confirm an outage, and successes that end
    /// it (`DETECTOR_DOWN_AFTER`, default 2; `DETECTOR_UP_AFTER`, default 1).
    pub detector: events::detection::Policy,
    pub notify: NotifyConfig,
    /// The key channel secrets are sealed with in events (`SECRET_KEY`, at
    /// least 16 characters); unset: a key made once and kept in Postgres.
    pub secret_key: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub host: String,
    pub port: u16,
    /// The region a fresh system starts with.
    pub default_region: RegionName,
    /// How long a command waits for the Postgres projection to show it.
    pub projection_wait: Duration,
    /// Whether websites on loopback/private addresses are accepted (the
    /// workers would refuse to check them otherwise).
    pub allow_private_targets: bool,
    /// An admin token's secret from the environment (`ADMIN_TOKEN`), for
    /// bootstrapping a fresh system; its actor is `bootstrap`.
    pub admin_token: Option<Secret>,
    /// The dashboard is served over HTTPS (`PUBLIC_URL` is https), so its
    /// session cookie is marked Secure.
    pub secure_cookies: bool,
    /// Where the dashboard is (`PUBLIC_URL`), for links in test messages.
    pub public_url: String,
    /// The detector's thresholds (`DETECTOR_DOWN_AFTER`/`DETECTOR_UP_AFTER`),
    /// for recomputing incidents from the checks (what-if uptime).
    pub detection: events::detection::Policy,
}

/// A secret setting: usable, never printed (`Debug` shows `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsSecurity {
    /// CA certificate(s) (PEM) the server's certificate must chain to
    /// (`NATS_CA_FILE`); setting it makes TLS required.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key (PEM), for servers that verify
    /// clients (`NATS_CERT_FILE` and `NATS_KEY_FILE`, both or neither).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub credentials: NatsCredentials,
}

impl NatsSecurity {
    /// Whether the connection must be TLS whatever the server offers.
    pub fn requires_tls(&self, url: &str) -> bool {
        self.ca_file.is_some() || self.client_cert.is_some() || url.split(',').any(|u| u.trim().starts_with("tls://"))
    }
}

/// How a service proves who it is to NATS: at most one way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NatsCredentials {
    #[default]
    None,
    /// `NATS_USER` and `NATS_PASSWORD`.
    UserPassword { user: String, password: Secret },
    /// An NKey seed file (`NATS_NKEY`).
    NKey(PathBuf),
    /// A `.creds` file, JWT and NKey seed (`NATS_CREDS`).
    Creds(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    pub host: String,
    pub port: Option<u16>,
}

impl MetricsConfig {
    /// `host:port` when metrics are served on a port of their own.
    pub fn address(&self) -> Option<String> {
        self.port.map(|port| format!("{}:{port}", self.host))
    }
}

#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// At most this many events go into one transaction or InfluxDB write
    /// (`PROJECTOR_BATCH`).
    pub batch: usize,
}

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub smtp: SmtpConfig,
    /// Who is told when a website has no `notify_emails`
    /// (`NOTIFY_DEFAULT_EMAIL`; unset: nobody).
    pub default_recipient: Option<events::EmailAddress>,
    /// Where emails link to (`PUBLIC_URL`, default the local API).
    pub public_url: String,
    /// Transitions older than this are recorded but not emailed, so a
    /// replay or a first start on old history does not mail the past.
    pub max_age: Duration,
    /// Telegram's Bot API (`TELEGRAM_API_URL`; a stand-in in tests).
    pub telegram_api: String,
    /// Whether webhooks may go to loopback/private addresses
    /// (`ALLOW_PRIVATE_TARGETS`, as for checks).
    pub allow_private_targets: bool,
}

#[derive(Debug, Clone)]
pub struct CronConfig {
    /// When Redis is reconciled against Postgres (`CRON_RECONCILE`, a cron
    /// expression with seconds; default midnight UTC).
    pub reconcile: cron::Schedule,
    /// A region's queue length at which scheduling pauses (back-pressure).
    pub max_queue: usize,
    /// Checks claimed per Redis round trip.
    pub batch: usize,
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The region this worker checks from (`REGION`); the all-in-one run
    /// starts one worker per known region instead.
    pub region: Option<RegionName>,
    /// Checks in flight at once.
    pub concurrency: usize,
    /// A job pending this long with a silent worker is taken over; longer
    /// than the longest check timeout (60 s), so a slow check in progress is
    /// not checked twice.
    pub reclaim_idle: Duration,
    /// Deliveries after which a job goes to the dead-letter stream.
    pub max_deliveries: usize,
    /// Whether loopback/private targets may be checked (local runs, tests).
    pub allow_private_targets: bool,
}

#[derive(Debug, Clone)]
pub struct InfluxConfig {
    pub url: String,
    pub token: Option<String>,
    /// Accepted for InfluxDB 2.x/3.x set-ups; the v1 API does not use it.
    pub org: Option<String>,
    /// The database (bucket) check points are written to.
    pub bucket: String,
    /// Days raw points are kept (0: for ever); the rollups are kept for ever.
    pub retention_days: u32,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub pass: Option<String>,
    pub from: String,
    pub tls: SmtpTls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    None,
    StartTls,
    Tls,
}

/// A setting that could not be used; the message names it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid setting {name}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub reason: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process
    /// environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let s = Settings { lookup: &lookup };
        let api_port = s.number("API_PORT", default_port("UP_API_PORT")?, 1, u16::MAX)?;
        let allow_private_targets = s.flag("ALLOW_PRIVATE_TARGETS")?;
        let public_url = s.url("PUBLIC_URL", &format!("http://127.0.0.1:{api_port}"), &["http", "https"])?;
        let admin_token = match s.optional("ADMIN_TOKEN") {
            Some(token) if token.len() < 20 => {
                return Err(ConfigError { name: "ADMIN_TOKEN", reason: "must be at least 20 characters".into() })
            }
            token => token.map(Secret),
        };
        let secret_key = match s.optional("SECRET_KEY") {
            Some(key) if key.len() < 16 => {
                return Err(ConfigError { name: "SECRET_KEY", reason: "must be at least 16 characters".into() })
            }
            key => key.map(Secret),
        };
        let detection = events::detection::Policy {
            down_after: s.number("DETECTOR_DOWN_AFTER", 2u32, 1, 1000)?,
            up_after: s.number("DETECTOR_UP_AFTER", 1u32, 1, 1000)?,
        };
        let nats_url = s.urls(
            "NATS_URL",
            &format!("nats://127.0.0.1:{}", default_port("UP_NATS_PORT")?),
            &["nats", "tls", "ws", "wss"],
        )?;
        let redis_url =
            s.url("REDIS_URL", &format!("redis://127.0.0.1:{}", default_port("UP_REDIS_PORT")?), &["redis", "rediss"])?;
        let redis_ca_file = s.file("REDIS_CA_FILE")?;
        if redis_ca_file.is_some() && !redis_url.starts_with("rediss://") {
            return Err(ConfigError {
                name: "REDIS_CA_FILE",
                reason: "is for TLS: REDIS_URL must then start with rediss://".into(),
            });
        }
        Ok(Self {
            nats: s.nats_security()?,
            nats_replicas: s.number("NATS_REPLICAS", 1usize, 1, 5)?,
            nats_url,
            redis_url,
            redis_ca_file,
            metrics: MetricsConfig {
                host: s.text("METRICS_HOST", "127.0.0.1")?,
                port: match s.optional("METRICS_PORT") {
                    None => None,
                    Some(_) => Some(s.number("METRICS_PORT", 0u16, 1, u16::MAX)?),
                },
            },
            database_url: s.url(
                "DATABASE_URL",
                &format!("postgres://postgres@127.0.0.1:{}/monitor", default_port("UP_POSTGRES_PORT")?),
                &["postgres", "postgresql"],
            )?,
            influxdb: InfluxConfig {
                url: s.url(
                    "INFLUXDB_URL",
                    &format!("http://127.0.0.1:{}", default_port("UP_INFLUXDB_PORT")?),
                    &["http", "https"],
                )?,
                token: s.optional("INFLUXDB_TOKEN"),
                org: s.optional("INFLUXDB_ORG"),
                bucket: s.text("INFLUXDB_BUCKET", "website_ticks")?,
                retention_days: s.number("INFLUXDB_RETENTION_DAYS", 0u32, 0, 36_500)?,
            },
            database_pool_size: s.number("DATABASE_POOL_SIZE", 16u32, 1, 1000)?,
            checks_max_age: Duration::from_secs(s.number("CHECKS_MAX_AGE_HOURS", 168u64, 1, 24 * 365 * 10)? * 3600),
            api: ApiConfig {
                host: s.text("API_HOST", "127.0.0.1")?,
                port: api_port,
                default_region: {
                    let raw = s.text("DEFAULT_REGION", "local")?;
                    RegionName::parse(&raw)
                        .map_err(|e| ConfigError { name: "DEFAULT_REGION", reason: e.to_string() })?
                },
                projection_wait: Duration::from_millis(s.number("PROJECTION_WAIT_MS", 5000u64, 0, 600_000)?),
                allow_private_targets,
                admin_token,
                secure_cookies: public_url.starts_with("https://"),
                public_url: public_url.clone(),
                detection,
            },
            projector: ProjectorConfig { batch: s.number("PROJECTOR_BATCH", 5000usize, 1, 1_000_000)? },
            cron: CronConfig {
                reconcile: {
                    let raw = s.text("CRON_RECONCILE", "0 0 0 * * *")?;
                    raw.parse::<cron::Schedule>().map_err(|e| ConfigError {
                        name: "CRON_RECONCILE",
                        reason: format!("not a cron expression with seconds ({e}); got {raw:?}"),
                    })?
                },
                max_queue: s.number("CRON_MAX_QUEUE", 200_000usize, 100, 100_000_000)?,
                batch: s.number("CRON_BATCH", 1000usize, 1, 100_000)?,
            },
            worker: WorkerConfig {
                region: match s.optional("REGION") {
                    None => None,
                    Some(raw) => Some(
                        RegionName::parse(&raw).map_err(|e| ConfigError { name: "REGION", reason: e.to_string() })?,
                    ),
                },
                concurrency: s.number("WORKER_CONCURRENCY", 256usize, 1, 100_000)?,
                reclaim_idle: Duration::from_millis(s.number("WORKER_RECLAIM_IDLE_MS", 90_000u64, 100, 86_400_000)?),
                max_deliveries: s.number("WORKER_MAX_DELIVERIES", 5usize, 1, 1000)?,
                allow_private_targets,
            },
            detector: detection,
            notify: NotifyConfig {
                smtp: SmtpConfig {
                    host: s.text("SMTP_HOST", "127.0.0.1")?,
                    port: s.number("SMTP_PORT", default_port("UP_SMTP_PORT")?, 1, u16::MAX)?,
                    user: s.optional("SMTP_USER"),
                    pass: s.optional("SMTP_PASS"),
                    from: s.text("SMTP_FROM", "Website Monitor <monitor@localhost>")?,
                    tls: s.smtp_tls("SMTP_TLS")?,
                },
                default_recipient: match s.optional("NOTIFY_DEFAULT_EMAIL") {
                    None => None,
                    Some(raw) => Some(
                        events::EmailAddress::parse(&raw)
                            .map_err(|e| ConfigError { name: "NOTIFY_DEFAULT_EMAIL", reason: e.to_string() })?,
                    ),
                },
                public_url,
                max_age: Duration::from_secs(s.number("NOTIFY_MAX_AGE_MINUTES", 60u64, 1, 525_600)? * 60),
                telegram_api: s.url("TELEGRAM_API_URL", "https://api.telegram.org", &["http", "https"])?,
                allow_private_targets,
            },
            secret_key,
        })
    }
}

/// The default ports, shared with `./dev` (which starts the servers there).
const PORTS: &str = include_str!("../../ports.env");

/// The `key=port` line of `ports.env`; an error only if the file shipped in
/// the build lacks it.
fn default_port(key: &'static str) -> Result<u16, ConfigError> {
    PORTS
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .find(|(name, _)| name.trim() == key)
        .and_then(|(_, port)| port.trim().parse().ok())
        .ok_or_else(|| ConfigError { name: key, reason: "no such port in ports.env".into() })
}

/// Refuses `value` unless it is a URL with one of `schemes`; the error
/// shows the value with any password in it masked.
fn check_url(name: &'static str, value: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    let shown = masked(value);
    let parsed = url::Url::parse(value).map_err(|e| ConfigError { name, reason: format!("{e} (got {shown:?})") })?;
    if !schemes.contains(&parsed.scheme()) {
        return Err(ConfigError {
            name,
            reason: format!("scheme must be one of {} (got {shown:?})", schemes.join(", ")),
        });
    }
    Ok(())
}

/// A URL with the password of its user part (`scheme://user:password@`)
/// replaced by `***`, also when the rest does not parse.
fn masked(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else { return value.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return value.to_owned() };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => value.to_owned(),
    }
}

struct Settings<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Settings<'_> {
    /// The trimmed value, `None` when unset or blank.
    fn optional(&self, name: &str) -> Option<String> {
        (self.lookup)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn text(&self, name: &'static str, default: &str) -> Result<String, ConfigError> {
        Ok(self.optional(name).unwrap_or_else(|| default.to_owned()))
    }

    fn url(&self, name: &'static str, default: &str, schemes: &[&str]) -> Result<String, ConfigError> {
        let value = self.text(name, default)?;
        check_url(name, &value, schemes)?;
        Ok(value)
    }

    /// A comma-separated list of URLs (a cluster's servers), each checked
    /// as [`Settings::url`]; returned as given.
    fn urls(&self, name: &'static str, default: &str, schemes: &[&str]) -> Result<String, ConfigError> {
        let value = self.text(name, default)?;
        for one in value.split(',') {
            check_url(name, one.trim(), schemes)?;
        }
        Ok(value)
    }

    /// The path of a file that must exist and be readable (`None`: unset).
    fn file(&self, name: &'static str) -> Result<Option<PathBuf>, ConfigError> {
        let Some(raw) = self.optional(name) else { return Ok(None) };
        let path = PathBuf::from(&raw);
        match std::fs::File::open(&path) {
            Ok(file) if file.metadata().is_ok_and(|m| m.is_file()) => Ok(Some(path)),
            Ok(_) => Err(ConfigError { name, reason: format!("not a file: {raw:?}") }),
            Err(e) => Err(ConfigError { name, reason: format!("cannot read {raw:?}: {e}") }),
        }
    }

    /// NATS TLS and credentials; the files named must exist, a client
    /// certificate needs its key, and only one kind of credentials is set.
    fn nats_security(&self) -> Result<NatsSecurity, ConfigError> {
        let ca_file = self.file("NATS_CA_FILE")?;
        let client_cert = match (self.file("NATS_CERT_FILE")?, self.file("NATS_KEY_FILE")?) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((cert, key)),
            (Some(_), None) => {
                return Err(ConfigError { name: "NATS_KEY_FILE", reason: "must be set with NATS_CERT_FILE".into() })
            }
            (None, Some(_)) => {
                return Err(ConfigError { name: "NATS_CERT_FILE", reason: "must be set with NATS_KEY_FILE".into() })
            }
        };
        let user = self.optional("NATS_USER");
        // A password may hold spaces at either end: only a blank one is unset.
        let password = (self.lookup)("NATS_PASSWORD").filter(|p| !p.trim().is_empty()).map(Secret);
        let mut credentials = match (user, password) {
            (None, None) => NatsCredentials::None,
            (Some(user), Some(password)) => NatsCredentials::UserPassword { user, password },
            (Some(_), None) => {
                return Err(ConfigError { name: "NATS_PASSWORD", reason: "must be set with NATS_USER".into() })
            }
            (None, Some(_)) => {
                return Err(ConfigError { name: "NATS_USER", reason: "must be set with NATS_PASSWORD".into() })
            }
        };
        for (name, file) in [("NATS_NKEY", self.file("NATS_NKEY")?), ("NATS_CREDS", self.file("NATS_CREDS")?)] {
            let Some(file) = file else { continue };
            if credentials != NatsCredentials::None {
                return Err(ConfigError {
                    name,
                    reason: "only one of NATS_USER/NATS_PASSWORD, NATS_NKEY and NATS_CREDS may be set".into(),
                });
            }
            credentials = if name == "NATS_NKEY" { NatsCredentials::NKey(file) } else { NatsCredentials::Creds(file) };
        }
        Ok(NatsSecurity { ca_file, client_cert, credentials })
    }

    fn number<T>(&self, name: &'static str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(raw) = self.optional(name) else {
            return Ok(default);
        };
        match raw.parse::<T>() {
            Ok(v) if v >= min && v <= max => Ok(v),
            _ => {
                Err(ConfigError { name, reason: format!("expected a whole number from {min} to {max} (got {raw:?})") })
            }
        }
    }

    fn flag(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.optional(name).as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("false") | Some("0") | Some("no") => Ok(false),
            Some("true") | Some("1") | Some("yes") => Ok(true),
            Some(other) => Err(ConfigError { name, reason: format!("expected true or false (got {other:?})") }),
        }
    }

    fn smtp_tls(&self, name: &'static str) -> Result<SmtpTls, ConfigError> {
        match self.optional(name).as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("none") => Ok(SmtpTls::None),
            Some("starttls") => Ok(SmtpTls::StartTls),
            Some("tls") => Ok(SmtpTls::Tls),
            Some(other) => Err(ConfigError { name, reason: format!("expected none, starttls or tls (got {other:?})") }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn every_setting_has_a_working_default() {
        let config = config(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.api.port, 3002);
        assert_eq!(config.influxdb.bucket, "website_ticks");
        assert_eq!(config.api.default_region.as_str(), "local");
        assert_eq!(config.notify.smtp.tls, SmtpTls::None);
        assert_eq!(config.influxdb.token, None);
    }

    #[test]
    fn a_malformed_setting_is_named_in_the_error() {
        for (name, value) in [
            ("API_PORT", "abc"),
            ("API_PORT", "0"),
            ("API_PORT", "70000"),
            ("DATABASE_URL", "not a url"),
            ("DATABASE_URL", "mysql://localhost/x"),
            ("NATS_URL", "http://localhost:4222"),
            ("SMTP_TLS", "maybe"),
            ("DEFAULT_REGION", "Not A Region"),
            ("PROJECTION_WAIT_MS", "-5"),
            ("CRON_RECONCILE", "every day"),
            ("REGION", "EU WEST"),
            ("ALLOW_PRIVATE_TARGETS", "perhaps"),
            ("WORKER_CONCURRENCY", "0"),
            ("ADMIN_TOKEN", "short"),
            ("METRICS_PORT", "0"),
            ("NATS_REPLICAS", "7"),
            ("METRICS_PORT", "http"),
            ("NATS_URL", "nats://127.0.0.1:4231,http://127.0.0.1:4232"),
            ("NATS_CA_FILE", "/nonexistent/ca.pem"),
            ("NATS_CA_FILE", "/"),
            ("NATS_NKEY", "/nonexistent/user.nk"),
            ("NATS_CREDS", "/nonexistent/user.creds"),
            ("REDIS_URL", "http://127.0.0.1:6379"),
        ] {
            let error = config(&[(name, value)]).err();
            assert_eq!(error.as_ref().map(|e| e.name), Some(name), "{name}={value}");
            let line = error.map(|e| e.to_string()).unwrap_or_default();
            assert!(line.starts_with(&format!("invalid setting {name}:")), "{line}");
        }
    }

    #[test]
    fn the_admin_token_is_never_printed() {
        let secret = "wm_this-is-a-long-enough-secret";
        let config = config(&[("ADMIN_TOKEN", secret)]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.api.admin_token.as_ref().map(Secret::expose), Some(secret));
        assert!(!format!("{config:?}").contains(secret));
    }

    #[test]
    fn settings_that_go_together_name_the_one_missing_or_extra() {
        let file = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
        let path = file.path().to_string_lossy().to_string();
        for (pairs, named) in [
            (vec![("NATS_USER", "monitor")], "NATS_PASSWORD"),
            (vec![("NATS_PASSWORD", "a password without a user")], "NATS_USER"),
            (vec![("NATS_CERT_FILE", path.as_str())], "NATS_KEY_FILE"),
            (vec![("NATS_KEY_FILE", path.as_str())], "NATS_CERT_FILE"),
            (vec![("NATS_USER", "monitor"), ("NATS_PASSWORD", "secret"), ("NATS_CREDS", path.as_str())], "NATS_CREDS"),
            (vec![("NATS_NKEY", path.as_str()), ("NATS_CREDS", path.as_str())], "NATS_CREDS"),
            (vec![("REDIS_CA_FILE", path.as_str())], "REDIS_CA_FILE"),
        ] {
            let error = config(&pairs).err();
            assert_eq!(error.map(|e| e.name), Some(named), "{pairs:?}");
        }
    }

    #[test]
    fn nats_tls_and_credentials_are_read_and_the_password_never_printed() {
        let file = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
        let path = file.path().to_string_lossy().to_string();
        let config = config(&[
            ("NATS_URL", "tls://a.example:4222, tls://b.example:4222"),
            ("NATS_CA_FILE", &path),
            ("NATS_USER", "monitor"),
            ("NATS_PASSWORD", "s3cret-nats-password"),
            ("REDIS_URL", "rediss://:pw@redis.example:6380"),
            ("REDIS_CA_FILE", &path),
            ("METRICS_PORT", "9464"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(config.nats.requires_tls(&config.nats_url));
        assert_eq!(config.nats.ca_file.as_deref(), Some(file.path()));
        assert!(matches!(&config.nats.credentials, NatsCredentials::UserPassword { user, .. } if user == "monitor"));
        assert!(!format!("{config:?}").contains("s3cret-nats-password"));
        assert_eq!(config.metrics.address().as_deref(), Some("127.0.0.1:9464"));
        assert_eq!(super::Config::from_lookup(|_| None).map(|c| c.metrics.address()), Ok(None));
    }

    #[test]
    fn a_password_in_a_malformed_url_is_never_shown() {
        for (name, value) in [
            ("REDIS_URL", "redis+tls://:hunter2-secret@redis.example:6380"),
            ("REDIS_URL", "rediss://:hunter2-secret@redis.example:notaport"),
            ("NATS_URL", "tls://monitor:hunter2-secret@nats.example:4222,http://x"),
            ("DATABASE_URL", "mysql://monitor:hunter2-secret@db.example/monitor"),
        ] {
            let line = config(&[(name, value)]).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(line.contains(name) && !line.contains("hunter2"), "{line}");
        }
        assert_eq!(masked("rediss://:pw@host:6380/1"), "rediss://:***@host:6380/1");
        assert_eq!(masked("nats://host:4222"), "nats://host:4222");
    }

    #[test]
    fn blank_optional_settings_count_as_unset() {
        let config = config(&[("INFLUXDB_TOKEN", "  "), ("SMTP_TLS", "STARTTLS")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.influxdb.token, None);
        assert_eq!(config.notify.smtp.tls, SmtpTls::StartTls);
    }
}
