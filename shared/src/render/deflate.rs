//! The invite card's own PNG encoder: 8-bit grayscale, the "up" filter, one zlib stream of
//! one fixed-Huffman deflate block, written row by row and resumable from a saved state.
//!
//! Why not the `png` crate: profiling `card_speed` showed half of a card's time in PNG
//! encoding (the filter pass, `fdeflate`'s entropy coder over all 630,000 bytes, and a second
//! pass for the Adler-32 checksum), much of it spent on rows that are the same on every card
//! of a job. This encoder is built around what a card is made of:
//! - Most rows repeat the row above (a QR module is 11 rows tall, and blank space is blank):
//!   one `memcmp` finds them, and the filter makes them four codes (a row of zeros).
//! - Other rows, filtered, are runs (margins, the insides of modules and glyph stems) around
//!   the anti-aliased edges of text: a run is one literal and back-references at distance
//!   one; only the edges are literals.
//! - The rows above the guest's name (event, question, rule) are the same on every card, so a
//!   job encodes them once ([`Encoder`] is `Clone`: a card starts from the saved state).
//! - The checksum is kept in closed form per run and per repeated row, so it costs no second
//!   pass over the bytes.
//!
//! Fixed Huffman codes cost 8 or 9 bits per literal where `fdeflate`'s tuned table costs
//! fewer; cards stay around 30 KB.

/// Adler-32's modulus.
const ADLER: u64 = 65_521;

/// The longest back-reference deflate allows, and the shortest.
const MAX_MATCH: usize = 258;
const MIN_MATCH: usize = 3;

/// The bits of `code` in reverse order (deflate writes Huffman codes from their most
/// significant bit, into a stream filled from the least significant bit).
const fn reverse(code: u32, len: u32) -> u32 {
    let mut out = 0;
    let mut i = 0;
    while i < len {
        out |= ((code >> i) & 1) << (len - 1 - i);
        i += 1;
    }
    out
}

/// The fixed literal/length code of every symbol (RFC 1951, 3.2.6): (bits as written, length).
const LITERALS: [(u32, u32); 288] = {
    let mut table = [(0, 0); 288];
    let mut s = 0;
    while s < 288 {
        let (code, len) = match s {
            0..=143 => (0x30 + s, 8),
            144..=255 => (0x190 + s - 144, 9),
            256..=279 => (s - 256, 7),
            _ => (0xC0 + s - 280, 8),
        };
        table[s as usize] = (reverse(code, len), len);
        s += 1;
    }
    table
};

/// Length symbols' base lengths and extra bits, for symbols 257 to 285.
const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u32; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];

/// Every match length (3 to 258) as the bits to write: its symbol's code, then its extra
/// bits. Index: the length.
const LENGTHS: [(u32, u32); MAX_MATCH + 1] = {
    let mut table = [(0, 0); MAX_MATCH + 1];
    let mut length = MIN_MATCH;
    while length <= MAX_MATCH {
        // The last base not above the length; 258 has a symbol of its own.
        let mut i = 28;
        while LENGTH_BASE[i] as usize > length {
            i -= 1;
        }
        let (code, len) = LITERALS[257 + i];
        let extra = (length - LENGTH_BASE[i] as usize) as u32;
        table[length] = (code | (extra << len), len + LENGTH_EXTRA[i]);
        length += 1;
    }
    table
};

/// A zlib stream of grayscale rows in progress.
#[derive(Debug, Clone)]
pub(super) struct Encoder {
    width: usize,
    out: Vec<u8>,
    /// Bits not yet written to `out`, from the least significant.
    bits: u64,
    nbits: u32,
    /// Adler-32 so far, each half reduced.
    a: u64,
    b: u64,
    rows: u32,
    /// The row being written, filtered (kept to spare an allocation per row).
    filtered: Vec<u8>,
}

/// Rows encoded on their own ([`Encoder::segment`]): their whole bytes, the bits after them,
/// and their checksum halves.
#[derive(Debug, Clone)]
pub(super) struct Segment {
    bytes: Vec<u8>,
    bits: u32,
    nbits: u32,
    a: u64,
    b: u64,
    /// Bytes of the uncompressed stream (filter bytes included).
    length: u64,
    rows: u32,
}

/// PNG's row filters: none, and "up" (each byte less the one above it).
const NONE: u8 = 0;
const UP: u8 = 2;

impl Encoder {
    /// A stream for rows of `width` pixels (at most 32,767, deflate's window less the filter
    /// byte).
    pub(super) fn new(width: usize) -> Self {
        let mut encoder = Self {
            width,
            // zlib header: deflate, 32 KiB window, no dictionary, the fastest level's flag.
            out: vec![0x78, 0x01],
            bits: 0,
            nbits: 0,
            a: 1,
            b: 0,
            rows: 0,
            filtered: Vec::with_capacity(width),
        };
        // One block, the last (BFINAL = 1), fixed Huffman codes (BTYPE = 01).
        encoder.put(0b011, 3);
        encoder
    }

    /// Rows encoded on their own, to be [`Encoder::append`]ed to streams at any bit: `above`
    /// is the row every stream will have written before them.
    pub(super) fn segment(width: usize, pixels: &[u8], above: Option<&[u8]>) -> Segment {
        let mut encoder = Self {
            width,
            out: Vec::new(),
            bits: 0,
            nbits: 0,
            // The checksum halves of these bytes alone, for combining.
            a: 0,
            b: 0,
            rows: 0,
            filtered: Vec::with_capacity(width),
        };
        encoder.rows(pixels, above);
        Segment {
            bytes: encoder.out,
            bits: encoder.bits as u32,
            nbits: encoder.nbits,
            a: encoder.a,
            b: encoder.b,
            length: u64::from(encoder.rows) * (width as u64 + 1),
            rows: encoder.rows,
        }
    }

    /// Writes `segment`'s rows, as if they had been encoded here. Its back-references all
    /// point inside it (distance one, after a literal of its own), so its bits mean the same
    /// after any stream; only their alignment changes, and the checksum is combined.
    pub(super) fn append(&mut self, segment: &Segment) {
        let mut words = segment.bytes.chunks_exact(4);
        for word in &mut words {
            let word: [u8; 4] = word.try_into().unwrap_or_default();
            self.put(u32::from_le_bytes(word), 32);
        }
        for &byte in words.remainder() {
            self.put(u32::from(byte), 8);
        }
        self.put(segment.bits, segment.nbits);
        self.b = (self.b + segment.length % ADLER * self.a + segment.b) % ADLER;
        self.a = (self.a + segment.a) % ADLER;
        self.rows += segment.rows;
    }

    /// A copy to carry on from, with room for a whole card's stream so that it is not
    /// reallocated as it grows.
    pub(super) fn resume(&self) -> Self {
        let mut out = Vec::with_capacity(64 * 1024);
        out.extend_from_slice(&self.out);
        Self {
            out,
            ..self.clone()
        }
    }

    fn put(&mut self, bits: u32, len: u32) {
        self.bits |= u64::from(bits) << self.nbits;
        self.nbits += len;
        if self.nbits >= 32 {
            self.out
                .extend_from_slice(&(self.bits as u32).to_le_bytes());
            self.bits >>= 32;
            self.nbits -= 32;
        }
    }

    fn literal(&mut self, byte: u8) {
        let (code, len) = LITERALS[usize::from(byte)];
        self.put(code, len);
    }

    /// `length` bytes copied from `distance` back (as its code's bits and their count), in
    /// matches of at most 258; what is left below the shortest match is written as literals
    /// of `byte` (only ever the case for runs, where every byte is `byte`).
    fn copy(&mut self, mut length: usize, (distance, distance_len): (u32, u32), byte: u8) {
        while length >= MIN_MATCH {
            // Leave at least three for the last match rather than one or two.
            let take = if length > MAX_MATCH && length - MAX_MATCH < MIN_MATCH {
                MAX_MATCH - MIN_MATCH
            } else {
                length.min(MAX_MATCH)
            };
            let (code, len) = LENGTHS[take];
            self.put(code, len);
            self.put(distance, distance_len);
            length -= take;
        }
        for _ in 0..length {
            self.literal(byte);
        }
    }

    /// Appends `pixels` (whole rows); `above` is the row before the first, when the stream
    /// has one (it must be the last row written). Every row after the first is written with
    /// the "up" filter, as runs (a literal and back-references at distance one) and literals.
    pub(super) fn rows<'a>(&mut self, pixels: &'a [u8], mut above: Option<&'a [u8]>) {
        let width = self.width.max(1);
        let n = (width + 1) as u64;
        for row in pixels.chunks_exact(width) {
            let (sum, weighted) = match above {
                Some(previous) if previous == row => {
                    self.repeat(1);
                    above = Some(row);
                    continue;
                }
                Some(previous) => {
                    // Each pixel less the one above: a glyph's stem or a module's inside is
                    // zero, so text rows are runs around its edges rather than literals.
                    let mut filtered = std::mem::take(&mut self.filtered);
                    filtered.clear();
                    filtered.extend(row.iter().zip(previous).map(|(p, a)| p.wrapping_sub(*a)));
                    let sums = self.row(UP, &filtered);
                    self.filtered = filtered;
                    sums
                }
                None => self.row(NONE, row),
            };
            self.b = (self.b + n * self.a + weighted) % ADLER;
            self.a = (self.a + sum) % ADLER;
            self.rows += 1;
            above = Some(row);
        }
    }

    /// Writes `count` more copies of the last row written, for a caller that knows its rows
    /// repeat without comparing them. At least one row must have been written.
    pub(super) fn repeat(&mut self, count: u32) {
        let width = self.width.max(1);
        let n = (width + 1) as u64;
        for _ in 0..count {
            // The "up" filter makes a repeated row all zeros: four codes.
            self.literal(UP);
            self.literal(0);
            self.copy(width - 1, (0, 5), 0);
            // Its checksum halves: the filter byte, then that sum after every byte.
            self.b = (self.b + n * self.a + u64::from(UP) * n) % ADLER;
            self.a = (self.a + u64::from(UP)) % ADLER;
            self.rows += 1;
        }
    }

    /// Writes one row (its filter byte, then `row` as runs and literals); returns its byte
    /// sum and weighted sum (the Adler-32 halves of the row alone, before reduction).
    fn row(&mut self, filter: u8, row: &[u8]) -> (u64, u64) {
        self.literal(filter);
        let (mut sum, mut weighted) = (u64::from(filter), u64::from(filter));
        let mut i = 0;
        while i < row.len() {
            let byte = row[i];
            // Most bytes of text rows are anti-aliased edges, each unlike the next: written
            // as they are, without looking for a run.
            if row.get(i + 1) != Some(&byte) {
                let value = u64::from(byte);
                sum += value;
                weighted += sum;
                self.literal(byte);
                i += 1;
                continue;
            }
            let mut j = i + 2;
            // Runs are found eight bytes at a time: margins and modules are long runs.
            let pattern = u64::from_ne_bytes([byte; 8]);
            while let Some(chunk) = row.get(j..j + 8)
                && <[u8; 8]>::try_from(chunk).map(u64::from_ne_bytes).ok() == Some(pattern)
            {
                j += 8;
            }
            while row.get(j) == Some(&byte) {
                j += 1;
            }
            let run = (j - i) as u64;
            // The checksum of `run` bytes of `byte`, in closed form.
            let value = u64::from(byte);
            weighted += run * sum + value * run * (run + 1) / 2;
            sum += run * value;
            self.literal(byte);
            self.copy(j - i - 1, (0, 5), byte);
            i = j;
        }
        (sum, weighted)
    }

    /// The finished PNG: signature, header, `pHYs` at `dpi`, the image data, end.
    pub(super) fn finish(mut self, dpi: u32) -> Vec<u8> {
        // End of block, then the stream's last bits padded to a byte, then Adler-32.
        let (code, len) = LITERALS[256];
        self.put(code, len);
        let tail = self.bits.to_le_bytes();
        self.out
            .extend_from_slice(&tail[..self.nbits.div_ceil(8) as usize]);
        let adler = ((self.b << 16) | self.a) as u32;
        self.out.extend_from_slice(&adler.to_be_bytes());

        let mut png = Vec::with_capacity(self.out.len() + 80);
        png.extend_from_slice(b"\x89PNG\r\n\x1a\n");
        let mut header = Vec::with_capacity(13);
        header.extend_from_slice(&u32::try_from(self.width).unwrap_or(0).to_be_bytes());
        header.extend_from_slice(&self.rows.to_be_bytes());
        // 8 bits a sample, grayscale, deflate, no filter method beyond the standard, no
        // interlace.
        header.extend_from_slice(&[8, 0, 0, 0, 0]);
        chunk(&mut png, b"IHDR", &header);
        // 1 inch = 0.0254 m, rounded to the nearest whole pixel per metre (300 DPI: 11,811).
        let per_metre = (u64::from(dpi) * 10_000 + 127) / 254;
        let per_metre = u32::try_from(per_metre).unwrap_or(u32::MAX).to_be_bytes();
        let mut phys = Vec::with_capacity(9);
        phys.extend_from_slice(&per_metre);
        phys.extend_from_slice(&per_metre);
        phys.push(1);
        chunk(&mut png, b"pHYs", &phys);
        chunk(&mut png, b"IDAT", &self.out);
        chunk(&mut png, b"IEND", &[]);
        png
    }
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    png.extend_from_slice(&crc.finalize().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png: &[u8]) -> image::GrayImage {
        image::load_from_memory_with_format(png, image::ImageFormat::Png)
            .map(|i| i.to_luma8())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Rows of every kind: blank, repeated, long runs, runs of every length around the match
    /// limits, every byte value, noise; decoded by the `png` crate (which checks the CRCs and
    /// the Adler-32) to the same pixels, whole or resumed from a saved prefix.
    #[test]
    fn rows_decode_to_the_same_pixels_whole_or_resumed() {
        let width = 601;
        let mut pixels = vec![255u8; width * 40];
        for (y, row) in pixels.chunks_exact_mut(width).enumerate() {
            match y % 8 {
                0 | 1 => {}
                2 => row.iter_mut().enumerate().for_each(|(x, p)| *p = x as u8),
                3 => row[..261].fill(0),
                4 => {
                    let mut x = 0;
                    for run in 1..40 {
                        row[x..(x + run).min(width)].fill((run * 37) as u8);
                        x += run;
                        if x >= width {
                            break;
                        }
                    }
                }
                5 => row.iter_mut().enumerate().for_each(|(x, p)| {
                    *p = ((x * 7919 + y * 104_729) % 251) as u8;
                }),
                6 => row[300..].fill(0),
                _ => row[1..width - 1].fill(128),
            }
        }
        let mut whole = Encoder::new(width);
        whole.rows(&pixels, None);
        let png = whole.finish(300);
        let image = decode(&png);
        assert_eq!(image.dimensions(), (601, 40));
        assert_eq!(image.as_raw(), &pixels);

        let split = 13 * width;
        let mut prefix = Encoder::new(width);
        prefix.rows(&pixels[..split], None);
        let mut resumed = prefix.clone();
        resumed.rows(&pixels[split..], Some(&pixels[split - width..split]));
        assert_eq!(resumed.finish(300), png, "resuming changes nothing");

        // A segment encoded on its own and appended at whatever bit the stream is at gives
        // the same pixels (the bytes differ only in where its bits fall).
        for split in [1, 5, 13, 22] {
            let (start, end) = (split * width, (split + 9) * width);
            let above = &pixels[start - width..start];
            let segment = Encoder::segment(width, &pixels[start..end], Some(above));
            let mut stitched = Encoder::new(width);
            stitched.rows(&pixels[..start], None);
            stitched.append(&segment);
            stitched.rows(&pixels[end..], Some(&pixels[end - width..end]));
            assert_eq!(
                decode(&stitched.finish(300)).as_raw(),
                &pixels,
                "split {split}"
            );
        }

        // The 300 DPI `pHYs`: 11,811 pixels a metre on both axes.
        let phys = png
            .windows(4)
            .position(|w| w == b"pHYs")
            .unwrap_or_else(|| panic!("no pHYs"));
        assert_eq!(
            &png[phys + 4..phys + 13],
            &[0, 0, 0x2e, 0x23, 0, 0, 0x2e, 0x23, 1]
        );
    }

    #[test]
    fn an_empty_image_is_still_a_stream() {
        let mut encoder = Encoder::new(3);
        encoder.rows(&[0, 0, 0], None);
        assert_eq!(decode(&encoder.finish(72)).as_raw(), &[0, 0, 0]);
    }
}
