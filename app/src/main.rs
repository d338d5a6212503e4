//! `session-crypto`: config → backend → subcommand.

use session_crypto::config::{Command, LogFormat};
use session_crypto::layered::{self, Parsed};
use session_crypto::{backend, operator_commands, serve, settings};
use session_crypto_cli::{bench, client};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let parsed = match layered::parse() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("session-crypto: {message}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let cli = &parsed.cli;
    // Colours only on a terminal: log files and collectors get plain text.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    match run(&parsed) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("session-crypto: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `RUST_LOG` (default `info`), with the libraries whose debug output could carry request
/// data — SQL statements and parameters, HTTP/2 header frames, Redis commands — capped at
/// `info` whatever `RUST_LOG` says: no level may put a session id or a key in the log.
fn log_filter() -> EnvFilter {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for target in [
        "tokio_postgres",
        "postgres_protocol",
        "h2",
        "hyper",
        "hyper_util",
        "redis",
    ] {
        if let Ok(d) = format!("{target}=info").parse() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

fn runtime(threads: Option<usize>) -> Result<tokio::runtime::Runtime, session_crypto::Error> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads.filter(|&n| n > 0) {
        b.worker_threads(n);
    }
    b.enable_all()
        .build()
        .map_err(|e| session_crypto::Error::Runtime(format!("cannot start the async runtime: {e}")))
}

fn run(parsed: &Parsed) -> Result<(), session_crypto::Error> {
    let cli = &parsed.cli;
    match &cli.command {
        Command::Backends => {
            for p in backend::compiled() {
                println!("{}", p.name);
            }
            return Ok(());
        }
        Command::Migrate(args) => {
            return runtime(None)?.block_on(operator_commands::migrate(&args.database_url));
        }
        // A key-wrapping key is 32 random bytes whatever the backend: any compiled
        // one's CSPRNG will do (the one named by CRYPTO_BACKEND when it is compiled in).
        Command::Keygen(args) => {
            let compiled = backend::compiled();
            let crypto = backend::select(cli.backend.as_deref())
                .ok()
                .or_else(|| compiled.first().copied())
                .ok_or_else(|| {
                    session_crypto::Error::Config("no crypto backend compiled in".into())
                })?;
            if args.signing {
                print!("{}", session_crypto::identity::generate(crypto)?);
                return Ok(());
            }
            let mut kek = zeroize::Zeroizing::new([0u8; 32]);
            crypto.random.fill(kek.as_mut()).map_err(|_| {
                session_crypto::Error::Runtime("the random number generator failed".into())
            })?;
            println!("{}", domain::encoding::base64_encode(kek.as_ref()));
            return Ok(());
        }
        _ => {}
    }
    let crypto = backend::select(cli.backend.as_deref())?;
    match &cli.command {
        Command::Serve(args) => {
            runtime(args.worker_threads)?.block_on(serve::run((**args).clone(), crypto))
        }
        Command::CheckConfig(args) => {
            print!("{}", layered::describe(parsed, "check-config"));
            let checked = settings::validate(args, crypto)?;
            for line in session_crypto::identity::describe(
                &checked.signing,
                session_crypto::stores::fence::now_ms() / 1000,
            ) {
                println!("# {line}");
            }
            for line in checked.api.gateway.describe() {
                println!("# gateway route: {line}");
            }
            println!("# configuration is valid (crypto backend {})", crypto.name);
            Ok(())
        }
        Command::Client(args) => Ok(runtime(Some(1))?.block_on(client::run(args.clone(), crypto))?),
        Command::Bench(args) => {
            Ok(runtime(args.worker_threads)?.block_on(bench::run(args.clone(), crypto))?)
        }
        Command::Revoke(args) => runtime(None)?.block_on(operator_commands::revoke(args, crypto)),
        Command::Backends | Command::Migrate(_) | Command::Keygen(_) => Ok(()),
    }
}
