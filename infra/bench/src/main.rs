//! `tally-bench`: runs Tally's benchmarks and prints one Markdown table per part, with the
//! machine and date beside the figures. See the README's "Performance" section.
//!
//! ```text
//! cargo run --release -p tally-bench -- all      # every part (cold start builds the functions)
//! cargo run --release -p tally-bench -- votes    # or some: votes, live, handlers, render, cold-start
//!   --runs N      runs per figure (medians are over these)
//!   --quick       one run of smaller workloads, to check the bench itself works
//!   --no-build    cold start: use the release binaries already built
//!   --sustained S votes: instead of the levels, first ballots without pause for S seconds,
//!                 reported minute by minute (the last minute against the first)
//!   --clients N   votes --sustained: concurrent clients (default 100)
//!   --disk        votes, render: the engines' data on disk (a temporary folder), as the dev
//!                 server keeps it, instead of in memory
//! ```

use std::io::Write;

use std::time::{Duration, Instant};

use tally_bench::report::Section;
use tally_bench::{coldstart, handlers, live, machine, render, sustained, votes};

const USAGE: &str = "usage: tally-bench <all|votes|live|handlers|render|cold-start> [--runs N] [--quick] \
     [--no-build] [--sustained SECONDS] [--clients N] [--disk]";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Votes,
    Live,
    Handlers,
    Render,
    ColdStart,
}

#[derive(Debug)]
struct Options {
    parts: Vec<Part>,
    runs: Option<usize>,
    quick: bool,
    build: bool,
    /// `--sustained`: how long the votes part loads the stack without pause.
    sustained: Option<Duration>,
    clients: usize,
    disk: bool,
}

fn main() {
    // The dev server's allocator and its settings, so that the bench's stack runs as
    // `tally-dev` does.
    tally_alloc::tune();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        // The child process of the render benchmark: one job, figures on stdout.
        Some("render-job") => render_job(&args[1..]),
        _ => parse(&args).and_then(|options| bench(&options)),
    };
    if let Err(e) = outcome {
        eprintln!("tally-bench: {e}");
        std::process::exit(1);
    }
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        parts: Vec::new(),
        runs: None,
        quick: false,
        build: true,
        sustained: None,
        clients: 100,
        disk: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "all" => options.parts.extend([
                Part::Votes,
                Part::Live,
                Part::Handlers,
                Part::Render,
                Part::ColdStart,
            ]),
            "votes" => options.parts.push(Part::Votes),
            "live" => options.parts.push(Part::Live),
            "handlers" => options.parts.push(Part::Handlers),
            "render" => options.parts.push(Part::Render),
            "cold-start" => options.parts.push(Part::ColdStart),
            "--quick" => options.quick = true,
            "--no-build" => options.build = false,
            "--runs" => {
                let n = args
                    .next()
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|n| (1..=100).contains(n))
                    .ok_or("--runs takes a number from 1 to 100")?;
                options.runs = Some(n);
            }
            "--sustained" => {
                let seconds = args
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .filter(|n| (10..=86_400).contains(n))
                    .ok_or("--sustained takes a number of seconds from 10 to 86400")?;
                options.sustained = Some(Duration::from_secs(seconds));
            }
            "--clients" => {
                options.clients = args
                    .next()
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or("--clients takes a number from 1 to 10000")?;
            }
            "--disk" => options.disk = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if options.parts.is_empty() {
        return Err(USAGE.into());
    }
    options.parts.dedup();
    Ok(options)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn bench(options: &Options) -> Result<(), String> {
    let machine = machine::Machine::detect();
    let runs = |default: usize| {
        options
            .runs
            .unwrap_or(if options.quick { 1 } else { default })
    };
    let mut sections = Vec::new();
    let mut took = Section::new(
        "Time each part took",
        &["part", "wall time", "load average before → after"],
    );
    let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    eprintln!("tally-bench: {}", machine.summary());
    for part in &options.parts {
        let started = Instant::now();
        let load_before = machine::load_average();
        let (name, section) = match part {
            Part::Votes if options.sustained.is_some() => {
                let asked = sustained::Sustained {
                    clients: options.clients,
                    duration: options.sustained.unwrap_or_default(),
                    on_disk: options.disk,
                };
                let result = runtime()?.block_on(sustained::run(asked))?;
                ("votes sustained", sustained::section(&result))
            }
            Part::Votes => {
                let requests = |n| if options.quick { n / 10 } else { n };
                let levels = [
                    votes::Level {
                        clients: 100,
                        requests: requests(5_000),
                    },
                    votes::Level {
                        clients: 1_000,
                        requests: requests(10_000),
                    },
                ];
                let results = runtime()?.block_on(votes::run(&levels, runs(5), options.disk))?;
                ("votes", votes::section(&results))
            }
            Part::Live => {
                let asked = live::Asked {
                    watchers: if options.quick { 100 } else { 1_000 },
                    ballots: if options.quick { 50 } else { 300 },
                    rate: 20,
                };
                let result = runtime()?.block_on(live::run(asked))?;
                ("live", live::section(&result))
            }
            Part::Handlers => {
                let n = runs(7);
                ("handlers", handlers::section(&handlers::run(n)?, n))
            }
            Part::Render => {
                let guests = if options.quick { 1_000 } else { 10_000 };
                let result = render::run(runs(5), runs(3), guests, options.disk)?;
                ("render", render::section(&result))
            }
            Part::ColdStart => {
                let results = runtime()?.block_on(coldstart::run(runs(10), options.build))?;
                ("cold-start", coldstart::section(&results))
            }
        };
        sections.push(section);
        took.row(vec![
            name.into(),
            format_duration(started.elapsed()),
            format!("{load_before} → {}", machine::load_average()),
        ]);
    }
    took.note(
        "The 1-minute load average around each part: above the core count, other work was \
         competing for the CPU and the figures above are pessimistic.",
    );
    sections.push(took);
    print_report(&machine, &command, &sections)
}

fn format_duration(d: Duration) -> String {
    let seconds = d.as_secs_f64();
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else {
        format!("{:.1} min", seconds / 60.0)
    }
}

/// The report on stdout (progress went to stderr), ready to paste into the README.
fn print_report(
    machine: &machine::Machine,
    command: &str,
    sections: &[Section],
) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    let mut text = format!(
        "### Measured {}\n\nCommand: `cargo run --release -p tally-bench -- {command}`\n\n\
         Machine: {}\n\n",
        machine.date,
        machine.summary()
    );
    for section in sections {
        text.push_str(&section.markdown());
        text.push('\n');
    }
    out.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    Ok(())
}

/// `tally-bench render-job --guests N [--disk]`: the render benchmark's child process.
fn render_job(args: &[String]) -> Result<(), String> {
    let usage = "usage: tally-bench render-job --guests N [--disk]";
    let (guests, on_disk) = match args {
        [flag, n, rest @ ..] if flag == "--guests" => (n, rest),
        _ => return Err(usage.into()),
    };
    let guests = guests
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or("--guests takes a number from 1 to 10000")?;
    let on_disk = match on_disk {
        [] => false,
        [flag] if flag == "--disk" => true,
        _ => return Err(usage.into()),
    };
    runtime()?.block_on(render::job_child(guests, on_disk))
}
