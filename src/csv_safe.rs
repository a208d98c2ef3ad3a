//! Every CSV the project writes goes through here, so that no cell runs as a
//! formula when the file is opened in a spreadsheet (CSV injection, OWASP):
//! a cell starting with `=`, `+`, `-`, `@`, tab, carriage return or NUL gets
//! a leading `'`, which spreadsheets show as text and hide.
//!
//! A cell that already starts with `'` gets one more, so the prefix can be
//! taken off again exactly ([`restore`], for a file the project reads back).
//! A plain number (`-12.50`) is left alone: it cannot be a formula, and it
//! stays a number in the spreadsheet.

use std::borrow::Cow;
use std::io::Write;

/// The first characters that make a spreadsheet read a cell as a formula
/// (or, for tab and carriage return, hide one behind white space).
const TRIGGERS: [char; 7] = ['=', '+', '-', '@', '\t', '\r', '\0'];

/// `-1`, `12`, `-0.5`: a number, never a formula.
fn is_plain_number(cell: &str) -> bool {
    let digits = cell.strip_prefix('-').unwrap_or(cell);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, "0"));
    !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// The cell as written: prefixed with `'` when a spreadsheet could run it.
pub(crate) fn neutralise(cell: &str) -> Cow<'_, str> {
    match cell.chars().next() {
        Some(c) if (TRIGGERS.contains(&c) && !is_plain_number(cell)) || c == '\'' => {
            Cow::Owned(format!("'{cell}"))
        }
        _ => Cow::Borrowed(cell),
    }
}

/// The value a cell written by [`neutralise`] stood for.
pub(crate) fn restore(cell: &str) -> &str {
    cell.strip_prefix('\'').unwrap_or(cell)
}

/// A `csv::Writer` that neutralises every cell it writes.
pub(crate) struct Writer<W: Write>(csv::Writer<W>);

impl<W: Write> Writer<W> {
    pub(crate) fn from_writer(w: W) -> Self {
        Writer(csv::Writer::from_writer(w))
    }

    pub(crate) fn write_record<I, T>(&mut self, record: I) -> csv::Result<()>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.0.write_record(
            record
                .into_iter()
                .map(|c| neutralise(c.as_ref()).into_owned()),
        )
    }

    pub(crate) fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_prefixed_and_come_back_exactly() {
        for (cell, written) in [
            ("=1+1", "'=1+1"),
            ("+1+1", "'+1+1"),
            ("-1+1", "'-1+1"),
            ("@SUM(1+1)", "'@SUM(1+1)"),
            ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("\0x", "'\0x"),
            ("'quoted", "''quoted"),
            ("-", "'-"),
            ("-.5", "'-.5"),
            ("Northwind", "Northwind"),
            ("a=b", "a=b"),
            ("-12.50", "-12.50"),
            ("0.5", "0.5"),
            ("", ""),
        ] {
            assert_eq!(neutralise(cell), written, "{cell:?}");
            assert_eq!(restore(&neutralise(cell)), cell, "{cell:?}");
        }
    }
}
