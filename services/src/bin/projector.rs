//! The projector service. `projector` follows the streams into Postgres and
//! InfluxDB; `projector replay [monitor|status|influx|all]` empties a
//! projection (default: all), rebuilds it from the start of its stream and
//! exits (InfluxDB is refilled by the running projector).
use anyhow::Context;
use projections::influx::Influx;
use services::projector::{self, Projection};
use services::{runtime, Config};

fn influx(config: &Config) -> Influx {
    Influx::new(&config.influxdb.url, &config.influxdb.bucket, config.influxdb.token.as_deref())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] => runtime::main("projector", |config, cancel| async move {
            let pool = runtime::connect_db(&config.database_url, 6, &cancel).await?;
            let bus = runtime::connect_bus(&config).await?;
            projector::run_all(bus, pool, influx(&config), cancel).await
        }),
        ["replay", rest @ ..] if rest.len() <= 1 => {
            let which = rest.first().copied().unwrap_or("all").to_owned();
            if !["monitor", "status", "influx", "all"].contains(&which.as_str()) {
                eprintln!("error: unknown projection {which:?}; usage: projector replay [monitor|status|influx|all]");
                return std::process::ExitCode::from(2);
            }
            runtime::main("projector replay", |config, cancel| async move {
                let pool = runtime::connect_db(&config.database_url, 4, &cancel).await?;
                let bus = runtime::connect_bus(&config).await?;
                if which == "monitor" || which == "all" {
                    let reached = projector::replay(&bus, &pool, Projection::Monitor, &cancel)
                        .await
                        .context("replaying monitor")?;
                    tracing::info!(reached, "websites and regions replayed");
                }
                if which == "status" || which == "all" {
                    let reached = projector::replay(&bus, &pool, Projection::Status, &cancel)
                        .await
                        .context("replaying status")?;
                    tracing::info!(reached, "latest status replayed");
                }
                if which == "influx" || which == "all" {
                    projector::replay_influx(&bus, &influx(&config)).await.context("replaying influxdb")?;
                }
                Ok(())
            })
        }
        _ => {
            eprintln!(
                "error: unknown command {:?}; usage: projector [replay [monitor|status|influx|all]]",
                args.join(" ")
            );
            std::process::ExitCode::from(2)
        }
    }
}
