//! The detector service: check results in, SiteDown/SiteUp out.
fn main() -> std::process::ExitCode {
    services::runtime::main("detector", |deps, config, cancel| services::detector::serve(deps, config.detector, cancel))
}
