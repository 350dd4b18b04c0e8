//! Every service in one process, for local use (`./dev up`), and the
//! administration commands: `monitor token create --scope write --name ci`
//! prints a new token's secret (shown once).
use clap::{Parser, Subcommand};
use events::{Actor, Scope, TokenName};
use services::access::tokens;
use services::runtime;

#[derive(Parser)]
#[command(about = "The website monitor: every service in one process, or an administration command")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Creates a token and prints its secret (shown once, stored nowhere).
    Create {
        #[arg(long)]
        name: String,
        /// read, write or admin
        #[arg(long, default_value = "read")]
        scope: String,
        /// When it stops working (RFC 3339), e.g. 2027-01-01T00:00:00Z.
        #[arg(long)]
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Revokes a token by id.
    Revoke { id: uuid::Uuid },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => runtime::main("monitor", services::all::serve),
        Some(Command::Token { command: TokenCommand::Create { name, scope, expires_at } }) => {
            let (name, scope) = match (TokenName::parse(&name), Scope::parse(&scope)) {
                (Ok(name), Ok(scope)) => (name, scope),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("error: {e}");
                    return std::process::ExitCode::from(2);
                }
            };
            runtime::main("monitor token create", move |deps, _config, _cancel| async move {
                let (token, secret, _) =
                    tokens::create(&deps.bus, name, scope, expires_at, Actor::Bootstrap, None).await?;
                eprintln!(
                    "token {} ({}, scope {}) created; its secret, shown only now:",
                    token.id, token.name, token.scope
                );
                println!("{secret}");
                Ok(())
            })
        }
        Some(Command::Token { command: TokenCommand::Revoke { id } }) => {
            runtime::main("monitor token revoke", move |deps, _config, _cancel| async move {
                match tokens::revoke(&deps.bus, id, Actor::Bootstrap, None).await? {
                    Some(_) => eprintln!("token {id} revoked"),
                    None => eprintln!("token {id} was already revoked"),
                }
                Ok(())
            })
        }
    }
}
