//! The REST API service (port `API_PORT`, default 3002).
fn main() -> std::process::ExitCode {
    services::runtime::main("api", |deps, config, cancel| services::api::serve(deps, config.api, cancel))
}
