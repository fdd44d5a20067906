//! The `chamade` command: parse the command line and configuration, then run.

use std::path::PathBuf;
use std::process::ExitCode;

use chamade::{Config, Overrides, VERSION};
use clap::{Parser, Subcommand};

/// Self-hostable voice and chat gateway for AI agents.
#[derive(Parser)]
#[command(name = "chamade", version, about)]
struct Cli {
    /// Configuration file (TOML). Default: ./chamade.toml when it exists.
    #[arg(long, short, global = true, env = "CHAMADE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gateway.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Folder for the embedded database and state.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// PostgreSQL URL (postgres://…); default is SQLite in the data folder.
        #[arg(long)]
        database_url: Option<String>,
        /// Mixer shard threads (0 = one per core).
        #[arg(long)]
        mixer_shards: Option<usize>,
        /// Print the effective configuration and exit.
        #[arg(long)]
        check: bool,
    },
    /// Print the effective configuration.
    Config,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (overrides, check) = match &cli.command {
        Some(Command::Serve {
            listen,
            data_dir,
            database_url,
            mixer_shards,
            check,
        }) => (
            Overrides {
                listen: *listen,
                data_dir: data_dir.clone(),
                database_url: database_url.clone(),
                mixer_shards: *mixer_shards,
            },
            *check,
        ),
        Some(Command::Config) | None => (Overrides::default(), true),
    };
    let config = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chamade: {e}");
            return ExitCode::from(2);
        }
    };
    println!("chamade {VERSION}");
    println!("  listen        http://{}", config.listen);
    println!("  data folder   {}", config.data_dir.display());
    println!("  database      {}", config.database_display());
    println!("  mixer shards  {}", config.effective_mixer_shards());
    if !check {
        println!(
            "The HTTP API is not part of this build yet: the media core is, and `scripts/test` exercises it."
        );
    }
    ExitCode::SUCCESS
}
