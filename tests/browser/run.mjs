// Runs the browser tests: builds the dev server, starts it on a free port over a fresh data
// folder, waits for /v1/health, runs every *.test.mjs here with node's test runner, then
// stops the server. Exits 0 only when every test passed.
//
//   node run.mjs              build with cargo, then test
//   TALLY_DEV_BIN=... node run.mjs   test against an already built tally-dev binary
//   CHROMIUM=... node run.mjs        another Chromium binary (default /usr/bin/chromium)
import { spawn } from "node:child_process";
import { createWriteStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const started = Date.now();

function log(message) {
  process.stderr.write(`browser tests: ${message}\n`);
}

// Asks cargo where the binary is rather than guessing: CARGO_TARGET_DIR, a target dir set in
// a cargo config, or the default all end up in the artifact message.
function build() {
  return new Promise((resolve, reject) => {
    log("cargo build -p tally-dev");
    const cargo = spawn("cargo", ["build", "-p", "tally-dev", "--message-format=json-render-diagnostics"], {
      cwd: root,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let executable = null;
    let pending = "";
    cargo.stdout.on("data", (chunk) => {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop();
      for (const line of lines) {
        try {
          const message = JSON.parse(line);
          if (message.reason === "compiler-artifact" && message.target.name === "tally-dev" && message.executable) {
            executable = message.executable;
          }
        } catch {
          // Not a JSON line: cargo prints only JSON on stdout, but a build script might not.
        }
      }
    });
    cargo.on("error", reject);
    cargo.on("exit", (code) => {
      if (code !== 0) reject(new Error(`cargo build failed (exit ${code})`));
      else if (!executable) reject(new Error("cargo did not report the tally-dev binary"));
      else resolve(executable);
    });
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitForHealth(base, server, logFile) {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    if (server.exitCode !== null) {
      throw new Error(`the dev server exited (${server.exitCode}):\n${readFileSync(logFile, "utf8")}`);
    }
    try {
      const response = await fetch(base + "/v1/health");
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the dev server did not answer /v1/health within 120 s:\n${readFileSync(logFile, "utf8")}`);
}

function stop(child, signal = "SIGINT") {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill(signal);
  });
}

async function main() {
  const binary = process.env.TALLY_DEV_BIN || (await build());
  const data = mkdtempSync(path.join(tmpdir(), "tally-browser-"));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const logFile = path.join(data, "server.log");
  const logStream = createWriteStream(logFile);
  let server = null;
  let tests = null;
  let stopping = false;
  const interrupt = async () => {
    stopping = true;
    await stop(tests, "SIGTERM");
    await stop(server);
    process.exit(130);
  };
  process.once("SIGINT", interrupt);
  process.once("SIGTERM", interrupt);
  try {
    log(`starting ${binary} on ${base}`);
    server = spawn(binary, [], {
      cwd: data,
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...process.env,
        TALLY_LISTEN: `127.0.0.1:${port}`,
        TALLY_DYNAMODB_LISTEN: "127.0.0.1:0",
        TALLY_S3_LISTEN: "127.0.0.1:0",
        TALLY_DATA_DIR: path.join(data, "tally"),
        TALLY_RATE_LIMITS: "off",
        RUST_LOG: process.env.RUST_LOG || "warn",
      },
    });
    server.stdout.pipe(logStream);
    server.stderr.pipe(logStream);
    server.once("exit", (code, signal) => {
      if (!stopping) log(`the dev server exited while the tests ran (code ${code}, signal ${signal})`);
    });
    await waitForHealth(base, server, logFile);
    log(`dev server ready after ${((Date.now() - started) / 1000).toFixed(1)} s`);

    // One file at a time, each in its own `node --test` (two cores do not run two Chromiums
    // and the render worker well, and `--test-concurrency` needs Node 20). Each run also
    // writes TAP to a file, whose counts make the closing summary.
    const files = readdirSync(here).filter((f) => f.endsWith(".test.mjs")).sort();
    const totals = { pass: 0, fail: 0 };
    for (const file of files) {
      const tap = path.join(data, `${file}.tap`);
      const code = await new Promise((resolve) => {
        tests = spawn(process.execPath, [
          "--test", "--test-reporter=spec", "--test-reporter-destination=stdout",
          "--test-reporter=tap", `--test-reporter-destination=${tap}`, file,
        ], { cwd: here, stdio: "inherit", env: { ...process.env, TALLY_BASE_URL: base } });
        tests.on("exit", (c, signal) => resolve(c ?? (signal ? 1 : 0)));
      });
      const counts = existsSync(tap) ? readFileSync(tap, "utf8") : "";
      const count = (name) => Number((counts.match(new RegExp(`^# ${name} (\\d+)$`, "m")) || [])[1] || 0);
      totals.pass += count("pass");
      // A file that fails without a failing test (it did not even load, say) counts as one.
      totals.fail += count("fail") + (code !== 0 && count("fail") === 0 ? 1 : 0);
    }
    const code = totals.fail === 0 && totals.pass > 0 ? 0 : 1;
    if (code !== 0) log(`server log (${logFile}):\n${readFileSync(logFile, "utf8").slice(-4000)}`);
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    log(`${totals.pass} passed, ${totals.fail} failed in ${seconds} s (build and server start included)`);
    return code;
  } finally {
    stopping = true;
    await stop(server);
    logStream.end();
    rmSync(data, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    log(e.stack || String(e));
    process.exit(1);
  },
);
