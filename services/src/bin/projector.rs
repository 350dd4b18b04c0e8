//! The projector service. `projector` follows the MONITOR stream into
//! Postgres; `projector replay` empties the projection, rebuilds it from
//! sequence 1 and exits.
use anyhow::Context;
use services::{projector, runtime};

fn main() -> std::process::ExitCode {
    let command = std::env::args().nth(1);
    match command.as_deref() {
        None => runtime::main("projector", |config, cancel| async move {
            let pool = runtime::connect_db(&config.database_url, 4, &cancel).await?;
            let bus = runtime::connect_bus(&config).await?;
            projector::run(bus, pool, cancel).await
        }),
        Some("replay") => runtime::main("projector replay", |config, cancel| async move {
            let pool = runtime::connect_db(&config.database_url, 4, &cancel).await?;
            let bus = runtime::connect_bus(&config).await?;
            let reached = projector::replay(&bus, &pool, &cancel).await.context("replay")?;
            tracing::info!(reached, "replay complete");
            Ok(())
        }),
        Some(other) => {
            eprintln!("error: unknown command {other:?}; usage: projector [replay]");
            std::process::ExitCode::from(2)
        }
    }
}
