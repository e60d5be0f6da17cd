//! `skiff jepsen sim`: runs seeds, prints failures as they happen and a summary, and fails
//! (non-zero exit) when any seed is not linearizable, stuck or panicked.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};

use super::{
    default_threads, history_summary, run_seed, run_seeds, Mode, SeedReport, SimConfig, Summary,
    DEFAULT_CLIENTS, DEFAULT_KEYS, DEFAULT_OPS,
};

/// Deterministic simulation of a Skiff raft cluster under faults, checked for
/// linearizability.
#[derive(Clone, Debug, clap::Args)]
pub struct SimArgs {
    /// Seeds to run: `--first-seed` .. `--first-seed + N`.
    #[arg(long, default_value_t = 200)]
    pub seeds: u64,
    #[arg(long, default_value_t = 0)]
    pub first_seed: u64,
    /// Run this one seed only; prints its trace hash and a summary of its history.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Voting members.
    #[arg(long, default_value_t = 3, value_parser = parse_members)]
    pub members: usize,
    /// Operations per seed (besides the final reads).
    #[arg(long, default_value_t = DEFAULT_OPS)]
    pub ops: usize,
    #[arg(long, default_value_t = DEFAULT_CLIENTS)]
    pub clients: usize,
    #[arg(long, default_value_t = DEFAULT_KEYS)]
    pub keys: usize,
    /// Break the cluster on purpose, to see the checker catch it.
    #[arg(long, value_enum, default_value_t = Mode::Safe)]
    pub mode: Mode,
    /// No nemesis, a reliable network.
    #[arg(long)]
    pub no_faults: bool,
    /// Let members apply entries their disks do not hold durably, leaving the verdict to
    /// the checker (see `--mode early-persisted`).
    #[arg(long)]
    pub no_durability_check: bool,
    /// With `--seed`: write the history here (`history.jsonl` format).
    #[arg(long, requires = "seed")]
    pub history: Option<PathBuf>,
    /// Threads running seeds (default: the machine's parallelism).
    #[arg(long)]
    pub threads: Option<usize>,
}

fn parse_members(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ (3 | 5)) => Ok(n),
        _ => Err(format!("members must be 3 or 5, not {s:?}")),
    }
}

impl SimArgs {
    fn config(&self, seed: u64) -> SimConfig {
        SimConfig {
            members: self.members,
            ops: self.ops,
            clients: self.clients,
            keys: self.keys,
            mode: self.mode,
            faults: !self.no_faults,
            check_durability: !self.no_durability_check,
            ..SimConfig::new(seed)
        }
    }

    /// The command that replays `seed` with these parameters.
    fn replay_command(&self, seed: u64) -> String {
        let mut cmd = format!(
            "skiff jepsen sim --seed {seed} --members {} --ops {}",
            self.members, self.ops
        );
        if self.clients != DEFAULT_CLIENTS {
            cmd.push_str(&format!(" --clients {}", self.clients));
        }
        if self.keys != DEFAULT_KEYS {
            cmd.push_str(&format!(" --keys {}", self.keys));
        }
        if self.mode != Mode::Safe {
            cmd.push_str(&format!(
                " --mode {}",
                clap::ValueEnum::to_possible_value(&self.mode)
                    .map_or_else(String::new, |v| v.get_name().to_owned())
            ));
        }
        if self.no_faults {
            cmd.push_str(" --no-faults");
        }
        if self.no_durability_check {
            cmd.push_str(" --no-durability-check");
        }
        cmd
    }
}

pub fn main(args: SimArgs) -> anyhow::Result<()> {
    args.config(0).validate().map_err(anyhow::Error::msg)?;
    match args.seed {
        Some(seed) => one(&args, seed),
        None => many(&args),
    }
}

fn one(args: &SimArgs, seed: u64) -> anyhow::Result<()> {
    let report = run_seed(&args.config(seed));
    println!(
        "seed {seed}: trace hash {:016x} ({} records)",
        report.trace_hash, report.trace_records
    );
    println!("{}", report.stats);
    println!("{}", history_summary(&report.history));
    println!("verdict: {}", report.verdict);
    if let Some(path) = &args.history {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        report.history.write_jsonl(std::io::BufWriter::new(file))?;
        println!("history written to {}", path.display());
    }
    if report.verdict.is_failure() {
        bail!("seed {seed} failed");
    }
    Ok(())
}

fn many(args: &SimArgs) -> anyhow::Result<()> {
    let seeds: Vec<u64> = (args.first_seed..args.first_seed.saturating_add(args.seeds)).collect();
    let threads = args.threads.unwrap_or_else(default_threads);
    let started = Instant::now();
    let print_failure = |report: &SeedReport| {
        if report.verdict.is_failure() {
            println!("seed {}: {}", report.config.seed, report.verdict);
            println!("  replay: {}", args.replay_command(report.config.seed));
        }
    };
    let reports = run_seeds(&args.config(0), &seeds, threads, print_failure);
    let elapsed = started.elapsed();
    let summary = Summary::of(&reports);
    println!("{summary}");
    println!(
        "{:.1} s on {threads} threads, {:.1} seeds/s",
        elapsed.as_secs_f64(),
        reports.len() as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    if summary.failures() > 0 {
        let failed: Vec<String> = reports
            .iter()
            .filter(|r| r.verdict.is_failure())
            .map(|r| r.config.seed.to_string())
            .collect();
        bail!(
            "{} of {} seeds failed: {}",
            summary.failures(),
            reports.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    fn args(argv: &[&str]) -> SimArgs {
        let argv = std::iter::once("sim").chain(argv.iter().copied());
        Cli::try_parse_from(argv).unwrap().sim
    }

    #[test]
    fn main_passes_safe_seeds_and_fails_on_a_violation() {
        main(args(&[
            "--seeds",
            "4",
            "--first-seed",
            "100",
            "--threads",
            "2",
        ]))
        .unwrap();
        let err = main(args(&["--seeds", "10", "--mode", "stale-reads"])).unwrap_err();
        assert!(err.to_string().contains("seeds failed"), "{err}");
    }

    #[test]
    fn one_seed_writes_its_history() {
        let dir = std::env::temp_dir().join(format!("skiff-sim-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        main(args(&[
            "--seed",
            "3",
            "--members",
            "5",
            "--history",
            path.to_str().unwrap(),
        ]))
        .unwrap();
        let history = crate::history::History::read_jsonl(std::io::BufReader::new(
            std::fs::File::open(&path).unwrap(),
        ))
        .unwrap();
        assert!(history.len() > 100, "{} lines", history.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flags_parse_with_defaults_and_members_is_3_or_5() {
        let cli = Cli::try_parse_from(["sim"]).unwrap();
        assert_eq!(
            (cli.sim.seeds, cli.sim.seed, cli.sim.members, cli.sim.ops),
            (200, None, 3, DEFAULT_OPS)
        );
        let cli = Cli::try_parse_from([
            "sim",
            "--seed",
            "7",
            "--members",
            "5",
            "--mode",
            "stale-reads",
        ])
        .unwrap();
        assert_eq!(
            (cli.sim.seed, cli.sim.members, cli.sim.mode),
            (Some(7), 5, Mode::StaleReads)
        );
        assert!(Cli::try_parse_from(["sim", "--members", "4"]).is_err());
        assert!(
            Cli::try_parse_from(["sim", "--history", "h.jsonl"]).is_err(),
            "--history needs --seed"
        );
        assert_eq!(
            cli.sim.replay_command(7),
            format!("skiff jepsen sim --seed 7 --members 5 --ops {DEFAULT_OPS} --mode stale-reads")
        );
    }
}
