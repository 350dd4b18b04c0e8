//! A real SMTP server for the tests (aiosmtpd, installed by `./dev test`)
//! that keeps every message it accepts as a file.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Smtp {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Smtp {
    /// Picks a port without starting the server (to test an SMTP outage).
    pub fn stopped() -> Smtp {
        Smtp { child: None, port: super::free_port(), dir: tempfile::tempdir().expect("tempdir") }
    }

    pub async fn start() -> Smtp {
        let mut smtp = Smtp::stopped();
        smtp.resume().await;
        smtp
    }

    pub async fn resume(&mut self) {
        let python = std::env::var("SMTP_SERVER_PYTHON").unwrap_or_else(|_| "python3".into());
        let child = Command::new(&python)
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{}", self.port),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(self.mailbox())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start aiosmtpd with {python}: {e}. Run the tests with `./dev test`, which installs it")
            });
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("aiosmtpd did not start on port {} (is the python package aiosmtpd installed?)", self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn mailbox(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// Every message received so far, oldest first, as raw text.
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(self.mailbox().join("new"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let modified = entry.metadata().ok()?.modified().ok()?;
                Some((modified, std::fs::read_to_string(entry.path()).ok()?))
            })
            .collect();
        files.sort_by_key(|(modified, _)| *modified);
        files.into_iter().map(|(_, text)| text).collect()
    }

    /// When the newest message was received.
    pub fn last_received(&self) -> Option<std::time::SystemTime> {
        std::fs::read_dir(self.mailbox().join("new"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.metadata().ok()?.modified().ok())
            .max()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.stop();
    }
}
