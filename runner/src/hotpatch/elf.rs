//! The little the host reads from a kernel ELF itself: its GNU build id (which file is
//! the image a VM runs?) and its executable segment (are the running text's bytes the
//! file's?). ELF64 little-endian only; every offset is checked, so a damaged file gives
//! an error, never a panic.

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PF_X: u32 = 1;
const NT_GNU_BUILD_ID: u32 = 3;

/// One program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The program headers of `elf`.
pub fn segments(elf: &[u8]) -> Result<Vec<Segment>, String> {
    if elf.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err("not an ELF file".into());
    }
    if elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let bad = || "its program header table lies outside the file".to_owned();
    let phoff = u64_at(elf, 0x20).ok_or_else(bad)?;
    let phentsize = u16_at(elf, 0x36).ok_or_else(bad)? as usize;
    let phnum = u16_at(elf, 0x38).ok_or_else(bad)? as usize;
    if phentsize < 0x38 {
        return Err(format!(
            "program headers of {phentsize} bytes are too short"
        ));
    }
    let phoff = usize::try_from(phoff).map_err(|_| bad())?;
    (0..phnum)
        .map(|i| {
            let at = phoff
                .checked_add(i.checked_mul(phentsize).ok_or_else(bad)?)
                .ok_or_else(bad)?;
            let h = elf
                .get(at..at.checked_add(0x38).ok_or_else(bad)?)
                .ok_or_else(bad)?;
            Ok(Segment {
                p_type: u32_at(h, 0).ok_or_else(bad)?,
                flags: u32_at(h, 4).ok_or_else(bad)?,
                offset: u64_at(h, 8).ok_or_else(bad)?,
                vaddr: u64_at(h, 0x10).ok_or_else(bad)?,
                filesz: u64_at(h, 0x20).ok_or_else(bad)?,
            })
        })
        .collect()
}

/// The file bytes of `s`, if they lie inside the file.
fn bytes_of<'a>(elf: &'a [u8], s: &Segment) -> Option<&'a [u8]> {
    let start = usize::try_from(s.offset).ok()?;
    let end = start.checked_add(usize::try_from(s.filesz).ok()?)?;
    elf.get(start..end)
}

/// The GNU build id (`--build-id=sha1`), `None` when the file has none.
pub fn build_id(elf: &[u8]) -> Option<Vec<u8>> {
    let segments = segments(elf).ok()?;
    for s in segments.iter().filter(|s| s.p_type == PT_NOTE) {
        let notes = bytes_of(elf, s)?;
        let mut at = 0usize;
        while at + 12 <= notes.len() {
            let namesz = u32_at(notes, at)? as usize;
            let descsz = u32_at(notes, at + 4)? as usize;
            let kind = u32_at(notes, at + 8)?;
            let name_at = at + 12;
            let desc_at = name_at.checked_add(namesz.checked_next_multiple_of(4)?)?;
            let end = desc_at.checked_add(descsz.checked_next_multiple_of(4)?)?;
            if kind == NT_GNU_BUILD_ID && notes.get(name_at..name_at + namesz) == Some(b"GNU\0") {
                return notes.get(desc_at..desc_at + descsz).map(<[u8]>::to_vec);
            }
            at = end;
        }
    }
    None
}

/// The executable `PT_LOAD` segment: its link address (relative to the image's load
/// base: the kernel is linked at 0) and its file bytes, the pristine text.
pub fn text(elf: &[u8]) -> Result<(u64, &[u8]), String> {
    let segments = segments(elf)?;
    let mut exec = segments
        .iter()
        .filter(|s| s.p_type == PT_LOAD && s.flags & PF_X != 0);
    match (exec.next(), exec.next()) {
        (Some(s), None) => bytes_of(elf, s)
            .map(|b| (s.vaddr, b))
            .ok_or_else(|| "its executable segment lies outside the file".to_owned()),
        (None, _) => Err("it has no executable segment".into()),
        (Some(_), Some(_)) => Err("it has more than one executable segment".into()),
    }
}

/// The ranges (`start`, `len`) where `found` differs from `expected` (compared over
/// the shorter of the two; a length difference is the caller's to report).
pub fn differing_ranges(expected: &[u8], found: &[u8]) -> Vec<(usize, usize)> {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for (i, (a, b)) in expected.iter().zip(found).enumerate() {
        if a == b {
            continue;
        }
        match ranges.last_mut() {
            Some((start, len)) if *start + *len == i => *len += 1,
            _ => ranges.push((i, 1)),
        }
    }
    ranges
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF64: header, two program headers (a note with a GNU build id and an
    /// executable load segment holding `text` at vaddr 0x1000).
    pub(crate) fn tiny_elf(build_id: &[u8], text: &[u8]) -> Vec<u8> {
        let mut note = Vec::new();
        note.extend_from_slice(&4u32.to_le_bytes());
        note.extend_from_slice(&(build_id.len() as u32).to_le_bytes());
        note.extend_from_slice(&NT_GNU_BUILD_ID.to_le_bytes());
        note.extend_from_slice(b"GNU\0");
        note.extend_from_slice(build_id);
        while note.len() % 4 != 0 {
            note.push(0);
        }
        let note_at = 0x40 + 2 * 0x38;
        let text_at = note_at + note.len();
        let mut elf = vec![0u8; 0x40];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[6] = 1; // EI_VERSION: readers such as the `object` crate require it
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        for (p_type, flags, offset, vaddr, size) in [
            (PT_NOTE, 4, note_at, 0, note.len()),
            (PT_LOAD, 5, text_at, 0x1000, text.len()),
        ] {
            let mut h = [0u8; 0x38];
            h[0..4].copy_from_slice(&p_type.to_le_bytes());
            h[4..8].copy_from_slice(&(flags as u32).to_le_bytes());
            h[8..16].copy_from_slice(&(offset as u64).to_le_bytes());
            h[0x10..0x18].copy_from_slice(&(vaddr as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            h[0x28..0x30].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&h);
        }
        elf.extend_from_slice(&note);
        elf.extend_from_slice(text);
        elf
    }

    #[test]
    fn reads_the_build_id_and_the_text() {
        let elf = tiny_elf(&[0xab; 20], b"\x55\x48\x89\xe5\xc3");
        assert_eq!(build_id(&elf), Some(vec![0xab; 20]));
        assert_eq!(text(&elf), Ok((0x1000, b"\x55\x48\x89\xe5\xc3".as_slice())));
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        let elf = tiny_elf(&[1; 20], &[0x90; 64]);
        for cut in 0..elf.len() {
            let _ = build_id(&elf[..cut]);
            let _ = text(&elf[..cut]);
        }
        assert!(text(b"MZ not an elf").is_err());
        let mut huge = elf.clone();
        huge[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(segments(&huge).is_err());
    }

    #[test]
    fn differences_are_grouped_in_runs() {
        let a = [0u8, 1, 2, 3, 4, 5, 6, 7];
        let b = [0u8, 9, 9, 3, 4, 9, 6, 7];
        assert_eq!(differing_ranges(&a, &b), [(1, 2), (5, 1)]);
        assert!(differing_ranges(&a, &a).is_empty());
    }
}
