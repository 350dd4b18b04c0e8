//! The binaries' contract with whoever starts them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn a_malformed_setting_stops_a_service_with_one_line_naming_it() {
    for bin in [env!("CARGO_BIN_EXE_api"), env!("CARGO_BIN_EXE_projector"), env!("CARGO_BIN_EXE_monitor")] {
        let output = Command::new(bin).env("API_PORT", "not-a-port").output().expect("run");
        assert_eq!(output.status.code(), Some(2), "{bin}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains("API_PORT"), "{stderr}");
    }
}

#[test]
fn the_projector_refuses_an_unknown_command() {
    let output = Command::new(env!("CARGO_BIN_EXE_projector")).arg("rebuild-everything").output().expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).to_lowercase().contains("usage"));
}
