//! What the figures were measured on: a benchmark without its machine and date is a claim
//! nobody can check.

use std::process::Command;

/// The machine, toolchain and revision a report was measured on.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu_model: String,
    /// Logical CPUs this process may use.
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub date: String,
    pub rustc: String,
    pub revision: String,
}

impl Machine {
    /// Reads `/proc` (Linux) and asks `rustc` and `git`; anything unavailable reads `unknown`.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| format!("Linux {}", s.trim()))
            .unwrap_or_else(|_| std::env::consts::OS.to_owned());
        let date = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .unwrap_or_else(|_| "unknown".into());
        let rustc = command_line("rustc", &["--version"]).unwrap_or_else(|| "unknown".into());
        let revision = match command_line("git", &["rev-parse", "--short", "HEAD"]) {
            Some(commit) => {
                // A dirty tree means the figures belong to uncommitted code: say so.
                let dirty = command_line("git", &["status", "--porcelain", "--untracked-files=no"])
                    .is_some_and(|s| !s.is_empty());
                if dirty {
                    format!("{commit} (with uncommitted changes)")
                } else {
                    commit
                }
            }
            None => "unknown".into(),
        };
        Self {
            cpu_model,
            cores,
            memory_gib: memory_kib / (1024.0 * 1024.0),
            kernel,
            date,
            rustc,
            revision,
        }
    }

    /// One line for the report's heading.
    pub fn summary(&self) -> String {
        format!(
            "{} logical cores ({}), {:.1} GiB RAM, {}, {}; revision {}; measured {}",
            self.cores,
            self.cpu_model,
            self.memory_gib,
            self.kernel,
            self.rustc,
            self.revision,
            self.date
        )
    }
}

/// The first line a command prints, when it runs (in the repository) and succeeds.
fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program)
        .current_dir(crate::coldstart::repository())
        .args(args)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Some(text.lines().next().unwrap_or_default().trim().to_owned())
}

/// The 1-minute load average (`/proc/loadavg`): above the core count, something else was
/// competing for the CPU while the bench ran, and its figures are pessimistic.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// This process's resident set size now and at its peak, in KiB (`VmRSS`, `VmHWM`).
pub fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
