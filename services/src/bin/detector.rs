//! The detector service: check results in, SiteDown/SiteUp out.
fn main() -> std::process::ExitCode {
    services::runtime::main("detector", services::detector::run)
}
