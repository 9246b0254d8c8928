//! The `mnistlab` command: REPL, script runner, data fetcher.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};

use mnistlab::data;
use mnistlab::data::fetch::Named;
use mnistlab::front::kernel::{self, install};
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
        #[arg(value_parser = dataset_parser())]
        dataset: Named,
    },
    /// Print the statement reference as Markdown (it stands in the README).
    Reference,
    /// Run as a Jupyter kernel, or install / uninstall its kernelspec.
    #[command(args_conflicts_with_subcommands = true)]
    Kernel {
        /// The connection file Jupyter passes to the kernel.
        #[arg(long)]
        connection_file: Option<PathBuf>,
        #[command(subcommand)]
        action: Option<KernelAction>,
    },
}

#[derive(Subcommand)]
enum KernelAction {
    /// Install the kernelspec (default: the user's Jupyter data folder).
    Install {
        #[command(flatten)]
        location: LocationArgs,
    },
    /// Remove the kernelspec.
    Uninstall {
        #[command(flatten)]
        location: LocationArgs,
    },
}

#[derive(clap::Args)]
#[group(multiple = false)]
struct LocationArgs {
    /// The user's Jupyter data folder (~/.local/share/jupyter on Linux).
    #[arg(long)]
    user: bool,
    /// The active virtual environment ($VIRTUAL_ENV or $CONDA_PREFIX)/share/jupyter.
    #[arg(long)]
    sys_prefix: bool,
    /// PREFIX/share/jupyter.
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<PathBuf>,
}

impl LocationArgs {
    fn location(&self) -> install::Location {
        match (&self.prefix, self.sys_prefix) {
            (Some(prefix), _) => install::Location::Prefix(prefix.clone()),
            (None, true) => install::Location::SysPrefix,
            (None, false) => install::Location::User,
        }
    }
}

/// The dataset names of [`Named::ALL`], shown as the possible values and parsed with
/// [`Named`]'s `FromStr`; other spellings are refused with the list of names.
fn dataset_parser() -> impl TypedValueParser<Value = Named> {
    PossibleValuesParser::new(Named::ALL.map(Named::as_str)).try_map(|name| name.parse::<Named>())
}

fn main() -> ExitCode {
    mnistlab::kernels::keep_candle_pool_single_threaded();
    mnistlab::kernels::keep_freed_memory();
    let cli = Cli::parse();
    if let Some(Command::Kernel { connection_file, action }) = &cli.command {
        return kernel_command(connection_file.as_deref(), action.as_ref());
    }
    let mut session = Session::new();
    // `help` wraps to the terminal's width (80 when stdout is no terminal).
    if let Some(columns) = mnistlab::front::terminal::terminal_width(std::io::stdout().is_terminal()) {
        session.set_text_width(columns);
    }
    let mut terminal = Terminal::new(cli.out.clone());
    let flag = session.interrupt_flag();
    // Ctrl-C while a statement runs stops it at the next safe point; the REPL reads its own Ctrl-C.
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    match cli.command {
        Some(Command::Run { file }) => match mnistlab::budget::read_text(&file) {
            Ok(source) => {
                let result = script::run(&mut session, &source, Some(&file), &mut terminal);
                report(result, &terminal)
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Fetch { dataset }) => match data::fetch::fetch(dataset, &mut |line: &str| println!("{line}")) {
            Ok(dir) => {
                println!("ready: {}", dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Kernel { .. }) => unreachable!("handled above"),
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
            let mut bytes = Vec::new();
            let limit = mnistlab::budget::limit();
            if let Err(e) = std::io::stdin().take(limit.saturating_add(1)).read_to_end(&mut bytes) {
                eprintln!("error: reading stdin: {e}");
                return ExitCode::FAILURE;
            }
            if bytes.len() as u64 > limit {
                eprintln!("error: <stdin>: more than the memory budget of {}", mnistlab::budget::bytes(limit));
                return ExitCode::FAILURE;
            }
            let source = match String::from_utf8(bytes) {
                Ok(source) => source,
                Err(e) => {
                    let offset = e.utf8_error().valid_up_to();
                    eprintln!("error: <stdin>: not UTF-8 text: invalid byte at byte offset {offset}");
                    return ExitCode::FAILURE;
                }
            };
            let result = script::run(&mut session, &source, Some(std::path::Path::new("<stdin>")), &mut terminal);
            report(result, &terminal)
        }
    }
}

/// `mnistlab kernel …`: serve a connection file, or install / uninstall the kernelspec.
fn kernel_command(connection_file: Option<&std::path::Path>, action: Option<&KernelAction>) -> ExitCode {
    let result = match (connection_file, action) {
        (Some(file), _) => kernel::run(file).map_err(|e| e.to_string()),
        (None, Some(KernelAction::Install { location })) => std::env::current_exe()
            .and_then(|exe| exe.canonicalize())
            .map_err(|e| format!("cannot find this executable's path: {e}"))
            .and_then(|exe| install::install(&location.location(), &exe).map_err(|e| e.to_string()))
            .map(|dir| println!("installed the mnistlab kernelspec in {}", dir.display())),
        (None, Some(KernelAction::Uninstall { location })) => install::uninstall(&location.location())
            .map_err(|e| e.to_string())
            .map(|dir| println!("removed the mnistlab kernelspec from {}", dir.display())),
        (None, None) => {
            Err("`mnistlab kernel` needs --connection-file FILE (Jupyter passes it), or `install` / `uninstall`".into())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A script's exit status: a failure when a statement failed or a picture could not be written.
fn report(result: Result<(), mnistlab::session::RunError>, terminal: &Terminal) -> ExitCode {
    match result {
        Ok(()) if terminal.write_failed() => ExitCode::FAILURE,
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            mnistlab::front::terminal::print_error(&e);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn fetched(args: &[&str]) -> Result<Named, clap::Error> {
        match Cli::try_parse_from(args)?.command {
            Some(Command::Fetch { dataset }) => Ok(dataset),
            _ => panic!("not a fetch: {args:?}"),
        }
    }

    #[test]
    fn fetch_takes_the_dataset_names() {
        Cli::command().debug_assert();
        assert_eq!(fetched(&["mnistlab", "fetch", "mnist"]).unwrap(), Named::Mnist);
        assert_eq!(fetched(&["mnistlab", "fetch", "fashion-mnist"]).unwrap(), Named::FashionMnist);
        // Only the names themselves, as before: the error lists them.
        for other in ["fashion", "MNIST", "cifar"] {
            let e = fetched(&["mnistlab", "fetch", other]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue, "{other}");
            assert!(e.to_string().contains("[possible values: mnist, fashion-mnist]"), "{e}");
        }
        let help = Cli::command().find_subcommand_mut("fetch").unwrap().render_help().to_string();
        assert!(help.contains("<DATASET>  Which dataset [possible values: mnist, fashion-mnist]"), "{help}");
    }
}
