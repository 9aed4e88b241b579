//! QR codes: encoding a URL into a module matrix, drawing it onto a [`Canvas`], and the SVG
//! rendering.

use std::cell::RefCell;
use std::rc::Rc;

use qrcode::canvas::{Canvas as QrCanvas, MaskPattern, Module};
use qrcode::render::{Renderer, svg};
use qrcode::types::QrError;
use qrcode::{Color, EcLevel, Version, bits, ec};

use super::RenderError;
use super::canvas::{BLACK, Canvas, WHITE};

/// Light modules a scanner needs around the code to find it. The QR specification asks for
/// four; fewer makes phones hesitate when the code sits next to text.
pub(super) const QUIET_ZONE: u32 = 4;

/// Error correction level M restores about 15% of damaged modules: enough for a printed or
/// photographed card, while keeping a typical invite URL at version 5 (37 modules), so the
/// modules stay large on a card of modest size.
const EC_LEVEL: EcLevel = EcLevel::M;

/// The eight mask patterns of a (non-micro) QR code, in the order of their numbers.
const MASKS: [MaskPattern; 8] = [
    MaskPattern::Checkerboard,
    MaskPattern::HorizontalLines,
    MaskPattern::VerticalLines,
    MaskPattern::DiagonalLines,
    MaskPattern::LargeCheckerboard,
    MaskPattern::Fields,
    MaskPattern::Diamonds,
    MaskPattern::Meadow,
];

/// A QR code ready to draw: its modules, dark or light, row by row.
pub(super) struct Matrix {
    /// Modules per side, without the quiet zone.
    width: usize,
    colors: Vec<Color>,
}

impl Matrix {
    /// Encodes `url` as bytes at level M, in the smallest version that holds it.
    ///
    /// This is `QrCode::with_error_correction_level` step by step, with one difference: the
    /// mask is chosen by [`penalty`] here. The crate's own mask scoring allocates a boxed
    /// closure per module and took about 0.5 ms per code, three quarters of the time of a
    /// whole invite card. Here the eight masked codes are never built: each is the version's
    /// blank code under that mask ([`Blank`], made once per thread) with the data's dark
    /// modules flipped, a few word operations per row. Only the winner is masked by the
    /// crate, so the encoded data, error correction, masking and format information are
    /// still the crate's.
    pub(super) fn encode(url: &str) -> Result<Self, RenderError> {
        let (unmasked, version, width) = unmasked(url)?;
        let (data_rows, data_columns) = data_lines(&unmasked, width);
        let blank = blank(version, width);
        let mut rows = vec![Bits::default(); width];
        let mut columns = vec![Bits::default(); width];
        // The first mask with the lowest penalty wins, as in the specification's procedure.
        let mut best = (u32::MAX, MaskPattern::Checkerboard);
        for (pattern, (blank_rows, blank_columns)) in MASKS.into_iter().zip(&blank.masks) {
            for (line, (&b, &d)) in rows.iter_mut().zip(blank_rows.iter().zip(&data_rows)) {
                *line = b ^ d;
            }
            for (line, (&b, &d)) in columns
                .iter_mut()
                .zip(blank_columns.iter().zip(&data_columns))
            {
                *line = b ^ d;
            }
            let score = penalty(&rows, &columns, width);
            if score < best.0 {
                best = (score, pattern);
            }
        }
        let best = (best.0, masked(&unmasked, best.1));
        // The SVG renderer asserts this shape; checking it here keeps a broken invariant an
        // error instead of a panic.
        if width * width != best.1.len() {
            return Err(RenderError::Qr(QrError::InvalidVersion));
        }
        Ok(Self {
            width,
            colors: best.1,
        })
    }

    /// Modules per side, without the quiet zone.
    pub(super) fn size(&self) -> u32 {
        // A QR code has at most 177 modules per side, so this never saturates.
        u32::try_from(self.width).unwrap_or(u32::MAX)
    }

    /// Modules per side including the quiet zone on both sides.
    pub(super) fn size_with_quiet_zone(&self) -> u32 {
        self.size().saturating_add(2 * QUIET_ZONE)
    }

    /// Draws the code with its quiet zone, top-left corner at (`x`, `y`), each module a
    /// `module_px` square. The quiet zone is painted white explicitly, so the code scans
    /// whatever the canvas held underneath; then the dark modules go on top, a horizontal run
    /// of them as one rectangle.
    pub(super) fn draw(&self, canvas: &mut Canvas, x: u32, y: u32, module_px: u32) {
        let side = self.size_with_quiet_zone().saturating_mul(module_px);
        canvas.fill_rect(x, y, side, side, WHITE);
        let origin_x = x.saturating_add(QUIET_ZONE * module_px);
        let origin_y = y.saturating_add(QUIET_ZONE * module_px);
        for row in 0..self.size() {
            let top = origin_y.saturating_add(row.saturating_mul(module_px));
            for (first, length) in self.runs(row) {
                canvas.fill_rect(
                    origin_x.saturating_add(first.saturating_mul(module_px)),
                    top,
                    length.saturating_mul(module_px),
                    module_px,
                    BLACK,
                );
            }
        }
    }

    /// Draws module row `row` into one row of pixels (`line`, white where the code goes)
    /// whose code starts, quiet zone included, at pixel `x`.
    pub(super) fn draw_row(&self, row: u32, line: &mut [u8], x: u32, module_px: u32) {
        let origin_x = x.saturating_add(QUIET_ZONE * module_px) as usize;
        let module_px = module_px as usize;
        for (first, length) in self.runs(row) {
            let start = origin_x + first as usize * module_px;
            let end = (start + length as usize * module_px).min(line.len());
            if let Some(span) = line.get_mut(start.min(end)..end) {
                span.fill(BLACK);
            }
        }
    }

    /// The dark modules as horizontal runs: (row, first column, length), without the quiet
    /// zone, for vector output.
    pub(super) fn dark_runs(&self) -> Vec<(u32, u32, u32)> {
        (0..self.size())
            .flat_map(|row| {
                self.runs(row)
                    .map(move |(first, length)| (row, first, length))
            })
            .collect()
    }

    /// The runs of dark modules in module row `row`: (first column, length).
    fn runs(&self, row: u32) -> impl Iterator<Item = (u32, u32)> + '_ {
        let width = self.width.max(1);
        let modules = self
            .colors
            .get(row as usize * width..(row as usize + 1) * width)
            .unwrap_or_default();
        let mut col = 0usize;
        std::iter::from_fn(move || {
            while modules.get(col).is_some_and(|&c| c != Color::Dark) {
                col += 1;
            }
            let start = col;
            while modules.get(col) == Some(&Color::Dark) {
                col += 1;
            }
            // At most 177 modules a row: the columns fit a u32.
            (col > start).then(|| (start as u32, (col - start) as u32))
        })
    }

    /// The code as an SVG document at least `min_px` wide, quiet zone included. The SVG
    /// renderer draws every dark module as part of one path, which browsers scale crisply.
    pub(super) fn svg(&self, min_px: u32) -> String {
        Renderer::<svg::Color<'_>>::new(&self.colors, self.width, QUIET_ZONE)
            .quiet_zone(true)
            .min_dimensions(min_px, min_px)
            .dark_color(svg::Color("#000000"))
            .light_color(svg::Color("#ffffff"))
            .build()
    }
}

/// The code of `url` before masking, its version and its width in modules.
fn unmasked(url: &str) -> Result<(QrCanvas, Version, usize), RenderError> {
    let qr_error = |error| match error {
        QrError::DataTooLong => RenderError::DataTooLong { len: url.len() },
        other => RenderError::Qr(other),
    };
    let bits = bits::encode_auto(url.as_bytes(), EC_LEVEL).map_err(qr_error)?;
    let version = bits.version();
    let data = bits.into_bytes();
    let (codewords, ec) = ec::construct_codewords(&data, version, EC_LEVEL).map_err(qr_error)?;
    let mut canvas = QrCanvas::new(version, EC_LEVEL);
    canvas.draw_all_functional_patterns();
    canvas.draw_data(&codewords, &ec);
    // Versions are 21 to 177 modules wide, never negative.
    let width = usize::try_from(version.width()).unwrap_or(0);
    Ok((canvas, version, width))
}

/// The modules of `unmasked` with `pattern` applied, format information included.
fn masked(unmasked: &QrCanvas, pattern: MaskPattern) -> Vec<Color> {
    let mut canvas = unmasked.clone();
    canvas.apply_mask(pattern);
    canvas.into_colors()
}

/// The dark data modules of `unmasked` (those a mask flips), as rows and as columns.
fn data_lines(unmasked: &QrCanvas, width: usize) -> (Vec<Bits>, Vec<Bits>) {
    // At most 177 modules a side: the coordinates fit an i16.
    bit_lines(width, |x, y| {
        unmasked.get(x as i16, y as i16) == Module::Unmasked(Color::Dark)
    })
}

/// Rows and columns of `colors` (a `width`-wide code) as bit sets.
fn lines(colors: &[Color], width: usize) -> (Vec<Bits>, Vec<Bits>) {
    bit_lines(width, |x, y| {
        colors.get(y * width + x) == Some(&Color::Dark)
    })
}

/// A `width`-wide square of modules, dark where `dark(x, y)`, as rows and as columns.
fn bit_lines(width: usize, dark: impl Fn(usize, usize) -> bool) -> (Vec<Bits>, Vec<Bits>) {
    let mut rows = vec![Bits::default(); width];
    let mut columns = vec![Bits::default(); width];
    for (y, row) in rows.iter_mut().enumerate() {
        for (x, column) in columns.iter_mut().enumerate() {
            let dark = dark(x, y);
            row.put(x, dark);
            column.put(y, dark);
        }
    }
    (rows, columns)
}

/// A version's code with no data, under each of the eight masks: the function patterns and
/// the mask's format information, and the mask itself wherever data goes. Masking flips a
/// data module where the mask is dark, so a code under a mask is its blank under that mask
/// with the data's dark modules flipped (an exclusive or per row).
struct Blank {
    width: usize,
    /// Rows and columns, in the order of [`MASKS`].
    masks: Vec<(Vec<Bits>, Vec<Bits>)>,
}

impl Blank {
    fn new(version: Version, width: usize) -> Self {
        let mut canvas = QrCanvas::new(version, EC_LEVEL);
        canvas.draw_all_functional_patterns();
        let masks = MASKS
            .into_iter()
            .map(|pattern| lines(&masked(&canvas, pattern), width))
            .collect();
        Self { width, masks }
    }
}

thread_local! {
    /// The blanks of the versions this thread has encoded: a job's URLs are all one length,
    /// so its cards share one.
    static BLANKS: RefCell<Vec<Rc<Blank>>> = const { RefCell::new(Vec::new()) };
}

fn blank(version: Version, width: usize) -> Rc<Blank> {
    BLANKS.with(|cache| {
        if let Some(found) = cache.borrow().iter().find(|b| b.width == width) {
            return Rc::clone(found);
        }
        let made = Rc::new(Blank::new(version, width));
        cache.borrow_mut().push(Rc::clone(&made));
        made
    })
}

/// The specification's mask penalty (ISO/IEC 18004, 7.8.3) of a code given as its rows and
/// its columns: runs of five or more modules of one colour, 2x2 blocks of one colour,
/// finder-like 1:1:3:1:1 patterns with four light modules on either side, and imbalance
/// between dark and light. Lower is better: such codes have fewer features a scanner can
/// mistake for finder patterns or lose track in.
///
/// Rows and columns are scored as bit sets, a few word operations per rule, because the
/// straightforward loops branch on every module: on real (random-looking) codes they
/// mispredicted enough to cost about 20 µs per mask, 160 µs of a 350 µs card.
fn penalty(rows: &[Bits], columns: &[Bits], width: usize) -> u32 {
    if width == 0 || width > Bits::CAPACITY || rows.len() != width || columns.len() != width {
        return 0;
    }
    let mut score: u32 = rows
        .iter()
        .chain(columns)
        .map(|&line| line_penalty(line, width))
        .sum();

    // Blocks: a 2x2 square is one colour when neither row changes between its two columns
    // and the rows agree in the first column.
    let pairs = Bits::ones(width.saturating_sub(1));
    for (&top, &bottom) in rows.iter().zip(rows.iter().skip(1)) {
        let change = (top ^ top.shr(1)) | (bottom ^ bottom.shr(1)) | (top ^ bottom);
        score += 3 * (!change & pairs).count();
    }

    let dark: u32 = rows.iter().map(|row| row.count()).sum();
    let total = u32::try_from(width * width).unwrap_or(u32::MAX);
    let percent = dark.saturating_mul(100) / total.max(1);
    score + 10 * (percent.abs_diff(50) / 5)
}

/// The run and finder-pattern penalties of one row or column of `width` modules.
fn line_penalty(line: Bits, width: usize) -> u32 {
    // Bit i of `same` is set when modules i and i + 1 have the same colour, and of `five`
    // when modules i to i + 4 do. A run of n >= 5 modules sets n - 4 bits of `five`, one of
    // them at the run's start; its penalty, n - 2, is those bits plus 2 per start.
    let same = !(line ^ line.shr(1)) & Bits::ones(width.saturating_sub(1));
    let five = same & same.shr(1) & same.shr(2) & same.shr(3);
    let starts = five & !same.shl(1);
    let runs = five.count() + 2 * starts.count();

    // Bit i of `finder` is set when modules i to i + 6 read dark, light, dark, dark, dark,
    // light, dark. Modules past the edge read light: they are the quiet zone.
    let finder = line
        & !line.shr(1)
        & line.shr(2)
        & line.shr(3)
        & line.shr(4)
        & !line.shr(5)
        & line.shr(6)
        & Bits::ones(width.saturating_sub(6));
    let dark_before = line.shl(1) | line.shl(2) | line.shl(3) | line.shl(4);
    let dark_after = line.shr(7) | line.shr(8) | line.shr(9) | line.shr(10);
    let finders = (finder & !(dark_before & dark_after)).count();

    runs + 40 * finders
}

/// A row or column of modules, bit i set for a dark module i. Bits past the line's width are
/// always clear, which is what makes them read as the light quiet zone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bits([u64; 3]);

impl Bits {
    /// The widest QR code (version 40) has 177 modules per side.
    const CAPACITY: usize = 3 * 64;

    /// Bits 0 to `n - 1` set.
    fn ones(n: usize) -> Self {
        let mut bits = Self::default();
        for (i, word) in bits.0.iter_mut().enumerate() {
            let low = n.saturating_sub(i * 64).min(64);
            *word = u64::MAX.unbounded_shr(64 - low as u32);
        }
        bits
    }

    /// Sets bit `i` if `dark`, without a branch on `dark`.
    fn put(&mut self, i: usize, dark: bool) {
        if let Some(word) = self.0.get_mut(i / 64) {
            *word |= u64::from(dark) << (i % 64);
        }
    }

    /// Bit i of the result is bit i + k: each module sees the one k to its right.
    fn shr(self, k: u32) -> Self {
        let [a, b, c] = self.0;
        Self([
            a.unbounded_shr(k) | b.unbounded_shl(64 - k),
            b.unbounded_shr(k) | c.unbounded_shl(64 - k),
            c.unbounded_shr(k),
        ])
    }

    /// Bit i of the result is bit i - k: each module sees the one k to its left.
    fn shl(self, k: u32) -> Self {
        let [a, b, c] = self.0;
        Self([
            a.unbounded_shl(k),
            b.unbounded_shl(k) | a.unbounded_shr(64 - k),
            c.unbounded_shl(k) | b.unbounded_shr(64 - k),
        ])
    }

    fn count(self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }
}

impl std::ops::BitAnd for Bits {
    type Output = Self;
    fn bitand(self, other: Self) -> Self {
        let ([a, b, c], [x, y, z]) = (self.0, other.0);
        Self([a & x, b & y, c & z])
    }
}

impl std::ops::BitOr for Bits {
    type Output = Self;
    fn bitor(self, other: Self) -> Self {
        let ([a, b, c], [x, y, z]) = (self.0, other.0);
        Self([a | x, b | y, c | z])
    }
}

impl std::ops::BitXor for Bits {
    type Output = Self;
    fn bitxor(self, other: Self) -> Self {
        let ([a, b, c], [x, y, z]) = (self.0, other.0);
        Self([a ^ x, b ^ y, c ^ z])
    }
}

impl std::ops::Not for Bits {
    type Output = Self;
    /// Inverts every bit, including those past the line's width: callers mask the result.
    fn not(self) -> Self {
        let [a, b, c] = self.0;
        Self([!a, !b, !c])
    }
}

#[cfg(test)]
mod tests {
    use qrcode::QrCode;

    use super::*;

    #[test]
    fn the_encoding_is_the_crates_up_to_the_choice_of_mask() -> Result<(), RenderError> {
        for url in [
            "",
            "https://t.ly/p/a",
            &format!("https://tally.example.com/{}", "z".repeat(300)),
        ] {
            let reference = QrCode::with_error_correction_level(url.as_bytes(), EC_LEVEL)
                .map_err(RenderError::Qr)?
                .to_colors();
            let (unmasked, version, width) = unmasked(url)?;
            assert_eq!(width * width, reference.len());
            // Each mask's code, as the blank under that mask with the data flipped, is the
            // code the crate masks: the penalties are those of the real codes.
            let (data_rows, data_columns) = data_lines(&unmasked, width);
            let blank = Blank::new(version, width);
            for (&pattern, (rows, columns)) in MASKS.iter().zip(&blank.masks) {
                let (real_rows, real_columns) = lines(&masked(&unmasked, pattern), width);
                let flip = |a: &[Bits], b: &[Bits]| -> Vec<Bits> {
                    a.iter().zip(b).map(|(&x, &y)| x ^ y).collect()
                };
                assert_eq!(flip(rows, &data_rows), real_rows, "{url}");
                assert_eq!(flip(columns, &data_columns), real_columns, "{url}");
            }
            assert!(
                MASKS.iter().any(|&p| masked(&unmasked, p) == reference),
                "{url}"
            );
            // The chosen code is the first of the crate's eight with the lowest penalty.
            let codes: Vec<Vec<Color>> = MASKS.iter().map(|&p| masked(&unmasked, p)).collect();
            let scores: Vec<u32> = codes
                .iter()
                .map(|code| {
                    let (rows, columns) = lines(code, width);
                    penalty(&rows, &columns, width)
                })
                .collect();
            let lowest = scores.iter().min().copied().unwrap_or_default();
            let first = scores.iter().position(|&s| s == lowest).unwrap_or_default();
            assert_eq!(Matrix::encode(url)?.colors, codes[first], "{url}");
        }
        Ok(())
    }

    #[test]
    fn line_penalties_follow_the_specification() {
        let penalty = |s: &str| {
            let mut line = Bits::default();
            for (i, c) in s.chars().enumerate() {
                line.put(i, c == '#');
            }
            line_penalty(line, s.chars().count())
        };
        // Runs: five in a row cost 3, each further module 1 more.
        assert_eq!(penalty("#.#.#."), 0);
        assert_eq!(penalty(".....#.#"), 3);
        assert_eq!(penalty("#######."), 5);
        // A finder-like pattern with four light modules on one side costs 40, on top of
        // the run of four light modules, which costs nothing.
        assert_eq!(penalty("#.###.#....#"), 40);
        assert_eq!(penalty("#.#.#.###.#.#.#"), 0);
        // At the edge, the quiet zone counts as light.
        assert_eq!(penalty("#.###.#"), 40);
        // Only the side with four light modules needs its outer dark module alone.
        assert_eq!(penalty("....##.###.#...."), 40);
        assert_eq!(penalty("...##.###.##..."), 0);
        // Long lines cross the words of the bit set.
        let long = format!("{}#.###.#....{}", "#.".repeat(40), "#.".repeat(40));
        assert_eq!(penalty(&long), 40);
        assert_eq!(penalty(&"#".repeat(177)), 175);
    }
}
