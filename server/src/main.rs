//! `parley-server`: runs the server (the default) or an admin command.
use clap::{Parser, Subcommand};
use parley_server::{admin, Config, Server};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "parley-server", version, about = "Parley: self-hostable real-time chat")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (what happens with no command).
    Serve,
    /// Administer accounts on the configured database.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a verified account.
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        display_name: String,
        /// Read the password from the first line of stdin; without it one is generated and printed.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Create many verified accounts with a session each (bots, load tests); they have no
    /// password. Writes `user_id<TAB>email<TAB>token` lines.
    CreateUsers {
        #[arg(long)]
        count: usize,
        #[arg(long, default_value = "load")]
        prefix: String,
        #[arg(long)]
        tokens_out: std::path::PathBuf,
    },
    /// Run once after restoring the database from a backup, before any node starts: every cursor
    /// given out before is refused from then on, and apps start again from what the database
    /// holds instead of skipping what is written after the restore.
    AfterRestore,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::load() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("parley-server: configuration: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(&config.log));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Admin(AdminCommand::CreateUser { email, display_name, password_stdin }) => {
            let mut stdin = std::io::stdin();
            let source: Option<&mut dyn std::io::Read> = if password_stdin { Some(&mut stdin) } else { None };
            match admin::create_user(&config, &email, &display_name, source).await {
                Ok(created) => {
                    println!("created user {} <{}>", created.id, created.email);
                    if let Some(password) = created.generated_password {
                        println!("password: {password}");
                    }
                    Ok(())
                }
                Err(err) => Err(err.to_string()),
            }
        }
        Command::Admin(AdminCommand::CreateUsers { count, prefix, tokens_out }) => {
            match admin::create_users(&config, count, &prefix, &tokens_out).await {
                Ok(n) => {
                    println!("created {n} users; tokens in {}", tokens_out.display());
                    Ok(())
                }
                Err(err) => Err(err.to_string()),
            }
        }
        Command::Admin(AdminCommand::AfterRestore) => match admin::after_restore(&config).await {
            Ok(epoch) => {
                println!("history epoch {epoch}: cursors given out before the restore are refused from now on");
                Ok(())
            }
            Err(err) => Err(err.to_string()),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("parley-server: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let listener = parley_server::listen(config.bind).map_err(|e| format!("binding {}: {e}", config.bind))?;
    let scheme = if config.tls_files().is_some() { "https" } else { "http" };
    let url = match &config.public_url {
        Some(url) => url.clone(),
        None => format!("{scheme}://{}", listener.local_addr().map_err(|e| e.to_string())?),
    };
    let server = Server::build(config).await.map_err(|e| e.to_string())?;
    tracing::info!("Parley is listening on {url}");
    println!("Parley is running at {url}");
    server.serve(listener, shutdown_signal()).await.map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutting down");
}
