//! `ruleop` command line: parses arguments and dispatches to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ruleop::cli::{self, Format};

#[derive(Parser)]
#[command(
    name = "ruleop",
    version,
    about = "A Kubernetes operator driven by YAML rule files"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate rule files and directories.
    Check {
        /// Rule files or directories (default: rules/).
        paths: Vec<PathBuf>,
    },
    /// Plan one resource offline: print its child manifests, then the status.
    Render {
        /// The rule file.
        #[arg(long)]
        rule: PathBuf,
        /// The parent resource (YAML).
        #[arg(long)]
        resource: PathBuf,
        /// Objects as observed in the cluster (YAML, repeatable).
        #[arg(long)]
        observed: Vec<PathBuf>,
        /// CustomResourceDefinition files (repeatable): the parent's CRD schema defaults
        /// are applied to the resource first, as the API server would.
        #[arg(long)]
        crd: Vec<PathBuf>,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "yaml")]
        output: Format,
        /// The time to plan at (RFC 3339), for reproducible output.
        #[arg(long)]
        now: Option<jiff::Timestamp>,
    },
    /// Print the JSON Schema of the rule format.
    Schema,
    /// Print the least-privilege ClusterRole the rule files need.
    Rbac {
        /// Rule files or directories (default: rules/).
        #[arg(long)]
        rules: Vec<PathBuf>,
        /// Name of the ClusterRole.
        #[arg(long, default_value = "ruleop")]
        name: String,
    },
    /// Run the controller against the cluster of the current kubeconfig.
    Run(ruleop::run::RunArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut out = std::io::stdout().lock();
    let result = match args.command {
        Command::Check { mut paths } => {
            if paths.is_empty() {
                paths.push(PathBuf::from("rules"));
            }
            cli::check(&paths, &mut out)
        }
        Command::Render {
            rule,
            resource,
            observed,
            crd,
            output,
            now,
        } => cli::render_with_crds(&rule, &resource, &observed, &crd, now, output, &mut out)
            .map(|_| ()),
        Command::Schema => cli::schema(&mut out),
        Command::Rbac { mut rules, name } => {
            if rules.is_empty() {
                rules.push(PathBuf::from("rules"));
            }
            cli::rbac(&rules, &name, &mut out)
        }
        Command::Run(run_args) => {
            drop(out);
            return run_controller(run_args);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ruleop: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_controller(args: ruleop::run::RunArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ruleop: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ruleop::run::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ruleop: {e}");
            ExitCode::FAILURE
        }
    }
}
