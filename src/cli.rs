//! The `chamade` command line: `serve`, `user create`, `key create`, `config`.

use std::net::TcpListener;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::api::session::{check_password, create_account, issue_key, parse_email};
use crate::auth::crypto::SecretBox;
use crate::auth::secrets;
use crate::config::{Config, Overrides};
use crate::db::{now_ms, repo};
use crate::server;

/// Prints to stdout without panicking when stdout is closed (a supervisor that stopped
/// reading must not take the server down).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Self-hostable voice and chat gateway for AI agents.
#[derive(Parser)]
#[command(name = "chamade", version, about)]
pub struct Cli {
    /// Configuration file (TOML). Default: ./chamade.toml when it exists.
    #[arg(long, short, global = true, env = "CHAMADE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Folder for the embedded database and state.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://…); default is SQLite in the data folder.
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do.
#[derive(Subcommand)]
pub enum Command {
    /// Start the gateway.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Mixer shard threads (0 = one per core).
        #[arg(long)]
        mixer_shards: Option<usize>,
        /// Print the effective configuration and exit.
        #[arg(long)]
        check: bool,
    },
    /// Print the effective configuration.
    Config,
    /// Manage accounts.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Manage API keys.
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
}

/// `chamade user …`.
#[derive(Subcommand)]
pub enum UserAction {
    /// Create an account and print its first API key.
    Create {
        /// Login address.
        #[arg(long)]
        email: String,
        /// Password (a random one is generated and printed when omitted).
        #[arg(long, env = "CHAMADE_NEW_PASSWORD")]
        password: Option<String>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
    },
}

/// `chamade key …`.
#[derive(Subcommand)]
pub enum KeyAction {
    /// Create an API key for an existing account and print it.
    Create {
        /// The account's address.
        #[arg(long)]
        email: String,
        /// Label of the key.
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

/// Runs the command line; returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    let mut overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        database_url: cli.database_url.clone(),
        ..Overrides::default()
    };
    let mut check = true;
    if let Some(Command::Serve {
        listen,
        mixer_shards,
        check: only_check,
    }) = &cli.command
    {
        overrides.listen = *listen;
        overrides.mixer_shards = *mixer_shards;
        check = *only_check;
    }
    let config = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    match cli.command {
        Some(Command::Serve { .. }) if !check => serve(config),
        Some(Command::Serve { .. } | Command::Config) | None => {
            print_config(&config);
            0
        }
        Some(Command::User {
            action:
                UserAction::Create {
                    email,
                    password,
                    name,
                },
        }) => with_db(&config, |conn| {
            let email = parse_email(&email).map_err(|e| e.to_string())?;
            let generated = password.is_none();
            let password = password.unwrap_or_else(|| secrets::random_token(12));
            check_password(&password).map_err(|e| e.to_string())?;
            let (user, _, key) = create_account(conn, &email, &password, name.as_deref())
                .map_err(|e| e.to_string())?;
            say!("created account {} ({})", user.email, user.id);
            if generated {
                say!("password: {password}");
            }
            say!("API key (shown once): {key}");
            Ok(())
        }),
        Some(Command::Key {
            action: KeyAction::Create { email, name },
        }) => with_db(&config, |conn| {
            let email = parse_email(&email).map_err(|e| e.to_string())?;
            let user = repo::user_by_email(conn, &email)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no account with email {email}"))?;
            let (key_id, key) = issue_key(conn, &user.id, &name, now_ms(), |_| Ok(()))
                .map_err(|e| e.to_string())?;
            say!("API key {key_id} for {email} (shown once): {key}");
            Ok(())
        }),
    }
}

fn fail(e: &dyn std::fmt::Display) -> u8 {
    eprintln!("chamade: {e}");
    2
}

fn with_db(
    config: &Config,
    f: impl FnOnce(&mut crate::db::AnyConnection) -> Result<(), String>,
) -> u8 {
    let pool = match server::open_database(config) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let mut conn = match pool.get() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    match f(&mut conn) {
        Ok(()) => 0,
        Err(e) => fail(&e),
    }
}

fn print_config(config: &Config) {
    say!("chamade {}", crate::VERSION);
    say!("  listen        http://{}", config.listen);
    say!("  public url    {}", config.public_url());
    say!("  data folder   {}", config.data_dir.display());
    say!("  database      {}", config.database_display());
    say!(
        "  signup        {}",
        if config.signup { "open" } else { "closed" }
    );
    say!("  mixer shards  {}", config.effective_mixer_shards());
    match &config.secret_key {
        Some(_) => say!("  secret key    from the configuration"),
        None => say!(
            "  secret key    {}",
            config
                .data_dir
                .join(crate::auth::crypto::KEY_FILE)
                .display()
        ),
    }
}

/// Creates the owner account on a fresh database and prints its credentials once.
fn first_start(config: &Config, pool: &crate::db::DbPool) -> Result<(), String> {
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    if repo::count_users(&mut conn).map_err(|e| e.to_string())? > 0 {
        return Ok(());
    }
    let password = secrets::random_token(12);
    let (user, _, key) = create_account(&mut conn, "owner@localhost", &password, Some("Owner"))
        .map_err(|e| e.to_string())?;
    let url = config.public_url();
    say!();
    say!("First start: created the owner account {}.", user.email);
    say!("  password  {password}");
    say!("  API key   {key}");
    say!("These are shown only now. Try:");
    say!("  curl -H \"X-API-Key: {key}\" {url}/api/account");
    say!("More keys: chamade key create --email {}", user.email);
    say!();
    Ok(())
}

/// Holds an exclusive lock on the data folder while the server runs, so that two servers
/// never share one embedded database.
fn lock_data_dir(config: &Config) -> Result<Option<std::fs::File>, String> {
    if config.database_url.is_some() {
        return Ok(None);
    }
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", config.data_dir.display()))?;
    let path = config.data_dir.join("chamade.lock");
    let file = std::fs::File::create(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(_) => Err(format!(
            "another chamade server is using the data folder {}",
            config.data_dir.display()
        )),
    }
}

fn serve(config: Config) -> u8 {
    init_logging();
    print_config(&config);
    let _lock = match lock_data_dir(&config) {
        Ok(lock) => lock,
        Err(e) => return fail(&e),
    };
    let listener = match TcpListener::bind(config.listen) {
        Ok(l) => l,
        Err(e) => return fail(&format!("cannot listen on {}: {e}", config.listen)),
    };
    let pool = match server::open_database(&config) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    if let Err(e) = first_start(&config, &pool) {
        return fail(&e);
    }
    let secrets = match SecretBox::load_or_create(config.secret_key.as_deref(), &config.data_dir) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    if config.database_url.is_none() {
        // One server per SQLite data folder: calls the last run left live died with it.
        let ended = pool.get().map_err(|e| e.to_string()).and_then(|mut c| {
            crate::db::calls::end_orphans(&mut c, crate::db::now_ms()).map_err(|e| e.to_string())
        });
        match ended {
            Ok(0) => {}
            Ok(n) => tracing::info!(calls = n, "marked calls of the previous run as ended"),
            Err(e) => return fail(&e),
        }
    }
    let url = config.public_url();
    let workers = config.effective_mixer_shards();
    let state = server::state(config, pool, secrets);
    let result = actix_web::rt::System::new().block_on(async move {
        let server = server::build(listener, state, workers).map_err(|e| e.to_string())?;
        say!("Get a key: chamade key create --email <your account>, or POST {url}/api/signup");
        say!("chamade listening on {url}  (API: {url}/api, OpenAPI: {url}/api/openapi.json)");
        server.await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            0
        }
        Err(e) => fail(&e),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
