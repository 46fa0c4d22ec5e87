//! `reel`: the command line over reel-core. It only maps arguments to library calls, prints
//! results, and turns errors into a message with a hint and an exit code a script can trust:
//! 0 success, 1 failure, 2 bad usage, 3 `reel diff` found differences or `reel search` nothing.

mod cli;
mod cmd;
mod hints;
mod output;

use clap::Parser;

use crate::cli::{Cli, Verb};

fn main() {
    // A sandbox monitor (reel re-run by `reel restore checkpoint`): nothing else of the CLI,
    // and no thread before it has its own mount namespace.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == reel_core::sandbox::MONITOR_ARG)
    {
        init_tracing(0);
        std::process::exit(reel_core::sandbox::monitor_main(&args[2..]));
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    init_tracing(cli.verbose);
    process_settings();
    let result = run(&cli);
    if let Err(err) = result {
        if hints::is_status(&err) {
            std::process::exit(hints::exit_code(&err));
        }
        eprintln!("error: {}", hints::describe(&err));
        if let Some(hint) = hints::hint(&err) {
            eprintln!("hint: {hint}");
        }
        std::process::exit(hints::exit_code(&err));
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    if cli.version {
        return cmd::version::run(cli);
    }
    match &cli.command {
        None => {
            use clap::CommandFactory;
            let mut c = Cli::command();
            c.print_help()?;
            println!();
            Err(hints::usage(
                "no verb given: try `reel get workloads -A` or `reel --help`",
            ))
        }
        Some(Verb::Get(cli::GetNoun::Capabilities(a))) => cmd::capabilities::run(cli, a),
        Some(Verb::Get(cli::GetNoun::Workloads(a))) => cmd::workloads::run(cli, a),
        Some(Verb::Create(cli::CreateNoun::Checkpoint(a))) => cmd::create::run(cli, a),
        Some(Verb::List(cli::ListNoun::Checkpoint(a))) => cmd::list::run(cli, a),
        Some(Verb::Delete(cli::DeleteNoun::Checkpoint(a))) => cmd::delete::run(cli, a),
        Some(Verb::Export(cli::ExportNoun::Checkpoint(a))) => cmd::export::run(cli, a),
        Some(Verb::Verify(cli::VerifyNoun::Checkpoint(a))) => cmd::verify::run(cli, a),
        Some(Verb::Inspect(cli::InspectNoun::Checkpoint(a))) => cmd::inspect::run(cli, a),
        Some(Verb::Restore(cli::RestoreNoun::Checkpoint(a))) => cmd::restore::run(cli, a),
        Some(Verb::List(cli::ListNoun::Sandbox(a))) => cmd::sandbox::list(a),
        Some(Verb::Stop(cli::StopNoun::Sandbox(a))) => cmd::sandbox::stop(a),
        Some(Verb::Resume(cli::ResumeNoun::Sandbox(a))) => cmd::sandbox::resume(a),
        Some(Verb::Delete(cli::DeleteNoun::Sandbox(a))) => cmd::sandbox::delete(a),
        Some(Verb::Extract(cli::ExtractNoun::Checkpoint(a))) => cmd::extract::run(cli, a),
        Some(Verb::Diff(cli::DiffNoun::Checkpoint(a))) => cmd::diff::run(cli, a),
        Some(Verb::Search(cli::SearchNoun::Checkpoint(a))) => cmd::search::run(cli, a),
    }
}

/// What the whole process needs, set once by the binary (the library never does):
/// * SIGINT and SIGTERM thaw what reel froze and stop what it writes cleanly
///   (`reel_core::signals`).
/// * The allocator returns large buffers to the system at once
///   (`reel_core::export::return_large_buffers`), so reel's peak memory is what it uses.
fn process_settings() {
    if let Err(e) = reel_core::signals::install() {
        eprintln!("reel: warning: cannot install the SIGINT/SIGTERM handlers: {e}");
    }
    reel_core::export::return_large_buffers();
}

/// Logs go to stderr; `-v` raises the level, `RUST_LOG` overrides it.
fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
