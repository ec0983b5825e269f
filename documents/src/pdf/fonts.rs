//! The embedded fonts: DejaVu Sans and DejaVu Sans Bold (documents/fonts/, licence in
//! `documents/fonts/LICENSE`), which cover Cyrillic with every Kazakh letter
//! (ә ғ қ ң ө ұ ү һ і). krilla embeds the subset of glyphs a document uses; skrifa reads
//! the glyph advances so figures can be right-aligned.

use krilla::text::Font;
use skrifa::charmap::Charmap;
use skrifa::instance::{LocationRef, Size};
use skrifa::metrics::GlyphMetrics;
use skrifa::raw::TableProvider;
use skrifa::{FontRef, MetadataProvider};

const REGULAR: &[u8] = include_bytes!("../../fonts/DejaVuSans.ttf");
const BOLD: &[u8] = include_bytes!("../../fonts/DejaVuSans-Bold.ttf");

struct Face {
    pdf: Font,
    charmap: Charmap<'static>,
    metrics: GlyphMetrics<'static>,
    units_per_em: f32,
}

impl Face {
    fn load(bytes: &'static [u8]) -> Face {
        let font = FontRef::new(bytes).expect("the committed DejaVu fonts parse");
        let units_per_em = f32::from(font.head().map(|head| head.units_per_em()).unwrap_or(2048));
        Face {
            pdf: Font::new(bytes.to_vec().into(), 0).expect("krilla reads the committed DejaVu fonts"),
            charmap: font.charmap(),
            metrics: font.glyph_metrics(Size::unscaled(), LocationRef::default()),
            units_per_em,
        }
    }

    fn measure(&self, text: &str, size: f32) -> f32 {
        let units: f32 = text
            .chars()
            .map(|c| {
                let glyph = self.charmap.map(c).unwrap_or_default();
                self.metrics.advance_width(glyph).unwrap_or(0.0)
            })
            .sum();
        units * size / self.units_per_em
    }
}

/// The regular and bold faces, loaded once and shared by every document.
pub struct Fonts {
    regular: Face,
    bold: Face,
}

impl Default for Fonts {
    fn default() -> Self {
        Fonts::new()
    }
}

impl Fonts {
    /// Loads both faces.
    pub fn new() -> Fonts {
        Fonts {
            regular: Face::load(REGULAR),
            bold: Face::load(BOLD),
        }
    }

    /// The width of `text` at `size` points (advances only; DejaVu's kerning moves a glyph
    /// by a fraction of a point at the sizes used here).
    pub fn measure(&self, text: &str, size: f32, bold: bool) -> f32 {
        if bold {
            self.bold.measure(text, size)
        } else {
            self.regular.measure(text, size)
        }
    }

    /// The krilla font of a face.
    pub fn pdf(&self, bold: bool) -> Font {
        if bold {
            self.bold.pdf.clone()
        } else {
            self.regular.pdf.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::texts::{EN, KK, RU};

    #[test]
    fn every_letter_the_documents_print_has_a_glyph_in_both_faces() {
        // Maps every character of every text in ru/kk/en, the Kazakh letters, digits and
        // the no-break space through both faces' cmaps: none may fall back to .notdef (0).
        let mut text: String = format!("{RU:?}{KK:?}{EN:?}");
        text.push_str("әғқңөұүһіӘҒҚҢӨҰҮҺІ0123456789\u{a0}−±…«»—–№");
        for (name, bytes) in [("regular", REGULAR), ("bold", BOLD)] {
            let font = FontRef::new(bytes).unwrap();
            let charmap = font.charmap();
            let missing: String = text
                .chars()
                .filter(|c| charmap.map(*c).is_none_or(|g| g.to_u32() == 0))
                .collect();
            assert!(missing.is_empty(), "{name} lacks {missing:?}");
        }
    }
}
