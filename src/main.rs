//! `ruleop` command line: parses arguments and dispatches to the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// Validate rule files and directories, against their parents' CRDs when given.
    Check(cli::CheckArgs),
    /// Plan one resource offline: print its child manifests, then the status. Exits
    /// non-zero when the plan fails (the status printed says why).
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
    /// Run rule test files offline (the same planner as the controller).
    Test {
        /// Test files or directories (default: rules/); directories are searched for
        /// `tests/*.yaml` and `*.test.yaml`.
        paths: Vec<PathBuf>,
        /// Rewrite golden files that differ instead of failing.
        #[arg(long)]
        update: bool,
    },
    /// Show what a rule (a new version of it) would change on the live cluster, writing
    /// nothing. Exit status 0: no changes, 1: changes, 2: error.
    Diff(cli::DiffArgs),
    /// Look at and steer a rule's staged rollout: status, pause, resume, undo.
    Rollout(cli::RolloutArgs),
    /// Print the parent's CustomResourceDefinition generated from the rule's `spec.crd`.
    Crd {
        /// The rule file.
        #[arg(long)]
        rule: PathBuf,
    },
    /// Print a ValidatingAdmissionPolicy and its binding enforcing the rule's
    /// `spec.validate[].cel` checks at admission (for parents without a generated CRD).
    Policy(cli::PolicyArgs),
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
        /// The operator's own ServiceAccount (`NAMESPACE/NAME`), granted to impersonate the
        /// rules' `spec.serviceAccount`s; its namespace is theirs when they name none.
        #[arg(
            long,
            value_name = "NAMESPACE/NAME",
            default_value = "ruleop-system/ruleop"
        )]
        service_account: String,
    },
    /// Run the controller against the cluster of the current kubeconfig.
    Run(ruleop::run::RunArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut out = std::io::stdout().lock();
    let result = match args.command {
        Command::Check(mut check_args) => {
            if check_args.paths.is_empty() {
                check_args.paths.push(PathBuf::from("rules"));
            }
            cli::check(&check_args, &mut out)
        }
        Command::Render {
            rule,
            resource,
            observed,
            crd,
            output,
            now,
        } => cli::render_with_crds(&rule, &resource, &observed, &crd, now, output, &mut out)
            .and_then(cli::plan_succeeded),
        Command::Test { mut paths, update } => {
            if paths.is_empty() {
                paths.push(PathBuf::from("rules"));
            }
            cli::test(&paths, update, &mut out)
        }
        Command::Crd { rule } => cli::crd(&rule, &mut out),
        Command::Policy(policy_args) => cli::policy(&policy_args, &mut out),
        Command::Schema => cli::schema(&mut out),
        Command::Rbac {
            mut rules,
            name,
            service_account,
        } => {
            if rules.is_empty() {
                rules.push(PathBuf::from("rules"));
            }
            cli::rbac(&rules, &name, &service_account, &mut out)
        }
        Command::Diff(diff_args) => return run_diff(&diff_args, &mut out),
        Command::Rollout(rollout_args) => tokio::runtime::Runtime::new()
            .map_err(|e| cli::CliError::Cluster(format!("cannot start the async runtime: {e}")))
            .and_then(|rt| rt.block_on(cli::rollout(&rollout_args, &mut out))),
        Command::Run(run_args) => {
            drop(out);
            return run_controller(run_args);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Not `eprintln!`: it panics when stderr is a closed pipe.
            let _ = writeln!(std::io::stderr(), "ruleop: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Exit status like `kubectl diff`: 0 no changes, 1 changes, 2 an error.
fn run_diff(args: &cli::DiffArgs, out: &mut impl std::io::Write) -> ExitCode {
    let result = tokio::runtime::Runtime::new()
        .map_err(|e| cli::CliError::Cluster(format!("cannot start the async runtime: {e}")))
        .and_then(|rt| rt.block_on(cli::diff(args, out)));
    match result {
        Ok(false) => ExitCode::SUCCESS,
        Ok(true) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ruleop: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_controller(args: ruleop::run::RunArgs) -> ExitCode {
    let runtime = match ruleop::run::runtime(args.threads) {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "ruleop: cannot start the async runtime: {e}"
            );
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(ruleop::run::run(args));
    // Tasks still running (watches, the metrics server) are dropped, not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    // Through the log writer, so a full or closed stderr cannot block or fail the exit.
    let log = ruleop::telemetry::logwriter::stderr();
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log.line(format!("ruleop: {e}\n").as_bytes());
            ExitCode::FAILURE
        }
    };
    log.flush(Duration::from_secs(1));
    code
}
