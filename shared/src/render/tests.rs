//! Round trips: every PNG is decoded again with `image`, and every QR code is read back with
//! `rqrr`, an independent decoder, so the tests check what a scanner would see rather than
//! what the drawing code meant to draw.

use std::error::Error;

use image::{GrayImage, ImageFormat};

use super::*;

type TestResult = Result<(), Box<dyn Error>>;

/// A typical invite link: the path prefix and a 256-bit token in unpadded base64url.
const INVITE_URL: &str = "https://tally.example.com/i/q3Vx_7kPz-2mLw9RtYb4NcHs0aJdEfGu1iOoZyXeWvB";

fn urls() -> Vec<String> {
    vec![
        "https://t.ly/p/a".to_owned(),
        INVITE_URL.to_owned(),
        "https://tally.example.com/p/01J9Z8K7Q2X3Y4W5V6U7T8S9R0".to_owned(),
        format!(
            "https://tally.example.com/i/{}?ref=email&lang=en",
            "x".repeat(150)
        ),
        String::new(),
    ]
}

fn luma(png: &[u8]) -> Result<GrayImage, Box<dyn Error>> {
    Ok(image::load_from_memory_with_format(png, ImageFormat::Png)?.to_luma8())
}

/// Every QR code `rqrr` finds in the image, decoded.
fn read_qr(image: &GrayImage) -> Result<Vec<String>, Box<dyn Error>> {
    let (width, height) = image.dimensions();
    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(width as usize, height as usize, |x, y| {
            image.get_pixel(x as u32, y as u32).0[0]
        });
    let mut contents = Vec::new();
    for grid in prepared.detect_grids() {
        contents.push(grid.decode()?.1);
    }
    Ok(contents)
}

/// Dark pixels in a horizontal band of rows.
fn dark_pixels(image: &GrayImage, top: u32, height: u32) -> usize {
    (top..top + height)
        .flat_map(|y| (0..image.width()).map(move |x| (x, y)))
        .filter(|&(x, y)| image.get_pixel(x, y).0[0] < 128)
        .count()
}

#[test]
fn invite_cards_scan_back_to_their_url() -> TestResult {
    for url in urls() {
        let png = invite_card_png(&InviteCard {
            question: "Where shall we go for the team lunch on Friday?",
            guest_name: "Ada Lovelace",
            url: &url,
        })?;
        let image = luma(&png)?;
        assert_eq!(image.dimensions(), (card::CARD_WIDTH, card::CARD_HEIGHT));
        assert_eq!(read_qr(&image)?, [url.as_str()], "{url}");
        assert!(png.len() < 50 * 1024, "{url}: {} bytes", png.len());
    }
    Ok(())
}

#[test]
fn invite_card_draws_the_name_and_question_above_the_code() -> TestResult {
    let blank = luma(&invite_card_png(&InviteCard {
        question: "",
        guest_name: "",
        url: INVITE_URL,
    })?)?;
    let full = luma(&invite_card_png(&InviteCard {
        question: "Pizza or sushi?",
        guest_name: "Grace",
        url: INVITE_URL,
    })?)?;
    // The question and the name sit above the QR band; below it, the code and the fixed
    // lines are the same whatever the text.
    let top = card::QR_TOP;
    assert_eq!(dark_pixels(&blank, 0, top), 0);
    assert!(dark_pixels(&full, 0, top) > 200);
    let rest = card::CARD_HEIGHT - top;
    assert_eq!(
        dark_pixels(&blank, top, rest),
        dark_pixels(&full, top, rest)
    );
    Ok(())
}

#[test]
fn hostile_text_is_bounded_and_the_card_still_scans() -> TestResult {
    let huge_question = "Should we ".repeat(100_000);
    let huge_word = "x".repeat(1_000_000);
    let mixed = "\u{1F389}\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467} \u{05E9}\u{05DC}\u{05D5}\u{05DD} \
                 \u{0645}\u{0631}\u{062D}\u{0628}\u{0627} \u{202E}evil\u{202C} \u{0000}\u{0007}\u{001B}[31m \
                 \u{FFFD}\u{10FFFF} Z\u{0351}\u{0352}\u{0353}algo \u{00E9}t\u{00E9} \u{03A9}";
    let cases = [
        (huge_question.as_str(), huge_word.as_str()),
        (huge_word.as_str(), huge_question.as_str()),
        (mixed, mixed),
        ("", ""),
        ("\n\n\n\t\t", "   "),
    ];
    for (question, guest_name) in cases {
        let png = invite_card_png(&InviteCard {
            question,
            guest_name,
            url: INVITE_URL,
        })?;
        let image = luma(&png)?;
        assert_eq!(image.dimensions(), (card::CARD_WIDTH, card::CARD_HEIGHT));
        assert_eq!(read_qr(&image)?, [INVITE_URL]);
    }
    Ok(())
}

#[test]
fn share_qr_png_scans_back_to_its_url() -> TestResult {
    let mut all = urls();
    // A dense code (version 27) exercises the minimum module size.
    all.push(format!(
        "https://tally.example.com/p/{}",
        "0123456789".repeat(100)
    ));
    for url in all {
        let image = luma(&qr_png(&url)?)?;
        assert_eq!(image.width(), image.height());
        assert!(image.width() >= 400, "{url}: {}", image.width());
        assert_eq!(read_qr(&image)?, [url.as_str()], "{url}");
    }
    Ok(())
}

#[test]
fn the_densest_codes_still_scan() -> TestResult {
    // Version 40 at level M: 177 modules, which leaves 2 px per module on a card and 4 px in
    // the share PNG. Digital images are exact, so even 2 px modules read back.
    let url = format!("https://tally.example.com/p/{}", "Ab3-_9xZ".repeat(250));
    let url = url.get(..2000).unwrap_or(&url);
    let card = luma(&invite_card_png(&InviteCard {
        question: "q",
        guest_name: "n",
        url,
    })?)?;
    assert_eq!(read_qr(&card)?, [url]);
    assert_eq!(read_qr(&luma(&qr_png(url)?)?)?, [url]);
    Ok(())
}

#[test]
fn share_qr_svg_is_an_svg_document() -> TestResult {
    let svg = qr_svg(INVITE_URL)?;
    assert!(svg.starts_with("<?xml"));
    assert!(svg.contains("<svg"));
    assert!(svg.contains("<rect") && svg.contains("<path"));
    assert!(svg.trim_end().ends_with("</svg>"));
    Ok(())
}

#[test]
fn urls_too_long_for_a_qr_code_are_an_error() {
    let url = format!("https://tally.example.com/{}", "a".repeat(3000));
    let len = url.len();
    assert!(matches!(qr_png(&url), Err(RenderError::DataTooLong { len: l }) if l == len));
    assert!(matches!(qr_svg(&url), Err(RenderError::DataTooLong { .. })));
    let card = InviteCard {
        question: "q",
        guest_name: "n",
        url: &url,
    };
    assert!(matches!(
        invite_card_png(&card),
        Err(RenderError::DataTooLong { .. })
    ));
}

#[test]
fn chart_bars_grow_with_their_votes() -> TestResult {
    let question = "What should we name the new meeting room on the third floor?";
    let bars = [
        Bar {
            label: "Ada",
            votes: 12,
        },
        Bar {
            label: "Grace",
            votes: 3,
        },
        Bar {
            label: "Nobody",
            votes: 0,
        },
        Bar {
            label: "Hedy, with a label long enough to be cut short at the count",
            votes: 12,
        },
    ];
    let image = luma(&results_chart_png(question, &bars)?)?;
    assert_eq!(image.width(), chart::CHART_WIDTH);
    let title = chart::title_lines(question).len();
    assert_eq!(title, 2);
    let (last_top, last_height) = chart::bar_band(title, bars.len() - 1);
    assert!(image.height() >= last_top + last_height);

    let dark: Vec<usize> = (0..bars.len())
        .map(|i| {
            let (top, height) = chart::bar_band(title, i);
            dark_pixels(&image, top, height)
        })
        .collect();
    assert!(dark[0] > dark[1], "{dark:?}");
    assert!(dark[1] > 0, "{dark:?}");
    assert_eq!(dark[2], 0, "{dark:?}");
    assert_eq!(dark[0], dark[3], "{dark:?}");
    Ok(())
}

#[test]
fn chart_without_votes_or_options_draws_empty_bars() -> TestResult {
    let bars = [
        Bar {
            label: "Yes",
            votes: 0,
        },
        Bar {
            label: "No",
            votes: 0,
        },
    ];
    let image = luma(&results_chart_png("Any votes?", &bars)?)?;
    for i in 0..bars.len() {
        let (top, height) = chart::bar_band(1, i);
        assert_eq!(dark_pixels(&image, top, height), 0);
    }
    let image = luma(&results_chart_png("", &[])?)?;
    assert_eq!(image.width(), chart::CHART_WIDTH);
    Ok(())
}

#[test]
fn chart_height_is_bounded_and_extreme_counts_do_not_overflow() -> TestResult {
    let labels: Vec<String> = (0..500).map(|i| format!("Option {i}")).collect();
    let bars: Vec<Bar<'_>> = labels
        .iter()
        .map(|label| Bar {
            label,
            votes: u64::MAX,
        })
        .collect();
    let many = luma(&results_chart_png(&"?".repeat(10_000), &bars)?)?;
    let capped = luma(&results_chart_png(
        &"?".repeat(10_000),
        &bars[..chart::MAX_BARS + 1],
    )?)?;
    assert_eq!(many.dimensions(), capped.dimensions());
    assert!(many.height() < 2000, "{}", many.height());
    Ok(())
}

#[test]
fn one_layout_makes_every_guests_card_and_each_scans_to_its_own_url() -> TestResult {
    let layout = CardLayout::new(
        "Where shall we go for the team lunch on Friday?",
        Some("Acme offsite"),
    );
    let names = [
        "Ada Lovelace",
        "李雷",
        "محمد عبد الرحمن",
        "Дмитрий",
        "प्रिया शर्मा",
        "",
    ];
    for (i, name) in names.iter().enumerate() {
        let url = format!("{INVITE_URL}{i}");
        let png = layout.png(&CardText {
            guest_name: name,
            url: &url,
            short_url: None,
        })?;
        let image = luma(&png)?;
        assert_eq!(image.dimensions(), (card::CARD_WIDTH, card::CARD_HEIGHT));
        assert_eq!(read_qr(&image)?, [url.as_str()], "{name}");
    }
    Ok(())
}

#[test]
fn cards_say_300_dpi() -> TestResult {
    let png = invite_card_png(&InviteCard {
        question: "q",
        guest_name: "n",
        url: INVITE_URL,
    })?;
    let at = png
        .windows(4)
        .position(|w| w == b"pHYs")
        .ok_or("no pHYs chunk")?;
    let field = |offset: usize| -> Result<u32, Box<dyn Error>> {
        let bytes = png.get(at + offset..at + offset + 4).ok_or("short pHYs")?;
        Ok(u32::from_be_bytes(bytes.try_into()?))
    };
    // 300 dots per inch is 11,811 per metre; unit 1 is the metre.
    assert_eq!(
        (field(4)?, field(8)?, png.get(at + 12)),
        (11_811, 11_811, Some(&1))
    );
    // The chunk comes before the image data, as the format requires, and decoders accept it.
    let idat = png.windows(4).position(|w| w == b"IDAT").ok_or("no IDAT")?;
    assert!(at < idat);
    luma(&png)?;
    Ok(())
}

#[test]
fn the_code_has_a_quiet_zone_of_four_modules() -> TestResult {
    let name = "Wolfgang Amadeus Mozart Johann Chrysostom";
    let image = luma(
        &CardLayout::new(&"Where to? ".repeat(30), Some("Event")).png(&CardText {
            guest_name: name,
            url: INVITE_URL,
            short_url: None,
        })?,
    )?;
    // The dark pixels of the QR band are the code's; its left edge is a finder pattern,
    // seven modules wide, which gives the module size.
    let band = card::QR_TOP..card::QR_TOP + card::QR_AREA;
    let dark = |x: u32, y: u32| image.get_pixel(x, y).0[0] < 128;
    let rows: Vec<u32> = band
        .clone()
        .filter(|&y| (0..image.width()).any(|x| dark(x, y)))
        .collect();
    let (top, bottom) = (rows[0], rows[rows.len() - 1]);
    let left = (0..image.width())
        .find(|&x| dark(x, top))
        .ok_or("no code")?;
    let finder = (left..image.width()).take_while(|&x| dark(x, top)).count() as u32;
    let module = finder / 7;
    assert!(module >= 2, "{module}");
    // Four modules of white above and below the code, across the whole card (no text), and
    // on either side of it.
    for y in top - 4 * module..top {
        assert!((0..image.width()).all(|x| !dark(x, y)), "row {y}");
    }
    for y in bottom + 1..=bottom + 4 * module {
        assert!((0..image.width()).all(|x| !dark(x, y)), "row {y}");
    }
    let right = (0..image.width())
        .rev()
        .find(|&x| dark(x, top))
        .ok_or("no code")?;
    assert!(left >= 4 * module && image.width() - 1 - right >= 4 * module);
    assert_eq!(read_qr(&image)?, [INVITE_URL]);
    Ok(())
}
