//! An image description as `hotkernel inspect` prints it: the hand-off ABI and the
//! descriptor's fingerprint, one line per record kind (version, the oldest version it
//! converts from, optional or not, fingerprint), per converter and per region; with
//! `verbose`, every record's and converter's field table under it (name, offset,
//! size, type, default, alias; nested records indented).

use std::fmt::Write as _;

use updater::describe::{Description, RegionRule};
use updater::table::{FieldView, TableView, TypeView};

/// Nesting shown in a verbose table before "…" (the format allows 8).
const MAX_SHOWN_DEPTH: usize = 8;

/// The text of `d`, ending in a newline.
pub fn text(d: &Description<'_>, verbose: bool) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = write_description(&mut s, d, verbose);
    s.lines().fold(String::new(), |mut out, line| {
        out.push_str(line.trim_end());
        out.push('\n');
        out
    })
}

/// A fingerprint as 16 hex digits.
pub fn fingerprint(f: u64) -> String {
    format!("{f:016x}")
}

fn write_description(s: &mut String, d: &Description<'_>, verbose: bool) -> std::fmt::Result {
    writeln!(
        s,
        "Image description ({} bytes, description version {}):",
        d.bytes().len(),
        updater::describe::VERSION
    )?;
    writeln!(s, "  Hand-off ABI:          {}", d.abi_version())?;
    writeln!(
        s,
        "  Descriptor layout:     {}",
        fingerprint(d.descriptor_fingerprint())
    )?;
    writeln!(s, "Records ({}):", d.records().count())?;
    writeln!(
        s,
        "  Kind    Name                    Version  From  Optional  Fingerprint"
    )?;
    for r in d.records() {
        writeln!(
            s,
            "  {:#06x}  {:<22}  {:>7}  {:>4}  {:<8}  {}",
            r.kind.get(),
            r.kind.to_string(),
            r.version.to_string(),
            r.min_from.to_string(),
            if r.optional { "yes" } else { "no" },
            fingerprint(r.fingerprint)
        )?;
        if verbose {
            write_table(s, &r.table, "          ")?;
        }
    }
    writeln!(s, "Converters ({}):", d.steps().count())?;
    if d.steps().next().is_some() {
        writeln!(s, "  Kind    Name                    Step")?;
    }
    for c in d.steps() {
        writeln!(
            s,
            "  {:#06x}  {:<22}  {} → {}",
            c.kind.get(),
            c.kind.to_string(),
            c.from,
            c.to
        )?;
        if verbose {
            writeln!(
                s,
                "          reads {} ({}):",
                c.from,
                fingerprint(c.from_table.fingerprint())
            )?;
            write_table(s, &c.from_table, "            ")?;
            writeln!(
                s,
                "          writes {} ({}):",
                c.to,
                fingerprint(c.to_table.fingerprint())
            )?;
            write_table(s, &c.to_table, "            ")?;
        }
    }
    writeln!(s, "Regions ({}):", d.regions().count())?;
    if d.regions().next().is_some() {
        writeln!(
            s,
            "  Name              Start               Length              Rule"
        )?;
    }
    for r in d.regions() {
        let rule = match r.rule {
            RegionRule::Fixed => "fixed",
            RegionRule::Resizable => "resizable",
        };
        writeln!(
            s,
            "  {:<16}  {:#018x}  {:<18}  {rule}",
            r.name,
            r.start,
            format!("{:#x}", r.len)
        )?;
    }
    Ok(())
}

/// One field table, indented by `indent`, with a heading line.
fn write_table(s: &mut String, t: &TableView<'_>, indent: &str) -> std::fmt::Result {
    writeln!(
        s,
        "{indent}{:<24}  {:>6}  {:>5}  {:<14}  {:>20}  Alias",
        format!("Field ({} bytes)", t.size()),
        "Offset",
        "Size",
        "Type",
        "Default"
    )?;
    write_fields(s, t, indent, 0)
}

fn write_fields(s: &mut String, t: &TableView<'_>, indent: &str, depth: usize) -> std::fmt::Result {
    let pad = "  ".repeat(depth);
    for f in t.fields() {
        writeln!(
            s,
            "{indent}{:<24}  {:>6}  {:>5}  {:<14}  {:>20}  {}",
            format!("{pad}{}", f.name),
            f.offset,
            f.size,
            f.ty.describe().to_string(),
            default_of(&f),
            f.alias.unwrap_or("")
        )?;
        if let Some(nested) = nested_table(f.ty) {
            if depth + 1 < MAX_SHOWN_DEPTH {
                write_fields(s, &nested, indent, depth + 1)?;
            } else {
                writeln!(s, "{indent}{pad}  …")?;
            }
        }
    }
    Ok(())
}

/// The table of a nested record, or of an array's record elements.
fn nested_table<'a>(ty: TypeView<'a>) -> Option<TableView<'a>> {
    match ty {
        TypeView::Record(t) => Some(t),
        TypeView::Array(_, e) => nested_table(TypeView::element(e)),
        _ => None,
    }
}

/// A field's default as conversion by field writes it: integers, booleans, and zeros
/// for everything wider.
fn default_of(f: &FieldView<'_>) -> String {
    match f.ty {
        TypeView::Unsigned(_) => f.default.to_string(),
        // The table keeps signed defaults sign-extended to 64 bits.
        TypeView::Signed(_) => (f.default as i64).to_string(),
        TypeView::Bool => (f.default != 0).to_string(),
        _ => "zeros".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::description::check::tests::{counter_v2, running_v1};

    #[test]
    fn the_summary_names_every_record_converter_and_region() {
        let bytes = counter_v2();
        let d = Description::parse(&bytes).unwrap();
        let text = text(&d, false);
        let record = d.records().next().unwrap();
        for needle in [
            "Image description (",
            "Hand-off ABI:          1",
            "0x0101  counter-state                v2    v1  no        ",
            fingerprint(record.fingerprint).as_str(),
            "Converters (1):",
            "0x0101  counter-state           v1 → v2",
            "heap              0x0000000000100000  0x2000              resizable",
            "hand-off          0x0000000000400000  0x400000            fixed",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(
            !text.contains("Offset"),
            "no tables without verbose:\n{text}"
        );
        assert_eq!(fingerprint(0xab), "00000000000000ab");
    }

    #[test]
    fn verbose_shows_every_field_with_its_default_and_alias() {
        let bytes = counter_v2();
        let d = Description::parse(&bytes).unwrap();
        let text = text(&d, true);
        for needle in [
            "Field (24 bytes)",
            "count                          0      8  u64                                0",
            "stride                         8      4  u32                                1  step",
            "delta                         12      4  i32                               -2",
            "seen                          16      8  u64                                7",
            "reads v1 (",
            "writes v2 (",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        let plain = running_v1();
        let text = super::text(&Description::parse(&plain).unwrap(), true);
        assert!(text.contains("Converters (0):"), "{text}");
        assert!(!text.contains("Step"), "{text}");
    }
}
