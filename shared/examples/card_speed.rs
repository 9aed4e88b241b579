//! Times invite cards made from one `CardLayout`, the way a job makes them:
//! `cargo run --release -p tally --example card_speed -- 5000`. Prints the wall time per card
//! and per stage on this thread; run it under `/usr/bin/time` for the CPU time.

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
    Ok(())
}
