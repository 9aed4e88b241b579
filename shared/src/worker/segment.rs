//! A chunk's segment: the one object a chunk of invites writes (`ObjectKey::Segment`), holding
//! its cards and what the ZIP needs to know about each (guest, invite URL, CRC-32, size,
//! time), so that the ZIP's builder reads one object per chunk and never renders, hashes or
//! looks up anything again.
//!
//! Layout: the 8 bytes `TLYSEG01`, the header's length (u32, little-endian), the header (JSON,
//! [`Header`]), then the cards' PNG bytes one after another, in the header's order.

use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 8] = b"TLYSEG01";

/// One card in a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentCard {
    /// The guest's index in the job (from 0).
    pub index: u32,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The invite URL the card's QR code encodes.
    pub url: String,
    /// The PNG's CRC-32 (as the ZIP stores it) and length in bytes.
    pub crc32: u32,
    pub size: u32,
    /// When the card was made (Unix seconds): the ZIP entry's time.
    pub made_at: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    cards: Vec<SegmentCard>,
}

/// A segment read back: its cards and their bytes.
#[derive(Debug)]
pub struct Segment {
    pub cards: Vec<SegmentCard>,
    bytes: Vec<u8>,
    data_start: usize,
}

impl Segment {
    /// The segment's bytes for `cards` and their PNGs (in the same order).
    pub fn encode(cards: &[SegmentCard], pngs: &[Vec<u8>]) -> Result<Vec<u8>, String> {
        if cards.len() != pngs.len()
            || cards
                .iter()
                .zip(pngs)
                .any(|(c, png)| usize::try_from(c.size).ok() != Some(png.len()))
        {
            return Err("a segment's cards and their bytes disagree".into());
        }
        let header = serde_json::to_vec(&Header {
            cards: cards.to_vec(),
        })
        .map_err(|e| e.to_string())?;
        let length = u32::try_from(header.len()).map_err(|e| e.to_string())?;
        let data: usize = pngs.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + data);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&header);
        for png in pngs {
            out.extend_from_slice(png);
        }
        Ok(out)
    }

    /// Reads a segment, checking that its cards' sizes account for every byte after the
    /// header.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, String> {
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or("not a segment (no magic)")?;
        let length: [u8; 4] = rest
            .get(..4)
            .and_then(|l| l.try_into().ok())
            .ok_or("a segment cut short")?;
        let length = usize::try_from(u32::from_le_bytes(length)).map_err(|e| e.to_string())?;
        let data_start = MAGIC.len() + 4 + length;
        let header: Header = serde_json::from_slice(
            bytes
                .get(MAGIC.len() + 4..data_start)
                .ok_or("a segment's header cut short")?,
        )
        .map_err(|e| e.to_string())?;
        let sizes: u64 = header.cards.iter().map(|c| u64::from(c.size)).sum();
        if u64::try_from(bytes.len() - data_start).ok() != Some(sizes) {
            return Err("a segment's cards do not fill it".into());
        }
        Ok(Self {
            cards: header.cards,
            bytes,
            data_start,
        })
    }

    /// Each card with its PNG bytes, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&SegmentCard, &[u8])> {
        let mut at = self.data_start;
        self.cards.iter().map(move |card| {
            let end = at + usize::try_from(card.size).unwrap_or(usize::MAX);
            let png = self.bytes.get(at..end).unwrap_or_default();
            at = end;
            (card, png)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(index: u32, png: &[u8]) -> SegmentCard {
        SegmentCard {
            index,
            name: format!("Guest {index}"),
            email: None,
            url: format!("http://t/i/{index}"),
            crc32: crc32fast::hash(png),
            size: u32::try_from(png.len()).unwrap_or(0),
            made_at: 1_700_000_000,
        }
    }

    #[test]
    fn a_segment_round_trips_and_refuses_damage() {
        let pngs = vec![vec![1u8; 10], vec![2u8; 3], Vec::new()];
        let cards: Vec<_> = pngs
            .iter()
            .enumerate()
            .map(|(i, p)| card(u32::try_from(i).unwrap_or(0), p))
            .collect();
        let bytes = Segment::encode(&cards, &pngs).unwrap_or_default();
        let segment = Segment::parse(bytes.clone()).unwrap_or_else(|e| panic!("{e}"));
        let back: Vec<(SegmentCard, Vec<u8>)> = segment
            .iter()
            .map(|(c, p)| (c.clone(), p.to_vec()))
            .collect();
        assert_eq!(back, cards.into_iter().zip(pngs).collect::<Vec<_>>());
        assert!(Segment::parse(bytes[..bytes.len() - 1].to_vec()).is_err());
        assert!(Segment::parse(b"PK\x03\x04".to_vec()).is_err());
        assert!(Segment::encode(&[card(0, b"abc")], &[b"ab".to_vec()]).is_err());
    }
}
