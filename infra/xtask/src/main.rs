//! Tally's developer commands in one place: `cargo xtask <recipe>` (the alias lives in
//! `.cargo/config.toml`). Each recipe installs the tools it needs when they are missing, then
//! runs the same commands the README describes; `ci` runs what must hold for a change to land,
//! and `.ci/run` is a thin wrapper around it.
//!
//! Standard library only, so that the runner itself builds in seconds.

// Printing to stdout is what a task runner is for; the workspace lint guards library code.
#![allow(clippy::print_stdout)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

const RECIPES: &[(&str, &str)] = &[
    ("run [cargo args]", "the dev server: cargo run -p tally-dev"),
    (
        "test [cargo test args]",
        "cargo test --workspace, then one summary line",
    ),
    (
        "moto [cargo test args]",
        "the moto cross-check: TALLY_MOTO=1 cargo test --workspace (pip installs moto if missing)",
    ),
    (
        "contract",
        "openapi-spec-validator, openapi-typescript + tsc, schemathesis --checks all (pip/npm install them)",
    ),
    (
        "browser",
        "the pages in headless Chromium (node tests/browser/run.mjs; apt installs what is missing)",
    ),
    (
        "bench [what]",
        "cargo run --release -p tally-bench -- <what, default all>",
    ),
    (
        "lambda-build",
        "cargo lambda build --release --arm64, then each function's stripped and zipped size",
    ),
    (
        "ci",
        "what .ci/run does: tools, fmt, clippy, template, moto tests, contract, browser",
    ),
];

/// A failed step: its name and why, for the one line printed before the exit.
struct Failure(String);

type Step = Result<(), Failure>;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let recipe = args
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rest: Vec<OsString> = args.collect();
    let outcome = match recipe.as_str() {
        "run" => run(&rest),
        "test" => test(&rest, false),
        "moto" => ensure_moto().and_then(|()| test(&rest, true)),
        "contract" => contract(),
        "browser" => browser(),
        "bench" => bench(&rest),
        "lambda-build" => lambda_build(),
        "ci" => ci(),
        "" | "help" | "-h" | "--help" => {
            help();
            Ok(())
        }
        other => {
            help();
            Err(Failure(format!("no recipe {other:?}")))
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(why)) => {
            eprintln!("xtask {recipe}: {why}");
            ExitCode::FAILURE
        }
    }
}

fn help() {
    println!("cargo xtask <recipe>\n");
    for (name, what) in RECIPES {
        println!("  {name:<24} {what}");
    }
}

/// The workspace root: this crate lives at `infra/xtask`.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The cargo that runs this task (cargo sets `CARGO` for `cargo run`), so recipes use the same
/// toolchain.
fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root());
    command
}

fn tool(program: &str) -> Command {
    let mut command = Command::new(program);
    command.current_dir(root());
    command
}

fn step(name: &str) {
    println!("\n== {name} ==");
}

/// Runs a command to its end with the terminal's streams.
fn status(mut command: Command) -> Step {
    let shown = describe(&command);
    let status = command
        .status()
        .map_err(|e| Failure(format!("{shown}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure(format!("{shown}: {status}")))
    }
}

/// Whether a command can run and succeeds, with its output hidden (for tool checks).
fn succeeds(mut command: Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn pip_install(packages: &[&str]) -> Step {
    let mut pip = tool("python3");
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ])
    .args(packages);
    status(pip)
}

/// Installs a Python package when `import <module>` fails.
fn ensure_python(module: &str, package: &str) -> Step {
    let mut check = tool("python3");
    check.args(["-c", &format!("import {module}")]);
    if succeeds(check) {
        return Ok(());
    }
    eprintln!("xtask: {package} is missing; installing it with pip");
    pip_install(&[package])
}

fn ensure_moto() -> Step {
    // `infra/moto/serve.py` needs moto's server extra (werkzeug's app), not only moto.
    ensure_python("moto.moto_server.werkzeug_app", "moto[server]")
}

fn run(args: &[OsString]) -> Step {
    let mut command = cargo();
    command.args(["run", "-p", "tally-dev"]).args(args);
    status(command)
}

/// `cargo test --workspace`, its output passed through and its `test result:` lines added up
/// into one closing line (cargo prints one per test binary).
fn test(args: &[OsString], moto: bool) -> Step {
    let (outcome, passed, failed) = counted_test(args, moto, false);
    println!("tests: {passed} passed, {failed} failed");
    outcome
}

/// Runs the tests and returns how it went with the passed and failed totals.
fn counted_test(args: &[OsString], moto: bool, card_tools: bool) -> (Step, u64, u64) {
    let mut command = cargo();
    command.args(["test", "--workspace"]).args(args);
    if moto {
        // The harness starts moto itself (infra/moto/serve.py) when this is set.
        command.env("TALLY_MOTO", "1");
    }
    if card_tools {
        // CI installs the card tools first: there, a missing OCR or PDF tool fails the card
        // tests instead of skipping them.
        command.env("TALLY_CARD_TOOLS", "1");
    }
    let shown = describe(&command);
    let (mut passed, mut failed) = (0, 0);
    let mut child = match command.stdout(Stdio::piped()).spawn() {
        Ok(child) => child,
        Err(e) => return (Err(Failure(format!("{shown}: {e}"))), passed, failed),
    };
    if let Some(stdout) = child.stdout.take() {
        let mut out = std::io::stdout();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = writeln!(out, "{line}");
            if let Some((p, f)) = test_result(&line) {
                passed += p;
                failed += f;
            }
        }
    }
    let outcome = match child.wait() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(Failure(format!("{shown}: {status}"))),
        Err(e) => Err(Failure(format!("{shown}: {e}"))),
    };
    (outcome, passed, failed)
}

/// The passed and failed counts of a libtest summary line:
/// `test result: ok. 12 passed; 0 failed; 0 ignored; ...`.
fn test_result(line: &str) -> Option<(u64, u64)> {
    let counts = line.strip_prefix("test result: ")?;
    let mut words = counts.split_whitespace().skip(1);
    let passed = words.next()?.parse().ok()?;
    let _ = words.next()?;
    let failed = words.next()?.parse().ok()?;
    Some((passed, failed))
}

/// Builds a debug binary and returns its path as cargo reports it (`CARGO_TARGET_DIR` and any
/// configured target folder included).
fn build_binary(package: &str) -> Result<PathBuf, Failure> {
    let mut command = cargo();
    command
        .args([
            "build",
            "-p",
            package,
            "--message-format=json-render-diagnostics",
        ])
        .stdout(Stdio::piped());
    let shown = describe(&command);
    let output = command
        .spawn()
        .and_then(|child| child.wait_with_output())
        .map_err(|e| Failure(format!("{shown}: {e}")))?;
    if !output.status.success() {
        return Err(Failure(format!("{shown}: {}", output.status)));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| {
            line.contains(r#""reason":"compiler-artifact""#)
                && line.contains(&format!(r#""name":"{package}""#))
        })
        .find_map(|line| json_string(line, "executable"))
        .map(PathBuf::from)
        .ok_or_else(|| Failure(format!("{shown}: cargo named no {package} binary")))
}

/// The string value of `"key":"..."` in one line of cargo's JSON (std only, so no parser:
/// cargo escapes only quotes, backslashes and control characters in paths).
fn json_string(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(r#""{key}":""#))? + key.len() + 4;
    let mut value = String::new();
    let mut chars = line.get(start..)?.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

/// The document's checks, then the fuzzing: `openapi-spec-validator` on `shared/openapi.json`,
/// TypeScript types generated from it by `openapi-typescript` compiled by `tsc --strict` (the
/// two from npm, pinned by `infra/contract/package-lock.json`), and schemathesis with every
/// check and phase against a dev server (`infra/contract/run.py`, which reads an invite card's
/// QR code with `zxing-cpp`).
fn contract() -> Step {
    ensure_python("schemathesis", "schemathesis")?;
    ensure_python("openapi_spec_validator", "openapi-spec-validator")?;
    ensure_python("zxingcpp", "zxing-cpp")?;
    ensure_python("PIL", "pillow")?;
    ensure_apt(&[("node", "nodejs"), ("npm", "npm")])?;

    let mut validate = tool("python3");
    validate.args(["-m", "openapi_spec_validator", "shared/openapi.json"]);
    status(validate)?;
    let mut npm = tool("npm");
    npm.args([
        "ci",
        "--prefix",
        "infra/contract",
        "--no-audit",
        "--no-fund",
    ]);
    status(npm)?;
    let types = target_dir()?.join("contract").join("tally-api.d.ts");
    let bin = root().join("infra/contract/node_modules/.bin");
    let mut generate = tool(&bin.join("openapi-typescript").to_string_lossy());
    generate.arg("shared/openapi.json").arg("-o").arg(&types);
    status(generate)?;
    let mut tsc = tool(&bin.join("tsc").to_string_lossy());
    tsc.args(["--noEmit", "--strict"]).arg(&types);
    status(tsc)?;

    let binary = build_binary("tally-dev")?;
    let mut command = tool("python3");
    command.arg("infra/contract/run.py").arg(binary);
    status(command)
}

/// The Debian packages the card and sheet tests read their output with: OCR for every
/// script the cards are tested in, and poppler's PDF tools.
const CARD_TOOLS: &[&str] = &[
    "tesseract-ocr",
    "tesseract-ocr-eng",
    "tesseract-ocr-chi-sim",
    "tesseract-ocr-rus",
    "tesseract-ocr-ara",
    "tesseract-ocr-heb",
    "tesseract-ocr-hin",
    "tesseract-ocr-ell",
    "poppler-utils",
];

/// Installs the Debian packages that are not installed yet (`dpkg -s` tells).
fn ensure_apt_packages(packages: &[&str]) -> Step {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| {
            !Command::new("dpkg")
                .args(["-s", package])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    apt_install(&missing)
}

/// Installs Debian packages for the programs that are not on `PATH`.
fn ensure_apt(programs: &[(&str, &str)]) -> Step {
    let missing: Vec<&str> = programs
        .iter()
        .filter(|(program, _)| !on_path(program))
        .map(|(_, package)| *package)
        .collect();
    apt_install(&missing)
}

/// `apt-get install` of `packages` (nothing when there are none), after refreshing the lists.
fn apt_install(packages: &[&str]) -> Step {
    if packages.is_empty() {
        return Ok(());
    }
    let mut update = tool("apt-get");
    update.args(["update", "-qq"]);
    status(update)?;
    let mut install = tool("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq"])
        .args(packages);
    status(install)
}

fn browser() -> Step {
    // Debian's Chromium (and Node.js, if a machine lacks it), only when missing:
    // playwright-core drives that Chromium and never downloads a browser of its own.
    let missing: Vec<&str> = [("chromium", "chromium"), ("node", "nodejs"), ("npm", "npm")]
        .into_iter()
        .filter(|(program, _)| !on_path(program))
        .map(|(_, package)| package)
        .collect();
    if !missing.is_empty() {
        let mut update = tool("apt-get");
        update.args(["update", "-qq"]);
        status(update)?;
        let mut install = tool("apt-get");
        install
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq"])
            .args(&missing);
        status(install)?;
    }
    let mut npm = tool("npm");
    npm.args(["ci", "--prefix", "tests/browser", "--no-audit", "--no-fund"]);
    status(npm)?;
    // Builds tally-dev (honouring CARGO_TARGET_DIR), serves it on a free port over a fresh data
    // folder, runs every tests/browser/*.test.mjs and stops it; ends with "N passed, M failed".
    let mut node = tool("node");
    node.arg("tests/browser/run.mjs");
    status(node)
}

fn bench(args: &[OsString]) -> Step {
    let mut command = cargo();
    command.args(["run", "--release", "-p", "tally-bench", "--"]);
    if args.is_empty() {
        command.arg("all");
    } else {
        command.args(args);
    }
    status(command)
}

/// The arm64 release build of every function (the workspace's default members), then the
/// sizes the README's table gives: `bootstrap` as built (symbols stripped by the release
/// profile) and zipped alone at zip's default level, which is what Lambda receives.
fn lambda_build() -> Step {
    let mut check = cargo();
    check.args(["lambda", "--version"]);
    if !succeeds(check) {
        eprintln!(
            "xtask: cargo-lambda is missing; installing it (and zig, the cross-linker) with pip"
        );
        pip_install(&["cargo-lambda", "ziglang"])?;
    }
    let mut target = tool("rustup");
    target.args(["target", "add", "aarch64-unknown-linux-gnu"]);
    status(target)?;
    let mut build = cargo();
    build.args(["lambda", "build", "--release", "--arm64"]);
    status(build)?;

    let lambda = target_dir()?.join("lambda");
    let mut functions: Vec<String> = std::fs::read_dir(root().join("functions"))
        .map_err(|e| Failure(format!("functions/: {e}")))?
        .filter_map(Result::ok)
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    functions.sort();
    println!("\n| function | `bootstrap` (stripped) | zipped |\n| --- | --- | --- |");
    for function in functions {
        let bootstrap = lambda.join(&function).join("bootstrap");
        let size = std::fs::metadata(&bootstrap)
            .map_err(|e| Failure(format!("{}: {e}", bootstrap.display())))?
            .len();
        let zipped = zipped_size(&bootstrap)?;
        println!(
            "| {function} | {} ({} B) | {} |",
            mib(size),
            thousands(size),
            mib(zipped)
        );
    }
    Ok(())
}

/// The size of `bootstrap` alone in a ZIP, deflated at level 6 (zip's default), written next
/// to it. Python's zipfile does it, since CI has Python and the runner has no ZIP crate.
fn zipped_size(bootstrap: &Path) -> Result<u64, Failure> {
    let zip = bootstrap.with_extension("zip");
    let mut command = tool("python3");
    command
        .args([
            "-c",
            "import sys, zipfile\n\
             with zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED, compresslevel=6) as z:\n\
             \x20   z.write(sys.argv[1], 'bootstrap')",
        ])
        .arg(bootstrap)
        .arg(&zip);
    status(command)?;
    std::fs::metadata(&zip)
        .map(|m| m.len())
        .map_err(|e| Failure(format!("{}: {e}", zip.display())))
}

/// Cargo's target folder, as `cargo metadata` reports it (honouring `CARGO_TARGET_DIR`).
fn target_dir() -> Result<PathBuf, Failure> {
    let mut command = cargo();
    command.args(["metadata", "--format-version", "1", "--no-deps"]);
    let shown = describe(&command);
    let output = command
        .output()
        .map_err(|e| Failure(format!("{shown}: {e}")))?;
    json_string(&String::from_utf8_lossy(&output.stdout), "target_directory")
        .map(PathBuf::from)
        .ok_or_else(|| Failure(format!("{shown}: no target_directory")))
}

fn mib(bytes: u64) -> String {
    // Tenths of a MiB, rounded, in integers (MiB = 2^20 bytes).
    let tenths = (bytes * 10 + (1 << 19)) >> 20;
    format!("{}.{} MiB", tenths / 10, tenths % 10)
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What must hold for a change to land, in `.ci/run`'s order; stops at the first failure and
/// ends with one line counting every test.
fn ci() -> Step {
    step(
        "tools: moto (second DynamoDB implementation), SAM CLI, cfn-lint, schemathesis, \
         openapi-spec-validator, zxing-cpp and pillow (the contract's invite token)",
    );
    pip_install(&[
        "moto[server]",
        "aws-sam-cli",
        "cfn-lint",
        "schemathesis",
        "openapi-spec-validator",
        "zxing-cpp",
        "pillow",
    ])?;

    step("format");
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    status(fmt)?;

    step("lint");
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    status(clippy)?;

    step("template");
    let mut sam = tool("sam");
    sam.env("SAM_CLI_TELEMETRY", "0")
        .args(["validate", "--lint", "--region", "us-east-1"]);
    status(sam)?;
    let mut lint = tool("cfn-lint");
    lint.arg("template.yaml");
    status(lint)?;

    step(
        "tools: tesseract-ocr with its language packs and poppler-utils (the cards' OCR and the \
         print sheets' checks, tests/tests/api/cards.rs)",
    );
    ensure_apt_packages(CARD_TOOLS)?;

    step("test (the README's test command, with the moto cross-check switched on)");
    let (outcome, passed, failed) = counted_test(&[], true, true);
    if outcome.is_err() {
        println!("tests: {passed} passed, {failed} failed");
    }
    outcome?;

    step(
        "contract: openapi-spec-validator, openapi-typescript + tsc, schemathesis --checks all \
         (stateful phase included) against the dev server",
    );
    contract()?;

    step("browser tests (the pages in Debian's headless Chromium, against the dev server)");
    browser()?;

    // One closing line for the whole suite, since cargo prints one per test binary.
    println!("tests: {passed} passed, {failed} failed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libtest_summaries() {
        assert_eq!(
            test_result("test result: ok. 12 passed; 3 failed; 0 ignored; 0 measured"),
            Some((12, 3))
        );
        assert_eq!(
            test_result("test result: FAILED. 1 passed; 2 failed; 0 ignored"),
            Some((1, 2))
        );
        assert_eq!(test_result("test foo ... ok"), None);
    }

    #[test]
    fn reads_a_string_from_cargo_json() {
        let line = r#"{"reason":"compiler-artifact","executable":"/t/a \"b\"\\c","fresh":true}"#;
        assert_eq!(
            json_string(line, "executable").as_deref(),
            Some(r#"/t/a "b"\c"#)
        );
        assert_eq!(json_string(line, "missing"), None);
    }

    #[test]
    fn zips_a_bootstrap_alone_and_measures_it() {
        let dir = std::env::temp_dir().join(format!("xtask-zip-{}", std::process::id()));
        let bootstrap = dir.join("bootstrap");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        // Compressible contents: the ZIP must come out smaller than the file.
        std::fs::write(&bootstrap, vec![7u8; 100_000]).unwrap_or_else(|e| panic!("{e}"));
        let zipped = zipped_size(&bootstrap).unwrap_or_else(|Failure(e)| panic!("{e}"));
        let _ = std::fs::remove_dir_all(&dir);
        assert!((100..10_000).contains(&zipped), "{zipped} bytes");
    }

    #[test]
    fn formats_sizes_as_the_readme_does() {
        assert_eq!(mib(12_273_552), "11.7 MiB");
        assert_eq!(mib(10_123_440), "9.7 MiB");
        assert_eq!(thousands(12_273_552), "12,273,552");
        assert_eq!(thousands(999), "999");
    }
}
