//! `ruleop test`: runs rule test files and prints a line per case, with readable diffs.

use std::io::Write;
use std::path::PathBuf;

use super::CliError;
use ruleop_plan::testkit;

/// Runs the test files at `paths` (files, or directories searched for `tests/*.yaml` and
/// `*.test.yaml`); fails when a case fails, a file cannot run, or there is nothing to run.
pub fn test(paths: &[PathBuf], update: bool, out: &mut impl Write) -> Result<(), CliError> {
    let files: Vec<PathBuf> = paths.iter().flat_map(|p| testkit::test_files(p)).collect();
    if files.is_empty() {
        return Err(CliError::Input {
            path: paths.first().cloned().unwrap_or_default(),
            message: "no test files (tests/*.yaml or *.test.yaml)".into(),
        });
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in &files {
        let results = match testkit::run_file(file, update) {
            Ok(r) => r,
            Err(e) => {
                writeln!(out, "ERROR {e}")?;
                failed += 1;
                continue;
            }
        };
        for r in results {
            for u in &r.updated {
                writeln!(out, "wrote {}", u.display())?;
            }
            if r.failures.is_empty() {
                passed += 1;
                writeln!(out, "ok    {}: {}", r.location, r.name)?;
            } else {
                failed += 1;
                writeln!(out, "FAIL  {}: {}", r.location, r.name)?;
                for f in &r.failures {
                    for (i, line) in f.lines().enumerate() {
                        writeln!(out, "{}{line}", if i == 0 { "  " } else { "    " })?;
                    }
                }
            }
        }
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    if failed > 0 {
        Err(CliError::TestsFailed(failed))
    } else {
        Ok(())
    }
}
