//! The notification service: one email per outage and one per recovery.
fn main() -> std::process::ExitCode {
    services::runtime::main("notification", |deps, config, cancel| {
        services::notification::serve(deps, config.notify, cancel)
    })
}
