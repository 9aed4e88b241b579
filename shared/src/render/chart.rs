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
//! Text is set like the invite cards' (`layout`, `raster`): the embedded Noto fonts with real
//! shaping and bidirectional order, so option labels in any script the cards support read as
//! written, and a label too long for its room ends with an ellipsis.
//!
//! The width is fixed; the height grows with the number of options, up to [`MAX_BARS`].

use std::fmt::Write as _;

use super::canvas::{BLACK, Canvas, WHITE};
use super::fonts::Style;
use super::layout::{self, Block, Line};
use super::{Bar, RenderError, raster};

pub(super) const CHART_WIDTH: u32 = 600;
/// Options drawn at most; the rest are summed up in a "+N more" line, so a poll with
/// hundreds of options still gives an image of bounded size.
pub(super) const MAX_BARS: usize = 20;

const MARGIN: u32 = 24;
const CONTENT_WIDTH: u32 = CHART_WIDTH - 2 * MARGIN;

/// The title: bold, on up to three lines.
const TITLE_SIZE: f32 = 22.0;
const TITLE_PITCH: u32 = 30;
const TITLE_LINES: usize = 3;
/// Labels, counts and the "+N more" line.
const LABEL_SIZE: f32 = 17.0;
/// The height of a label's line: room for ascenders above the baseline and descenders (and
/// Devanagari's marks) below it.
const TEXT_HEIGHT: u32 = 24;
/// Where a label's baseline sits below the top of its line.
const LABEL_BASELINE: f32 = 18.0;
/// The room kept between a label and its count.
const COUNT_GAP: f32 = 12.0;

const BAR_GAP: u32 = 4;
const BAR_HEIGHT: u32 = 24;
const BAR_PITCH: u32 = TEXT_HEIGHT + BAR_GAP + BAR_HEIGHT + 16;
const TRACK_SHADE: u8 = 230;
const FILL_SHADE: u8 = 48;
/// Labels and counts are a little lighter than the title, so the question reads first.
const LABEL_SHADE: u8 = 32;
/// A bar with at least one vote is never drawn narrower than this, so it stays visible next
/// to a much larger one.
const MIN_FILL: u32 = 2;

/// Where the rows start, below the title.
fn rows_top(title_lines: usize) -> u32 {
    match title_lines {
        0 => MARGIN,
        n => MARGIN + n as u32 * TITLE_PITCH + 12,
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

/// The title as set, so that tests can find the bars.
#[cfg(test)]
pub(super) fn title_lines(question: &str) -> Vec<Line> {
    title(question).lines
}

fn title(question: &str) -> Block {
    layout::set(
        question,
        Style::Bold,
        TITLE_SIZE,
        CONTENT_WIDTH as f32,
        TITLE_LINES,
    )
}

/// One line of label-sized text, cut with an ellipsis to `max_width`.
fn label(text: &str, max_width: f32) -> Option<Line> {
    layout::set(text, Style::Regular, LABEL_SIZE, max_width, 1)
        .lines
        .into_iter()
        .next()
}

pub(super) fn render(question: &str, bars: &[Bar<'_>]) -> Result<Vec<u8>, RenderError> {
    let title = title(question);
    let title_count = title.lines.len();
    let shown = &bars[..bars.len().min(MAX_BARS)];
    let hidden = bars.len() - shown.len();

    let shown_count = u32::try_from(shown.len()).unwrap_or(u32::MAX);
    let mut height = rows_top(title_count) + shown_count * BAR_PITCH;
    if hidden > 0 {
        height += TEXT_HEIGHT + BAR_GAP;
    }
    height += MARGIN / 2;
    let mut canvas = Canvas::new(CHART_WIDTH, height, WHITE);

    let margin = MARGIN as f32;
    let content = CONTENT_WIDTH as f32;
    // The first baseline sits 0.8 em below the margin (a line's ink above the baseline).
    let mut baseline = margin + 0.8 * TITLE_SIZE + 2.0;
    for line in &title.lines {
        raster::draw_line(&mut canvas, line, TITLE_SIZE, margin, baseline, BLACK);
        baseline += TITLE_PITCH as f32;
    }

    // Sums in u128, so no number of u64 counts can overflow; percentages and bar lengths are
    // computed there too, and a total of zero gives 0% and empty bars instead of a division
    // by zero.
    let total: u128 = bars.iter().map(|b| u128::from(b.votes)).sum();
    let max = shown.iter().map(|b| b.votes).max().unwrap_or(0);
    let mut count = String::new();
    for (index, bar) in shown.iter().enumerate() {
        let (bar_top, bar_height) = bar_band(title_count, index);
        let label_baseline = bar_top.saturating_sub(TEXT_HEIGHT + BAR_GAP) as f32 + LABEL_BASELINE;

        count.clear();
        let percent = match total {
            0 => 0,
            total => (u128::from(bar.votes) * 200 + total) / (2 * total),
        };
        // Writing to a String cannot fail.
        let _ = write!(count, "{} ({percent}%)", bar.votes);
        let count_width = match label(&count, content) {
            Some(line) => {
                let x = margin + (content - line.width).max(0.0);
                raster::draw_line(
                    &mut canvas,
                    &line,
                    LABEL_SIZE,
                    x,
                    label_baseline,
                    LABEL_SHADE,
                );
                line.width
            }
            None => 0.0,
        };
        // The label gets the width the count leaves, less a gap.
        if let Some(line) = label(bar.label, content - count_width - COUNT_GAP) {
            raster::draw_line(
                &mut canvas,
                &line,
                LABEL_SIZE,
                margin,
                label_baseline,
                LABEL_SHADE,
            );
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
        let (top, _) = bar_band(title_count, shown.len());
        let baseline = top.saturating_sub(TEXT_HEIGHT + BAR_GAP) as f32 + LABEL_BASELINE;
        if let Some(line) = label(&format!("+{hidden} more"), content) {
            raster::draw_line(
                &mut canvas,
                &line,
                LABEL_SIZE,
                margin,
                baseline,
                LABEL_SHADE,
            );
        }
    }

    canvas.encode_png()
}
