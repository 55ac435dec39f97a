//! The one look of every table printed for people (comfy-table).

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};

/// An empty table with this header.
pub fn with_header<I, T>(header: I) -> Table
where
    I: IntoIterator<Item = T>,
    T: Into<comfy_table::Cell>,
{
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header);
    t
}
