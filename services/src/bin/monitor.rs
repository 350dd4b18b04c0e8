//! Every service in one process, for local use (`./dev up`).
fn main() -> std::process::ExitCode {
    services::runtime::main("monitor", services::all::serve)
}
