//! The REST API service (port `API_PORT`, default 3002).
fn main() -> std::process::ExitCode {
    services::runtime::main("api", services::api::run)
}
