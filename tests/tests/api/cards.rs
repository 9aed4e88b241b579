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
use serde_json::{Value, json};
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

/// The rows of a card that hold the organiser's event name (its band is 40 to 70 px).
const EVENT_ROWS: (u32, u32) = (32, 46);

/// Starts a cards job at `path` with `body`, waits for it and downloads its file.
async fn job_file(app: &tally_tests::TestApp, owner: &str, path: &str, body: Value) -> Vec<u8> {
    // The job says what file it makes, so that a client can label its download.
    let media_type = if body["format"] == "pdf" {
        "application/pdf"
    } else {
        "application/zip"
    };
    let job = app
        .post(path)
        .bearer(owner)
        .json(body)
        .send()
        .await
        .expect(202);
    let id = job.body["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(job.body["media_type"], media_type, "{:#}", job.body);
    let done = app.wait_for_job(owner, &id, super::jobs::PATIENCE).await;
    assert_eq!(done.body["status"], "done", "{:#}", done.body);
    assert_eq!(done.body["media_type"], media_type);
    app.download(owner, &id).await
}

/// Whether any pixel in `rows` of a card is darker than the page: the event band is blank on
/// the cards of a poll without an event name.
fn inked(card: &GrayImage, (top, height): (u32, u32)) -> bool {
    image::imageops::crop_imm(card, 0, top, card.width(), height)
        .to_image()
        .pixels()
        .any(|p| p.0[0] < 200)
}

/// The poll's event name is part of the poll (created, read, changed, removed, its length
/// checked) and is printed on its cards: the event band of a card is blank without one and,
/// with one, reads back through OCR as the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_polls_event_name_is_printed_on_its_cards() -> TestResult {
    let app = tally_tests::TestApp::start().await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let question = json!({ "question": "Which day suits you?", "options": ["Friday", "Saturday"] });
    let mut body = question.clone();
    body["event_name"] = json!(format!("{}x", "e".repeat(100)));
    let refused = app
        .post("/v1/polls")
        .bearer(&owner)
        .json(body)
        .send()
        .await
        .expect_problem(422, "validation-failed");
    assert!(
        refused.body["errors"]["event_name"].is_array(),
        "{:#}",
        refused.body
    );

    let mut body = question.clone();
    body["event_name"] = json!("  Acme Summer Offsite ");
    let poll = app.create_poll(&owner, body).await.expect(201);
    assert_eq!(poll.body["event_name"], "Acme Summer Offsite");
    let id = poll.body["id"].as_str().unwrap_or_default().to_owned();
    let read = app
        .get(&format!("/v1/polls/{id}"))
        .bearer(&owner)
        .send()
        .await
        .expect(200);
    assert_eq!(read.body["event_name"], "Acme Summer Offsite");
    let plain = app.create_poll(&owner, question.clone()).await.expect(201);
    assert_eq!(plain.body["event_name"], Value::Null);
    let plain = plain.body["id"].as_str().unwrap_or_default().to_owned();

    // A patch changes it, null (or blank) removes it, and too long a name is refused.
    let patch = |event: Value| {
        app.patch(&format!("/v1/polls/{id}"))
            .bearer(&owner)
            .json(json!({ "event_name": event }))
            .send()
    };
    assert_eq!(
        patch(json!(null)).await.expect(200).body["event_name"],
        Value::Null
    );
    assert_eq!(
        patch(json!("Gala")).await.expect(200).body["event_name"],
        "Gala"
    );
    assert_eq!(
        patch(json!(" ")).await.expect(200).body["event_name"],
        Value::Null
    );
    let refused = patch(json!("e".repeat(101)))
        .await
        .expect_problem(422, "validation-failed");
    assert!(
        refused.body["errors"]["event_name"].is_array(),
        "{:#}",
        refused.body
    );
    assert_eq!(
        patch(json!("Acme Summer Offsite")).await.expect(200).body["event_name"],
        "Acme Summer Offsite"
    );

    let guests = json!({ "guests": [{ "name": "Ann Smith" }] });
    let card_of = |zip: &[u8]| -> Result<GrayImage, Box<dyn std::error::Error>> {
        let (_, png) = tally_tests::zip_entries(zip)
            .into_iter()
            .find(|(name, _)| name.ends_with(".png"))
            .ok_or("no card in the ZIP")?;
        Ok(image::load_from_memory_with_format(&png, ImageFormat::Png)?.to_luma8())
    };
    let with = card_of(
        &job_file(
            &app,
            &owner,
            &format!("/v1/polls/{id}/invites"),
            guests.clone(),
        )
        .await,
    )?;
    let without =
        card_of(&job_file(&app, &owner, &format!("/v1/polls/{plain}/invites"), guests).await)?;
    assert!(inked(&with, EVENT_ROWS), "the event band is blank");
    assert!(
        !inked(&without, EVENT_ROWS),
        "a card without an event name has ink in its band"
    );

    let test = "a_polls_event_name_is_printed_on_its_cards";
    if !tool_available("tesseract", "tesseract-ocr", test) {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let band =
        image::imageops::crop_imm(&with, 0, EVENT_ROWS.0, with.width(), EVENT_ROWS.1).to_image();
    // Tesseract reads small type best a little larger, as for the names.
    let band = image::imageops::resize(
        &band,
        band.width() * 2,
        band.height() * 2,
        image::imageops::FilterType::CatmullRom,
    );
    let path = dir.path().join("event.png");
    band.save(&path)?;
    let read = run(Command::new("tesseract")
        .arg(&path)
        .arg("-")
        .args(["-l", "eng", "--psm", "7"]))?;
    let read = read.trim();
    assert!(
        distance(read, "Acme Summer Offsite") <= 1,
        "OCR read {read:?}"
    );
    Ok(())
}

/// Page count and paper size, as `pdfinfo` reports them.
fn pdf_pages_and_size(pdf: &[u8]) -> Result<(usize, String), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("sheets.pdf");
    std::fs::write(&path, pdf)?;
    let info = run(Command::new("pdfinfo").arg(&path))?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    Ok((field("Pages:").parse()?, field("Page size:")))
}

fn pdf_text(pdf: &[u8]) -> Result<String, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("sheets.pdf");
    std::fs::write(&path, pdf)?;
    run(Command::new("pdftotext").arg(&path).arg("-"))
}

/// A cards job can make print sheets instead of the ZIP: through both card routes, on A4 (the
/// default) and Letter, with a page per nine guests, every guest's name and the event name as
/// real text. A format or paper it does not know, or a paper without `pdf`, is a 422 naming
/// the field, before any job is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn print_sheets_are_a_job_format() -> TestResult {
    let app = tally_tests::TestApp::start().await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = app
        .create_poll(&owner, json!({ "question": "Which day suits you?", "options": ["Friday", "Saturday"], "visibility": "invite", "event_name": "Nordlicht Gala" }))
        .await
        .expect(201);
    let poll = poll.body["id"].as_str().unwrap_or_default().to_owned();
    let cards = format!("/v1/polls/{poll}/cards");
    let invites = format!("/v1/polls/{poll}/invites");
    for (body, field) in [
        (json!({ "guests": "all", "format": "tiff" }), "format"),
        (
            json!({ "guests": "all", "format": "pdf", "paper": "a5" }),
            "paper",
        ),
        (json!({ "guests": "all", "paper": "letter" }), "paper"),
    ] {
        let refused = app
            .post(&cards)
            .bearer(&owner)
            .json(body)
            .send()
            .await
            .expect_problem(422, "validation-failed");
        assert!(
            refused.body["errors"][field].is_array(),
            "{:#}",
            refused.body
        );
    }
    let refused = app
        .post(&invites)
        .bearer(&owner)
        .json(json!({ "guests": [{ "name": "Ann" }], "format": "svg" }))
        .send()
        .await
        .expect_problem(422, "validation-failed");
    assert!(
        refused.body["errors"]["format"].is_array(),
        "{:#}",
        refused.body
    );

    let names: Vec<String> = (0..20).map(|i| format!("Guest Number{i:02}")).collect();
    let guests: Vec<Value> = names.iter().map(|n| json!({ "name": n })).collect();
    app.post(&format!("/v1/polls/{poll}/guests"))
        .bearer(&owner)
        .json(json!({ "guests": guests }))
        .send()
        .await
        .expect(200);
    let letter = job_file(
        &app,
        &owner,
        &cards,
        json!({ "guests": "all", "format": "pdf", "paper": "letter" }),
    )
    .await;
    assert!(letter.starts_with(b"%PDF-"), "not a PDF");
    let a4 = job_file(
        &app,
        &owner,
        &invites,
        json!({ "guests": [{ "name": "Late Comer" }], "format": "pdf" }),
    )
    .await;
    // The ZIP stays the default, from the same guests.
    let zip = job_file(&app, &owner, &cards, json!({ "guests": "all" })).await;
    assert_eq!(
        tally_tests::zip_entries(&zip).len(),
        22,
        "20 cards, the latecomer's (the invites route put them on the list) and the manifest"
    );

    let test = "print_sheets_are_a_job_format";
    if !tool_available("pdfinfo", "poppler-utils", test) {
        return Ok(());
    }
    assert_eq!(
        pdf_pages_and_size(&letter)?,
        (3, "612 x 792 pts (letter)".to_owned())
    );
    assert_eq!(
        pdf_pages_and_size(&a4)?,
        (1, "595.28 x 841.89 pts (A4)".to_owned())
    );
    let text = pdf_text(&letter)?;
    for name in &names {
        assert!(text.contains(name.as_str()), "{name} not in {text}");
    }
    assert_eq!(text.matches("Nordlicht Gala").count(), 20, "{text}");
    assert!(pdf_text(&a4)?.contains("Late Comer"));
    Ok(())
}

/// The results chart sets its text with the cards' fonts: option labels in Latin with
/// diacritics, Cyrillic and Greek read back through OCR (with the old bitmap font, Cyrillic
/// came out as `???`), and a label too long for its room ends with an ellipsis, not mid-count.
#[test]
fn chart_labels_in_every_script_read_back_through_ocr() -> TestResult {
    let test = "chart_labels_in_every_script_read_back_through_ocr";
    if !tool_available("tesseract", "tesseract-ocr and its language packs", test) {
        return Ok(());
    }
    let labels = [
        ("eng", "Crème brûlée"),
        ("rus", "Борщ и пельмени"),
        ("ell", "Ελληνική σαλάτα"),
    ];
    let bars: Vec<tally::render::Bar<'_>> = labels
        .iter()
        .map(|(_, label)| tally::render::Bar { label, votes: 3 })
        .collect();
    let png = tally::render::results_chart_png("Dessert?", &bars)?;
    let chart = image::load_from_memory_with_format(&png, ImageFormat::Png)?.to_luma8();
    let dir = tempfile::tempdir()?;
    let mut failures = Vec::new();
    for (i, (language, label)) in labels.iter().enumerate() {
        // Each option's label line is the left part of its row (its count is on the right),
        // 24 px tall above its bar; a row is 68 px and the rows start below the one-line
        // title. The crop is read alone, scaled up, as Tesseract likes small type.
        let top = 24 + 30 + 12 + 68 * i as u32;
        let line = image::imageops::crop_imm(&chart, 0, top, 420, 26).to_image();
        let line = image::imageops::resize(
            &line,
            line.width() * 2,
            line.height() * 2,
            image::imageops::FilterType::CatmullRom,
        );
        let path = dir.path().join(format!("label-{i}.png"));
        line.save(&path)?;
        let read = run(Command::new("tesseract")
            .arg(&path)
            .arg("-")
            .args(["-l", language, "--psm", "7"]))?;
        let (read, want) = (squeeze(&read), squeeze(label));
        if distance(&read, &want) > want.chars().count() / 5 || read.contains('?') {
            failures.push(format!("{language}: wanted {want:?}, read {read:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    Ok(())
}

/// Print sheets of a job of several chunks (100 guests each): the sheets builder reads every
/// chunk's segment, in order, so the PDF has a page per nine guests and the guests in the
/// order they were sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn print_sheets_of_several_chunks_keep_every_guest_in_order() -> TestResult {
    let app = tally_tests::TestApp::start().await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = super::jobs::invite_poll(&app, &owner).await;
    let names: Vec<String> = (0..205).map(|i| format!("Sheet Guest{i:03}")).collect();
    let guests: Vec<Value> = names.iter().map(|n| json!({ "name": n })).collect();
    let pdf = job_file(
        &app,
        &owner,
        &format!("/v1/polls/{poll}/invites"),
        json!({ "guests": guests, "format": "pdf", "paper": "a4" }),
    )
    .await;
    let test = "print_sheets_of_several_chunks_keep_every_guest_in_order";
    if !tool_available("pdfinfo", "poppler-utils", test) {
        return Ok(());
    }
    assert_eq!(
        pdf_pages_and_size(&pdf)?.0,
        205usize.div_ceil(CARDS_PER_SHEET)
    );
    let text = pdf_text(&pdf)?;
    let positions: Vec<usize> = names
        .iter()
        .map(|name| {
            text.find(name.as_str())
                .unwrap_or_else(|| panic!("{name} is not in the sheets"))
        })
        .collect();
    // Each page's text comes out in reading order, so the guests' positions only grow.
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "guests out of order"
    );
    Ok(())
}
