//! The scheduler service: keeps the per-region schedules in Redis and
//! queues due checks. Any number may run at once.
fn main() -> std::process::ExitCode {
    services::runtime::main("cron", |deps, config, cancel| services::cron::serve(deps, config.cron, cancel))
}
