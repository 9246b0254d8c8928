//! The `mnistlab` command: REPL, script runner, data fetcher.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use clap::{Parser, Subcommand, ValueEnum};

use mnistlab::data;
use mnistlab::front::{repl, script, terminal::Terminal};
use mnistlab::session::Session;

#[derive(Parser)]
#[command(
    name = "mnistlab",
    version,
    about = "Prepare MNIST-family datasets and train small networks, one statement at a time"
)]
struct Cli {
    /// Folder where images (plots, sample grids) are written.
    #[arg(long, global = true, default_value = "mnistlab-out")]
    out: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Replay a .lab script; stops at the first error.
    Run {
        /// The script.
        file: PathBuf,
    },
    /// Get a dataset into the cache (official mirrors first, checksums verified).
    Fetch {
        /// Which dataset.
        dataset: DatasetArg,
    },
    /// Print the statement reference as Markdown (it stands in the README).
    Reference,
}

#[derive(Clone, Copy, ValueEnum)]
enum DatasetArg {
    Mnist,
    FashionMnist,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut session = Session::new();
    let mut terminal = Terminal::new(cli.out.clone());
    let flag = session.interrupt_flag();
    // Ctrl-C while a statement runs stops it at the next safe point; the REPL reads its own Ctrl-C.
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    match cli.command {
        Some(Command::Run { file }) => match std::fs::read_to_string(&file) {
            Ok(source) => report(script::run(&mut session, &source, Some(&file), &mut terminal)),
            Err(e) => {
                eprintln!("error: {}: {e}", file.display());
                ExitCode::FAILURE
            }
        },
        Some(Command::Fetch { dataset }) => {
            let named = match dataset {
                DatasetArg::Mnist => data::fetch::Named::Mnist,
                DatasetArg::FashionMnist => data::fetch::Named::FashionMnist,
            };
            match data::fetch::fetch(named, &mut |line: &str| println!("{line}")) {
                Ok(dir) => {
                    println!("ready: {}", dir.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Reference) => {
            print!("{}", mnistlab::lang::docs::markdown_reference());
            ExitCode::SUCCESS
        }
        None if std::io::stdin().is_terminal() => match repl::run(&mut session, &mut terminal) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        None => {
            let mut source = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut source) {
                eprintln!("error: reading stdin: {e}");
                return ExitCode::FAILURE;
            }
            report(script::run(&mut session, &source, Some(std::path::Path::new("<stdin>")), &mut terminal))
        }
    }
}

fn report(result: Result<(), mnistlab::session::RunError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
