//! The projector service. `projector` follows the streams into Postgres and
//! InfluxDB; `projector replay [monitor|status|influx|all]` empties a
//! projection (default: all), rebuilds it from the start of its stream and
//! exits (InfluxDB is refilled by the running projector).
use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use services::projector::{self, Projection};
use services::runtime;

#[derive(Parser)]
#[command(about = "Follows the event streams into the Postgres and InfluxDB projections")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Empties a projection and rebuilds it from the start of its stream.
    Replay {
        #[arg(value_enum, default_value_t = Which::All)]
        which: Which,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    /// Websites, regions and incidents, from MONITOR.
    Monitor,
    /// Latest status per website and region, from CHECKS.
    Status,
    /// Check points in InfluxDB, from CHECKS.
    Influx,
    All,
}

impl Which {
    fn includes(self, one: Which) -> bool {
        self == one || self == Which::All
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => runtime::main("projector", |deps, config, cancel| projector::serve(deps, config.projector, cancel)),
        Some(Command::Replay { which }) => runtime::main("projector replay", move |deps, _config, cancel| async move {
            deps.database_ready(&cancel).await?;
            if which.includes(Which::Monitor) {
                let reached = projector::replay(&deps.bus, &deps.pool, Projection::Monitor, &cancel)
                    .await
                    .context("replaying monitor")?;
                tracing::info!(reached, "websites and regions replayed");
            }
            if which.includes(Which::Status) {
                let reached = projector::replay(&deps.bus, &deps.pool, Projection::Status, &cancel)
                    .await
                    .context("replaying status")?;
                tracing::info!(reached, "latest status replayed");
            }
            if which.includes(Which::Influx) {
                projector::replay_influx(&deps.bus, &deps.influx).await.context("replaying influxdb")?;
            }
            Ok(())
        }),
    }
}
