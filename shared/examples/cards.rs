//! Writes example invite cards (one per script), a print sheet and a results chart into a
//! folder, for looking at them and for the README's pictures:
//! `cargo run -p tally --example cards -- docs/cards`.

use std::error::Error;
use std::path::PathBuf;

use tally::render::{Bar, CardLayout, CardText, Paper, pdf_sheets, results_chart_png};

/// (file stem, guest name, poll question).
const EXAMPLES: [(&str, &str, &str); 7] = [
    (
        "latin",
        "Wolfgang Amadeus Mozart-Schönberg de la Peña",
        "Where shall we go for the team lunch on Friday?",
    ),
    ("cjk", "李雷 (Li Lei)", "周五的团队午餐我们去哪里？"),
    (
        "cyrillic-greek",
        "Дмитрий Ёлкин · Ελένη Παπαδοπούλου",
        "Куда пойдём на обед в пятницу?",
    ),
    (
        "arabic",
        "محمد عبد الرحمن",
        "أين نذهب لتناول الغداء يوم الجمعة؟",
    ),
    ("hebrew", "שרה לוי", "לאן נלך לארוחת צהריים ביום שישי?"),
    (
        "devanagari",
        "प्रिया शर्मा",
        "शुक्रवार को दोपहर का खाना कहाँ खाएँ?",
    ),
    (
        "emoji",
        "\u{1F469}\u{200D}\u{1F373} Chef Ana \u{1F389}",
        "Pizza \u{1F355} or sushi \u{1F363}?",
    ),
];

fn main() -> Result<(), Box<dyn Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "cards".to_owned()),
    );
    std::fs::create_dir_all(&dir)?;
    let url = "https://tally.example.com/i/q3Vx_7kPz-2mLw9RtYb4NcHs0aJdEfGu1iOoZyXeWvB";
    let mut sheet = Vec::new();
    for (stem, name, question) in EXAMPLES {
        let layout = CardLayout::new(question, Some("Acme offsite · Lisbon 2027"));
        let card = CardText {
            guest_name: name,
            url,
            short_url: None,
        };
        std::fs::write(dir.join(format!("card-{stem}.png")), layout.png(&card)?)?;
        sheet.push(card);
    }
    let layout = CardLayout::new(EXAMPLES[0].2, Some("Acme offsite · Lisbon 2027"));
    std::fs::write(
        dir.join("sheet-a4.pdf"),
        pdf_sheets(&sheet, Paper::A4, &layout)?,
    )?;
    // A chart whose labels span the scripts the fonts cover, one of them too long for its
    // room, so that a look at it shows shaping, bidi order and the ellipsis at once.
    let bars = [
        ("Pizza Margherita", 42),
        ("寿司 (Sushi)", 35),
        ("Борщ и пельмени", 17),
        ("فلافل وحمص", 12),
        ("פלאפל", 9),
        ("मसाला डोसा", 6),
        ("Ελληνική σαλάτα", 3),
        (
            "Crème brûlée, and a label long enough to be cut before its count",
            0,
        ),
    ]
    .map(|(label, votes)| Bar { label, votes });
    std::fs::write(
        dir.join("chart.png"),
        results_chart_png(
            "Où déjeunons-nous vendredi ? Lunch on Friday: where?",
            &bars,
        )?,
    )?;
    Ok(())
}
