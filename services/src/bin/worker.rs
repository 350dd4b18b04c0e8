//! A regional worker: `REGION=<name> worker` checks the websites queued for
//! that region and publishes the results. Any number may run per region.
fn main() -> std::process::ExitCode {
    services::runtime::main("worker", |deps, config, cancel| services::worker::serve(deps, config.worker, cancel))
}
