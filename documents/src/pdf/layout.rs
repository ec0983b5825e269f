//! A small page layout: text lines, wrapped paragraphs and tables with headers repeated on
//! every page, laid out into a display list first (so the footer can say "page 2 of 3")
//! and then drawn with krilla. Coordinates are PDF points from the top-left corner.

use super::fonts::Fonts;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point};
use krilla::paint::{Fill, Stroke};
use krilla::text::TextDirection;

/// A4 portrait, in points.
pub const A4: (f32, f32) = (595.28, 841.89);
/// Page margin, in points.
pub const MARGIN: f32 = 48.0;
/// Body text size.
pub const BODY: f32 = 9.0;
/// The smallest size a table cell shrinks its text to before truncating it.
pub const CELL_MIN: f32 = 6.0;
const LINE: f32 = 1.35;
const FOOTER: f32 = 7.5;

/// One drawing operation.
#[derive(Clone, Debug)]
pub enum Op {
    /// A line of text with its baseline's left end at (`x`, `y`).
    Text {
        /// Left end.
        x: f32,
        /// Baseline.
        y: f32,
        /// Font size.
        size: f32,
        /// Bold face.
        bold: bool,
        /// Red (the "provisional" banner).
        red: bool,
        /// The text.
        text: String,
    },
    /// A straight line.
    Rule {
        /// Start x.
        x1: f32,
        /// Start y.
        y1: f32,
        /// End x.
        x2: f32,
        /// End y.
        y2: f32,
        /// Stroke width.
        width: f32,
    },
}

/// How a table row looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowStyle {
    /// A plain row.
    Body,
    /// A bold row with a rule above (totals).
    Total,
    /// A bold row spanning the table (a section heading inside it).
    Section,
}

/// A table column: header text, width in points, numbers align right.
pub struct Column {
    /// Header (wrapped to the width).
    pub header: String,
    /// Width in points; one column may be 0 to take what the others leave.
    pub width: f32,
    /// Right-aligned.
    pub numeric: bool,
}

impl Column {
    /// A left-aligned column.
    pub fn text(header: &str, width: f32) -> Column {
        Column {
            header: header.to_string(),
            width,
            numeric: false,
        }
    }

    /// A right-aligned column.
    pub fn number(header: &str, width: f32) -> Column {
        Column {
            header: header.to_string(),
            width,
            numeric: true,
        }
    }
}

/// A table.
pub struct Table {
    /// Its columns.
    pub columns: Vec<Column>,
    /// Its rows: a style and one cell per column.
    pub rows: Vec<(RowStyle, Vec<String>)>,
}

/// Where a line of text goes across the page.
#[derive(Clone, Copy, Debug)]
struct Span {
    left: f32,
    width: f32,
    /// Right-aligned in the span (else left-aligned).
    right: bool,
}

/// Padding inside a table cell.
const PAD: f32 = 3.0;

impl Span {
    fn left(left: f32, width: f32) -> Span {
        Span {
            left,
            width,
            right: false,
        }
    }

    /// A table cell from `left` and `width`, less the padding on both sides.
    fn cell(left: f32, width: f32, right: bool) -> Span {
        Span {
            left: left + PAD,
            width: width - 2.0 * PAD,
            right,
        }
    }
}

/// The pages laid out so far.
pub struct Layout<'f> {
    fonts: &'f Fonts,
    /// Page width and height.
    pub size: (f32, f32),
    pages: Vec<Vec<Op>>,
    /// The next baseline's top (where the next line starts).
    pub y: f32,
}

impl<'f> Layout<'f> {
    /// An empty first page of `size`.
    pub fn new(fonts: &'f Fonts, size: (f32, f32)) -> Self {
        Layout {
            fonts,
            size,
            pages: vec![Vec::new()],
            y: MARGIN,
        }
    }

    /// The width between the margins.
    pub fn width(&self) -> f32 {
        self.size.0 - 2.0 * MARGIN
    }

    fn bottom(&self) -> f32 {
        self.size.1 - MARGIN - 2.0 * FOOTER
    }

    fn push(&mut self, op: Op) {
        self.pages.last_mut().expect("a layout always has a page").push(op);
    }

    /// Starts a new page when fewer than `height` points are left on this one.
    pub fn need(&mut self, height: f32) -> bool {
        if self.y + height > self.bottom() {
            self.pages.push(Vec::new());
            self.y = MARGIN;
            true
        } else {
            false
        }
    }

    /// Moves down by `height`.
    pub fn gap(&mut self, height: f32) {
        self.y += height;
    }

    /// The width of `text` at `size`.
    pub fn measure(&self, text: &str, size: f32, bold: bool) -> f32 {
        self.fonts.measure(text, size, bold)
    }

    /// Draws `text` with its left end at `x` on the baseline `y`.
    pub fn text_at(&mut self, x: f32, y: f32, size: f32, bold: bool, text: &str) {
        if text.is_empty() {
            return;
        }
        self.push(Op::Text {
            x,
            y,
            size,
            bold,
            red: false,
            text: text.to_string(),
        });
    }

    /// Draws `text` in `span` on the baseline `y`, shrunk or cut to fit its width.
    fn text_aligned(&mut self, span: Span, y: f32, size: f32, bold: bool, text: &str) {
        let (text, size) = self.fit(text, span.width, size, bold);
        let x = if span.right {
            span.left + span.width - self.measure(&text, size, bold)
        } else {
            span.left
        };
        self.text_at(x, y, size, bold, &text);
    }

    /// Shrinks `text` down to [`CELL_MIN`] to fit `width`, then cuts it with an ellipsis.
    fn fit(&self, text: &str, width: f32, size: f32, bold: bool) -> (String, f32) {
        let measured = self.measure(text, size, bold);
        if measured <= width {
            return (text.to_string(), size);
        }
        let shrunk = (size * width / measured).max(CELL_MIN);
        if self.measure(text, shrunk, bold) <= width {
            return (text.to_string(), shrunk);
        }
        let mut cut: String = text.to_string();
        while !cut.is_empty() && self.measure(&format!("{cut}…"), shrunk, bold) > width {
            cut.pop();
        }
        (format!("{cut}…"), shrunk)
    }

    /// Splits `text` into lines no wider than `width` at spaces (a word wider than the
    /// line stays whole on its own line).
    pub fn wrap(&self, text: &str, width: f32, size: f32, bold: bool) -> Vec<String> {
        let mut lines = Vec::new();
        let mut line = String::new();
        for word in text.split(' ') {
            let candidate = if line.is_empty() {
                word.to_string()
            } else {
                format!("{line} {word}")
            };
            if !line.is_empty() && self.measure(&candidate, size, bold) > width {
                lines.push(std::mem::replace(&mut line, word.to_string()));
            } else {
                line = candidate;
            }
        }
        if !line.is_empty() {
            lines.push(line);
        }
        lines
    }

    /// A wrapped paragraph across the full width.
    pub fn paragraph(&mut self, text: &str, size: f32, bold: bool) {
        for line in self.wrap(text, self.width(), size, bold) {
            self.need(size * LINE);
            self.y += size;
            self.text_at(MARGIN, self.y, size, bold, &line);
            self.y += size * (LINE - 1.0);
        }
    }

    /// A wrapped, centred paragraph (titles); `red` for the provisional banner.
    pub fn centered(&mut self, text: &str, size: f32, bold: bool, red: bool) {
        for line in self.wrap(text, self.width(), size, bold) {
            self.need(size * LINE);
            self.y += size;
            let x = (self.size.0 - self.measure(&line, size, bold)) / 2.0;
            self.push(Op::Text {
                x,
                y: self.y,
                size,
                bold,
                red,
                text: line,
            });
            self.y += size * (LINE - 1.0);
        }
    }

    /// `label: value` lines, the labels bold in a column `label_width` wide.
    pub fn fields(&mut self, fields: &[(&str, String)], label_width: f32) {
        for (label, value) in fields {
            let lines = self.wrap(value, self.width() - label_width, BODY, false);
            self.need(BODY * LINE * lines.len() as f32);
            self.y += BODY;
            let span = Span::left(MARGIN, label_width - 6.0);
            self.text_aligned(span, self.y, BODY, true, &format!("{label}:"));
            for (i, line) in lines.iter().enumerate() {
                if i > 0 {
                    self.y += BODY * LINE;
                }
                self.text_at(MARGIN + label_width, self.y, BODY, false, line);
            }
            self.y += BODY * (LINE - 1.0);
        }
    }

    /// A horizontal rule across `x1..x2` at the current position.
    pub fn rule(&mut self, x1: f32, x2: f32, width: f32) {
        let y = self.y;
        self.push(Op::Rule {
            x1,
            y1: y,
            x2,
            y2: y,
            width,
        });
    }

    fn column_lefts(&self, columns: &[Column]) -> Vec<(f32, f32)> {
        let fixed: f32 = columns.iter().map(|c| c.width).sum();
        let flexible = (self.width() - fixed).max(40.0);
        let mut x = MARGIN;
        columns
            .iter()
            .map(|column| {
                let width = if column.width == 0.0 { flexible } else { column.width };
                let left = x;
                x += width;
                (left, width)
            })
            .collect()
    }

    fn table_header(&mut self, table: &Table, cells: &[(f32, f32)]) {
        let size = BODY - 1.0;
        let wrapped: Vec<Vec<String>> = table
            .columns
            .iter()
            .zip(cells)
            .map(|(column, (_, width))| self.wrap(&column.header, width - 2.0 * PAD, size, true))
            .collect();
        let lines = wrapped.iter().map(Vec::len).max().unwrap_or(1) as f32;
        let height = lines * size * LINE + 2.0 * PAD;
        self.need(height + BODY * 3.0);
        let right = cells.last().map_or(MARGIN, |(l, w)| l + w);
        self.rule(MARGIN, right, 0.8);
        let top = self.y;
        for ((column, (left, width)), lines) in table.columns.iter().zip(cells).zip(&wrapped) {
            for (i, line) in lines.iter().enumerate() {
                let y = top + PAD + size + i as f32 * size * LINE;
                self.text_aligned(Span::cell(*left, *width, column.numeric), y, size, true, line);
            }
        }
        self.y = top + height;
        self.rule(MARGIN, right, 0.5);
    }

    /// A table; its header is repeated at the top of every page it continues on.
    pub fn table(&mut self, table: &Table) {
        let cells = self.column_lefts(&table.columns);
        let right = cells.last().map_or(MARGIN, |(l, w)| l + w);
        self.table_header(table, &cells);
        for (style, row) in &table.rows {
            let bold = *style != RowStyle::Body;
            // Text cells wrap onto more lines; numbers stay on one and shrink to fit.
            let wrapped: Vec<Vec<String>> = table
                .columns
                .iter()
                .zip(&cells)
                .zip(row)
                .map(|((column, (_, width)), cell)| {
                    if column.numeric || *style == RowStyle::Section {
                        vec![cell.clone()]
                    } else {
                        self.wrap(cell, width - 2.0 * PAD, BODY, bold)
                    }
                })
                .collect();
            let lines = wrapped.iter().map(Vec::len).max().unwrap_or(1).max(1) as f32;
            let row_height = lines * BODY * LINE + 2.0;
            if self.need(row_height) {
                self.table_header(table, &cells);
            }
            if *style == RowStyle::Total {
                self.rule(MARGIN, right, 0.5);
            }
            let baseline = self.y + PAD + BODY - 1.0;
            if *style == RowStyle::Section {
                let text = row.first().cloned().unwrap_or_default();
                let span = Span::cell(MARGIN, right - MARGIN, false);
                self.text_aligned(span, baseline, BODY, true, &text);
            } else {
                for ((column, (left, width)), lines) in table.columns.iter().zip(&cells).zip(&wrapped) {
                    for (i, line) in lines.iter().enumerate() {
                        let y = baseline + i as f32 * BODY * LINE;
                        self.text_aligned(Span::cell(*left, *width, column.numeric), y, BODY, bold, line);
                    }
                }
            }
            self.y += row_height;
        }
        self.rule(MARGIN, right, 0.8);
    }

    /// Signature blocks side by side: for each party, its heading, a line to sign on with
    /// "(signature)" under it, and the seal mark.
    pub fn signatures(&mut self, parties: &[&str], signature: &str, seal: &str) {
        let height = BODY * LINE * 6.0;
        self.need(height);
        // Two columns at most, so a lone "prepared by" line is not a page wide.
        let column = self.width() / parties.len().clamp(2, 4) as f32;
        let top = self.y;
        for (i, party) in parties.iter().enumerate() {
            let left = MARGIN + column * i as f32;
            self.text_at(left, top + BODY, BODY, true, party);
            let line_y = top + BODY * LINE * 3.5;
            self.push(Op::Rule {
                x1: left,
                y1: line_y,
                x2: left + column - 30.0,
                y2: line_y,
                width: 0.5,
            });
            self.text_at(left, line_y + BODY, BODY - 2.0, false, &format!("({signature})"));
            self.text_at(left, line_y + BODY * 2.6, BODY, false, seal);
        }
        self.y = top + height;
    }

    /// Adds the footer (`left` and "page i of n") to every page and returns the pages.
    pub fn finish(mut self, left: &str, page: &str, of: &str) -> Vec<Vec<Op>> {
        let total = self.pages.len();
        let y = self.size.1 - MARGIN + FOOTER;
        let right_edge = self.size.0 - MARGIN;
        for (i, ops) in self.pages.iter_mut().enumerate() {
            let numbering = format!("{page} {} {of} {total}", i + 1);
            let width = self.fonts.measure(&numbering, FOOTER, false);
            for (x, text) in [(MARGIN, left.to_string()), (right_edge - width, numbering)] {
                ops.push(Op::Text {
                    x,
                    y,
                    size: FOOTER,
                    bold: false,
                    red: false,
                    text,
                });
            }
        }
        self.pages
    }
}

/// Draws laid-out pages onto a krilla document.
pub fn draw(document: &mut krilla::Document, fonts: &Fonts, size: (f32, f32), pages: &[Vec<Op>]) {
    let settings = krilla::page::PageSettings::from_wh(size.0, size.1).expect("A4 is a valid page size");
    for ops in pages {
        let mut page = document.start_page_with(settings.clone());
        let mut surface = page.surface();
        for op in ops {
            match op {
                Op::Text {
                    x,
                    y,
                    size,
                    bold,
                    red,
                    text,
                } => {
                    if *red {
                        surface.set_fill(Some(Fill {
                            paint: rgb::Color::new(190, 0, 0).into(),
                            ..Fill::default()
                        }));
                    }
                    surface.draw_text(
                        Point::from_xy(*x, *y),
                        fonts.pdf(*bold),
                        *size,
                        text,
                        false,
                        TextDirection::Auto,
                    );
                    if *red {
                        surface.set_fill(Some(Fill::default()));
                    }
                }
                Op::Rule { x1, y1, x2, y2, width } => {
                    let mut builder = PathBuilder::new();
                    builder.move_to(*x1, *y1);
                    builder.line_to(*x2, *y2);
                    if let Some(path) = builder.finish() {
                        surface.set_fill(None);
                        surface.set_stroke(Some(Stroke {
                            width: *width,
                            ..Stroke::default()
                        }));
                        surface.draw_path(&path);
                        surface.set_stroke(None);
                        surface.set_fill(Some(Fill::default()));
                    }
                }
            }
        }
        surface.finish();
        page.finish();
    }
}
