//! The results chart's layout: the question as a title, then per option a line with its label
//! on the left and "votes (percent%)" on the right, and under it a bar scaled to the option
//! with the most votes.
//!
//! ```text
//! The poll question, wrapped over up to three lines
//!
//! Label one                         12 (60%)
//! ####################################------   <- track in light grey, fill in dark
//! Label two                          8 (40%)
//! ########################------------------
//! +3 more
//! ```
//!
//! The width is fixed; the height grows with the number of options, up to [`MAX_BARS`].

use std::fmt::Write as _;

use super::canvas::{BLACK, Canvas, WHITE};
use super::{Bar, RenderError, text};

pub(super) const CHART_WIDTH: u32 = 600;
/// Options drawn at most; the rest are summed up in a "+N more" line, so a poll with
/// hundreds of options still gives an image of bounded size.
pub(super) const MAX_BARS: usize = 20;

const MARGIN: u32 = 24;
const CONTENT_WIDTH: u32 = CHART_WIDTH - 2 * MARGIN;

const SCALE: u32 = 2;
const TEXT_HEIGHT: u32 = text::CELL * SCALE;
const COLS: usize = (CONTENT_WIDTH / TEXT_HEIGHT) as usize;
const TITLE_LINES: usize = 3;
const LINE_PITCH: u32 = TEXT_HEIGHT + 6;

const BAR_GAP: u32 = 6;
const BAR_HEIGHT: u32 = 24;
const BAR_PITCH: u32 = TEXT_HEIGHT + BAR_GAP + BAR_HEIGHT + 16;
const TRACK_SHADE: u8 = 230;
const FILL_SHADE: u8 = 48;
/// A bar with at least one vote is never drawn narrower than this, so it stays visible next
/// to a much larger one.
const MIN_FILL: u32 = 2;

/// Where the rows start, below the title.
fn rows_top(title_lines: usize) -> u32 {
    match title_lines {
        0 => MARGIN,
        n => MARGIN + n as u32 * LINE_PITCH + 10,
    }
}

/// The vertical band (top, height) of the bar of the `index`th option.
pub(super) fn bar_band(title_lines: usize, index: usize) -> (u32, u32) {
    let index = u32::try_from(index).unwrap_or(u32::MAX);
    let top = rows_top(title_lines)
        .saturating_add(index.saturating_mul(BAR_PITCH))
        .saturating_add(TEXT_HEIGHT + BAR_GAP);
    (top, BAR_HEIGHT)
}

/// The title as drawn, so that tests can find the bars.
pub(super) fn title_lines(question: &str) -> Vec<text::Line> {
    text::wrap(question, COLS, TITLE_LINES)
}

pub(super) fn render(question: &str, bars: &[Bar<'_>]) -> Result<Vec<u8>, RenderError> {
    let title = title_lines(question);
    let shown = &bars[..bars.len().min(MAX_BARS)];
    let hidden = bars.len() - shown.len();

    let shown_count = u32::try_from(shown.len()).unwrap_or(u32::MAX);
    let mut height = rows_top(title.len()) + shown_count * BAR_PITCH;
    if hidden > 0 {
        height += LINE_PITCH;
    }
    height += MARGIN / 2;
    let mut canvas = Canvas::new(CHART_WIDTH, height, WHITE);

    let mut y = MARGIN;
    for line in &title {
        text::draw(&mut canvas, MARGIN, y, line, SCALE, BLACK);
        y += LINE_PITCH;
    }

    // Sums in u128, so no number of u64 counts can overflow; percentages and bar lengths are
    // computed there too, and a total of zero gives 0% and empty bars instead of a division
    // by zero.
    let total: u128 = bars.iter().map(|b| u128::from(b.votes)).sum();
    let max = shown.iter().map(|b| b.votes).max().unwrap_or(0);
    let mut count = String::new();
    for (index, bar) in shown.iter().enumerate() {
        let (bar_top, bar_height) = bar_band(title.len(), index);
        let label_top = bar_top.saturating_sub(TEXT_HEIGHT + BAR_GAP);

        count.clear();
        let percent = match total {
            0 => 0,
            total => (u128::from(bar.votes) * 200 + total) / (2 * total),
        };
        // Writing to a String cannot fail.
        let _ = write!(count, "{} ({percent}%)", bar.votes);
        let count_line: text::Line = count.chars().collect();
        let count_px = text::width_px(&count_line, SCALE);
        text::draw(
            &mut canvas,
            MARGIN + CONTENT_WIDTH.saturating_sub(count_px),
            label_top,
            &count_line,
            SCALE,
            BLACK,
        );
        // The label gets the columns the count leaves, less one for a gap.
        let label_cols = COLS.saturating_sub(count_line.len() + 1);
        for line in text::wrap(bar.label, label_cols, 1) {
            text::draw(&mut canvas, MARGIN, label_top, &line, SCALE, BLACK);
        }

        canvas.fill_rect(MARGIN, bar_top, CONTENT_WIDTH, bar_height, TRACK_SHADE);
        let fill = match max {
            0 => 0,
            max => {
                let scaled = u128::from(bar.votes) * u128::from(CONTENT_WIDTH) / u128::from(max);
                let scaled = u32::try_from(scaled).unwrap_or(CONTENT_WIDTH);
                if bar.votes > 0 {
                    scaled.max(MIN_FILL)
                } else {
                    0
                }
            }
        };
        canvas.fill_rect(MARGIN, bar_top, fill, bar_height, FILL_SHADE);
    }

    if hidden > 0 {
        let (top, _) = bar_band(title.len(), shown.len());
        let more: text::Line = format!("+{hidden} more").chars().collect();
        let label_top = top.saturating_sub(TEXT_HEIGHT + BAR_GAP);
        text::draw(&mut canvas, MARGIN, label_top, &more, SCALE, BLACK);
    }

    canvas.encode_png()
}
