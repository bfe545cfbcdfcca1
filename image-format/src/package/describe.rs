//! `hotkernel inspect`: a package header printed the way `readelf -h` prints an ELF
//! header — identity, schemas, geometry, segments, relocations, where the image
//! description lies, and digests, with whether each digest verifies. The description's
//! content is the updater's format; the runner prints it (`hotkernel inspect`).

use std::fmt::Write as _;
use std::format;
use std::string::{String, ToString};

use sha2::{Digest as _, Sha256};

use super::{parse_header, Header, Package};
use crate::error::{Digest, Result};

/// What is known about the payload digest.
enum Payload {
    Verified,
    Mismatch(Digest),
    Truncated { have: u64 },
}

/// Describes a package that parsed (both digests verified).
pub fn describe(package: &Package<'_>) -> String {
    render(package.header(), Payload::Verified)
}

/// Describes the package in `bytes` as far as its header allows: the header must parse
/// (its digest must verify), but a damaged or incomplete payload is shown in the
/// digest lines instead of failing.
pub fn describe_bytes(bytes: &[u8]) -> Result<String> {
    let header = parse_header(bytes)?;
    let payload_at = usize::try_from(header.payload_offset()).unwrap_or(usize::MAX);
    let payload = match bytes.get(payload_at..) {
        Some(p) if p.len() as u64 == header.payload_size() => {
            let computed: Digest = Sha256::digest(p).into();
            if computed == header.payload_digest() {
                Payload::Verified
            } else {
                Payload::Mismatch(computed)
            }
        }
        other => Payload::Truncated {
            have: other.map_or(0, |p| p.len() as u64),
        },
    };
    Ok(render(&header, payload))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn render(h: &Header<'_>, payload: Payload) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = write_header(&mut s, h, payload);
    s.lines().fold(String::new(), |mut out, line| {
        out.push_str(line.trim_end());
        out.push('\n');
        out
    })
}

fn write_header(s: &mut String, h: &Header<'_>, payload: Payload) -> std::fmt::Result {
    let id = h.identity();
    let g = h.geometry();
    let magic = h.bytes().get(..8).unwrap_or(&[]);
    writeln!(s, "hotkernel package:")?;
    writeln!(
        s,
        "  Magic:                 {}  (HKPKG\\0\\r\\n)",
        spaced_hex(magic)
    )?;
    writeln!(s, "  Format version:        {}", h.format_version())?;
    writeln!(s, "  Security version:      {}", h.svn())?;
    writeln!(s, "  Header size:           {} bytes", h.header_size())?;
    writeln!(
        s,
        "  Payload:               {} bytes at offset {:#x}",
        h.payload_size(),
        h.payload_offset()
    )?;
    writeln!(s, "  Total size:            {} bytes", h.total_size())?;
    writeln!(s, "Image:")?;
    writeln!(s, "  Version:               {}", id.version())?;
    writeln!(s, "  Label:                 {}", id.label())?;
    writeln!(s, "  Build id:              {}", h.build_id())?;
    writeln!(s, "  Replaces:              {}", id.replaces())?;
    writeln!(s, "  Requires:              {}", id.caps_required())?;
    writeln!(s, "  Provides:              {}", id.caps_provided())?;
    writeln!(s, "Schemas ({}):", id.schemas().len())?;
    writeln!(s, "  Kind    Name                    Current  From  Flags")?;
    for e in id.schemas() {
        let flags = if e.is_optional() { "optional" } else { "" };
        writeln!(
            s,
            "  {:#06x}  {:<22}  {:>7}  {:>4}  {flags}",
            e.kind().get(),
            e.kind().name(),
            e.current().to_string(),
            e.min_from().to_string()
        )?;
    }
    writeln!(s, "Geometry:")?;
    writeln!(s, "  Link base:             {:#x}", g.link_base)?;
    writeln!(
        s,
        "  Image span:            {:#x} ({} KiB)",
        g.image_span,
        g.image_span / 1024
    )?;
    for (name, offset) in [
        ("Kernel entry:", g.entries.kernel),
        ("Bootstrap entry:", g.entries.bootstrap),
        ("Resume entry:", g.entries.resume),
        ("AP resume entry:", g.entries.ap_resume),
    ] {
        writeln!(s, "  {name:<22} {offset:#x}")?;
    }
    writeln!(s, "Segments ({}):", h.segment_count())?;
    writeln!(
        s,
        "  [Nr] Payload    VirtAddr            FileSiz    MemSiz     Flg"
    )?;
    for (i, seg) in h.segments().enumerate() {
        writeln!(
            s,
            "  [{i:>2}] {:#010x} {:#018x}  {:#010x} {:#010x} {}",
            seg.payload_offset, seg.vaddr, seg.file_size, seg.mem_size, seg.flags
        )?;
    }
    writeln!(
        s,
        "Relocations:             {} (R_X86_64_RELATIVE)",
        h.relocation_count()
    )?;
    writeln!(
        s,
        "Description:             {} bytes at offset {:#x} (HKDESC01, from .hk_schema)",
        h.description().len(),
        h.description_offset()
    )?;
    writeln!(s, "Digests (SHA-256):")?;
    writeln!(
        s,
        "  Header:                {}  ok",
        hex(&h.header_digest())
    )?;
    let verdict = match payload {
        Payload::Verified => String::from("ok"),
        Payload::Mismatch(computed) => {
            format!("MISMATCH: the payload hashes to {}", hex(&computed))
        }
        Payload::Truncated { have } => format!(
            "NOT CHECKED: payload truncated ({have} of {} bytes)",
            h.payload_size()
        ),
    };
    writeln!(
        s,
        "  Payload:               {}  {verdict}",
        hex(&h.payload_digest())
    )
}

fn spaced_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<std::vec::Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{parse, tests::sample_spec};

    #[test]
    fn describes_every_part() {
        let bytes = sample_spec().build().unwrap();
        let text = describe(&parse(&bytes).unwrap());
        for needle in [
            "48 4b 50 4b 47 00 0d 0a",
            "Version:               2.0.0",
            "Label:                 v2",
            "Build id:              4141414141414141414141414141414141414141",
            "Replaces:              1.0.0 ..= 1.9.0",
            "Provides:              HANDOFF_V1 | SMP",
            "heartbeat",
            "optional",
            "Resume entry:          0x1200",
            "R E",
            "RW  relro",
            "Relocations:             3",
            "Description:             40 bytes at offset 0x288 (HKDESC01, from .hk_schema)",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert_eq!(describe_bytes(&bytes).unwrap(), text);
    }

    #[test]
    fn shows_a_damaged_payload_instead_of_failing() {
        let mut bytes = sample_spec().build().unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let text = describe_bytes(&bytes).unwrap();
        assert!(text.contains("MISMATCH: the payload hashes to"), "{text}");
        let text = describe_bytes(&bytes[..5000]).unwrap();
        assert!(
            text.contains("NOT CHECKED: payload truncated (904 of"),
            "{text}"
        );
    }
}
