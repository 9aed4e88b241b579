//! Times invite cards made from one `CardLayout`, the way a job makes them:
//! `cargo run --release -p tally --example card_speed -- 5000`. Prints the wall time and, on
//! Linux, the process's CPU time per card: on a machine shared with other work the wall time
//! counts the waits for a core, while the CPU time is what a card costs (cards per second per
//! core is one second over it).

// Printing its figures is this program's whole job; the workspace forbids stdout elsewhere so
// that the functions' logs stay JSON.
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::Instant;

use tally::render::{CardLayout, CardText};

fn main() -> Result<(), Box<dyn Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let names = [
        "Ada Lovelace",
        "Wolfgang Amadeus Mozart",
        "李雷",
        "محمد عبد الرحمن",
        "Дмитрий Ёлкин",
        "प्रिया शर्मा",
        "שרה לוי",
        "José Müller",
    ];
    let urls: Vec<String> = (0..n)
        .map(|i| {
            format!("https://tally.example.com/i/q3Vx_7kPz-2mLw9RtYb4NcHs0aJdEfGu1iOoZy{i:05}")
        })
        .collect();
    let start = Instant::now();
    let layout = CardLayout::new(
        "Where shall we go for the team lunch on Friday?",
        Some("Acme offsite"),
    );
    let setup = start.elapsed();
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let mut bytes = 0usize;
    for (i, url) in urls.iter().enumerate() {
        let png = layout.png(&CardText {
            guest_name: names[i % names.len()],
            url,
            short_url: None,
        })?;
        bytes += png.len();
    }
    let cards = start.elapsed();
    println!(
        "layout {:.2} ms; {n} cards: {:.1} µs per card, {:.0} cards/s, {} bytes per card",
        setup.as_secs_f64() * 1e3,
        cards.as_secs_f64() * 1e6 / n as f64,
        n as f64 / cards.as_secs_f64(),
        bytes / n.max(1)
    );
    if let (Some(before), Some(after)) = (cpu_start, cpu_seconds()) {
        let per_card = (after - before) / n.max(1) as f64;
        println!(
            "CPU: {:.1} µs per card, {:.0} cards/s per core",
            per_card * 1e6,
            1.0 / per_card
        );
    }
    Ok(())
}

/// The CPU time this process has used (user and system), from `/proc/self/stat`, in clock
/// ticks of 1/100 s (the kernel's `USER_HZ` on every Linux architecture Lambda runs), so a
/// run of a few seconds reads it to about 1 %. `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name (which is in parentheses and may hold spaces): the
    // 14th and 15th of the line are user and system time.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}
