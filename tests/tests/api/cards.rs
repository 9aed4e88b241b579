//! Invite cards and print sheets checked by tools that know nothing of how they were drawn:
//! Tesseract reads every script's names back off the PNG cards, and poppler (`pdfinfo`,
//! `pdftotext`, `pdftoppm`) opens the PDF sheets, counts their pages, extracts their text and
//! rasterises them for a QR reader.
//!
//! The tools come from Debian (`tesseract-ocr` with its language packs, `poppler-utils`;
//! `cargo xtask ci` installs them). Without them these tests say so loudly and pass, unless
//! `TALLY_CARD_TOOLS=1` (set by CI), where a missing tool fails them.

use std::path::Path;
use std::process::Command;

use image::{GrayImage, ImageFormat};
use tally::render::{CARDS_PER_SHEET, CardLayout, CardText, Paper, pdf_sheets};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const URL: &str = "https://tally.example.com/i/q3Vx_7kPz-2mLw9RtYb4NcHs0aJdEfGu1iOoZyXeWvB";

/// The rows of a card that hold the guest's name (its band is 204 to 312 px).
const NAME_ROWS: (u32, u32) = (190, 130);

/// Whether `program` runs; when it does not, fails under `TALLY_CARD_TOOLS=1` and otherwise
/// says loudly that the test is skipped.
fn tool_available(program: &str, package: &str, test: &str) -> bool {
    let found = Command::new(program)
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stderr.is_empty() || !o.stdout.is_empty());
    if found {
        return true;
    }
    assert!(
        !std::env::var("TALLY_CARD_TOOLS").is_ok_and(|v| v == "1"),
        "TALLY_CARD_TOOLS=1 but `{program}` is missing: apt-get install {package}"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: `{program}` is missing (apt-get install {package}; CI sets TALLY_CARD_TOOLS=1)"
    );
    false
}

fn run(command: &mut Command) -> Result<String, Box<dyn std::error::Error>> {
    let output = command.output()?;
    if !output.status.success() {
        return Err(format!(
            "{command:?}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// Edit distance between two strings, in characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

#[test]
fn names_in_every_script_read_back_through_ocr() -> TestResult {
    if !tool_available(
        "tesseract",
        "tesseract-ocr and its language packs",
        "names_in_every_script_read_back_through_ocr",
    ) {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    // (Tesseract language, name on the card, what must be read back).
    let cases = [
        ("eng", "Wolfgang Amadeus Mozart", "Wolfgang Amadeus Mozart"),
        ("eng", "José Müller", "José Müller"),
        ("chi_sim", "李雷 王芳", "李雷王芳"),
        ("rus", "Дмитрий Ёлкин", "Дмитрий Ёлкин"),
        ("ell", "Ελένη Παπαδοπούλου", "Ελένη Παπαδοπούλου"),
        ("ara", "محمد عبد الرحمن", "محمد عبد الرحمن"),
        ("heb", "שרה לוי", "שרה לוי"),
        ("hin", "प्रिया शर्मा", "प्रिया शर्मा"),
        // The emoji is left out cleanly: no box, no question mark.
        ("eng", "\u{1F469}\u{200D}\u{1F373} Chef Ana", "Chef Ana"),
    ];
    let layout = CardLayout::new("Where shall we go for lunch?", None);
    let mut failures = Vec::new();
    for (i, (language, name, expected)) in cases.iter().enumerate() {
        let png = layout.png(&CardText {
            guest_name: name,
            url: URL,
            short_url: None,
        })?;
        let card = image::load_from_memory_with_format(&png, ImageFormat::Png)?.to_luma8();
        let band =
            image::imageops::crop_imm(&card, 0, NAME_ROWS.0, card.width(), NAME_ROWS.1).to_image();
        let path = dir.path().join(format!("name-{i}.png"));
        band.save(&path)?;
        let read = run(Command::new("tesseract")
            .arg(&path)
            .arg("-")
            .args(["-l", language, "--psm", "6"]))?;
        let (read, want) = (squeeze(&read), squeeze(expected));
        // OCR is allowed one slip in five characters (a diacritic, a similar letter); a
        // missing script reads as nothing or as boxes and fails by far.
        let allowed = want.chars().count() / 5;
        if distance(&read, &want) > allowed || read.contains('?') {
            failures.push(format!("{language}: wanted {want:?}, read {read:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    Ok(())
}

/// Every QR code `rqrr` finds in the image, decoded.
fn read_codes(image: &GrayImage) -> Vec<String> {
    let (w, h) = image.dimensions();
    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(w as usize, h as usize, |x, y| {
            image.get_pixel(x as u32, y as u32).0[0]
        });
    prepared
        .detect_grids()
        .into_iter()
        .filter_map(|grid| grid.decode().ok().map(|(_, content)| content))
        .collect()
}

#[test]
fn print_sheets_open_with_their_pages_text_and_codes() -> TestResult {
    let test = "print_sheets_open_with_their_pages_text_and_codes";
    if !tool_available("pdfinfo", "poppler-utils", test) {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let names: Vec<String> = (0..20).map(|i| format!("Guest Number{i:02}")).collect();
    let urls: Vec<String> = (0..20).map(|i| format!("{URL}{i:02}")).collect();
    let cards: Vec<CardText<'_>> = names
        .iter()
        .zip(&urls)
        .map(|(name, url)| CardText {
            guest_name: name,
            url,
            short_url: None,
        })
        .collect();
    let layout = CardLayout::new("Où déjeunons-nous vendredi ?", Some("Équipe Paris"));
    for (paper, size) in [(Paper::A4, "595.28 x 841.89"), (Paper::Letter, "612 x 792")] {
        let pdf = pdf_sheets(&cards, paper, &layout)?;
        let path = dir.path().join(format!("{paper:?}.pdf"));
        std::fs::write(&path, &pdf)?;
        let info = run(Command::new("pdfinfo").arg(&path))?;
        let pages = cards.len().div_ceil(CARDS_PER_SHEET);
        assert!(
            info.lines()
                .any(|l| l.starts_with("Pages:") && l.ends_with(&format!(" {pages}"))),
            "{info}"
        );
        assert!(info.contains(&format!("Page size:       {size}")), "{info}");

        // The text is real text: every name and the question come back out of the PDF.
        let text = run(Command::new("pdftotext").arg(&path).arg("-"))?;
        for name in &names {
            assert!(text.contains(name.as_str()), "{name} not in {text}");
        }
        assert!(text.contains("Où déjeunons-nous") && text.contains("Scan to vote"));

        // The codes are drawn as vectors: rasterised at 150 DPI, each page's nine codes decode
        // to their own guests' URLs.
        run(Command::new("pdftoppm")
            .args(["-r", "150", "-gray", "-png"])
            .arg(&path)
            .arg(dir.path().join(format!("{paper:?}"))))?;
        // Each card is cut out of its page (a card is 300 × 525 px at 150 DPI, the grid
        // centred on the page) and must read as exactly its own guest's URL, in order.
        let mut decoded = Vec::new();
        for page in 1..=pages {
            let png = find_page(dir.path(), &format!("{paper:?}"), page)?;
            let image = image::open(png)?.to_luma8();
            let (card_w, card_h) = (300, 525);
            let left = (image.width() - 3 * card_w) / 2;
            let top = (image.height() - 3 * card_h) / 2;
            for cell in 0..CARDS_PER_SHEET {
                let (x, y) = (
                    left + (cell as u32 % 3) * card_w,
                    top + (cell as u32 / 3) * card_h,
                );
                let card = image::imageops::crop_imm(&image, x, y, card_w, card_h).to_image();
                let codes = read_codes(&card);
                if decoded.len() < urls.len() {
                    assert_eq!(
                        codes.len(),
                        1,
                        "{paper:?} page {page} card {cell}: {codes:?}"
                    );
                    decoded.extend(codes);
                } else {
                    assert!(codes.is_empty(), "{paper:?}: a code past the last card");
                }
            }
        }
        assert_eq!(decoded, urls, "{paper:?}");
    }
    Ok(())
}

#[test]
fn an_empty_sheet_is_one_blank_page() -> TestResult {
    if !tool_available(
        "pdfinfo",
        "poppler-utils",
        "an_empty_sheet_is_one_blank_page",
    ) {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("empty.pdf");
    std::fs::write(
        &path,
        pdf_sheets(&[], Paper::A4, &CardLayout::new("q", None))?,
    )?;
    let info = run(Command::new("pdfinfo").arg(&path))?;
    assert!(
        info.lines()
            .any(|l| l.starts_with("Pages:") && l.ends_with(" 1")),
        "{info}"
    );
    Ok(())
}

/// `pdftoppm` numbers pages with as many digits as the last page needs (`A4-1.png`, or
/// `A4-01.png` past nine pages).
fn find_page(dir: &Path, stem: &str, page: usize) -> Result<std::path::PathBuf, String> {
    (1..=3)
        .map(|width| dir.join(format!("{stem}-{page:0width$}.png")))
        .find(|p| p.exists())
        .ok_or_else(|| format!("page {page} of {stem} was not rasterised"))
}
