//! Compatibility: may this candidate image replace the running one? Decided by the
//! running kernel when a package is delivered, from the two identities alone, before
//! anything stops. (The candidate's bootstrap checks again, against the actual
//! exported records, before it commits.)
//!
//! The candidate must: name the running version in the versions it replaces; require no
//! capability the running kernel lacks; and read every record kind the running kernel
//! exports. A record the running kernel exports as optional may be unread: it will be
//! dropped with a warning. *Whether* the candidate can read each record from the
//! version exported — by its converters, by field, or not at all — is not decided here
//! but from the two images' field tables ([`crate::plan`]): versions alone cannot tell
//! a mechanical change from one that needs a converter.

use image_format::{
    Capabilities, EmbeddedIdentity, ImageVersion, RecordKind, SchemaVersion, VersionRange,
};

/// Why a candidate cannot replace the running image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incompatibility {
    /// The candidate does not list the running version.
    Version {
        running: ImageVersion,
        replaces: VersionRange,
    },
    /// The candidate requires capabilities the running kernel does not provide.
    Capability {
        missing: Capabilities,
        running: ImageVersion,
    },
    /// The candidate does not read a record the running kernel must hand over.
    Unread {
        kind: RecordKind,
        exported: SchemaVersion,
    },
}

impl core::fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Incompatibility::Version { running, replaces } => {
                write!(f, "the image replaces versions {replaces}; the running kernel is {running}")
            }
            Incompatibility::Capability { missing, running } => {
                write!(f, "the image requires {missing}, which the running kernel ({running}) does not provide")
            }
            Incompatibility::Unread { kind, exported } => write!(
                f,
                "the image does not read {kind}, which the running kernel exports ({exported}) and cannot drop"
            ),
        }
    }
}

/// A record that will be dropped by the candidate (exported as optional, unread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub kind: RecordKind,
    pub exported: SchemaVersion,
}

/// The running version must be one the candidate replaces (staging and bootstrap).
pub fn check_version(running: ImageVersion, replaces: VersionRange) -> Result<(), Incompatibility> {
    if replaces.contains(running) {
        Ok(())
    } else {
        Err(Incompatibility::Version { running, replaces })
    }
}

/// Everything the candidate requires, the running kernel must provide (staging and
/// bootstrap).
pub fn check_capabilities(
    required: Capabilities,
    provided: Capabilities,
    running: ImageVersion,
) -> Result<(), Incompatibility> {
    let missing = required.missing_from(provided);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Incompatibility::Capability { missing, running })
    }
}

/// Checks `candidate` against `running`. `Ok` lists the optional records it would drop.
pub fn check(
    running: &EmbeddedIdentity,
    candidate: &EmbeddedIdentity,
) -> Result<DropList, Incompatibility> {
    let version = running.version();
    check_version(version, candidate.replaces())?;
    check_capabilities(candidate.caps_required(), running.caps_provided(), version)?;
    let mut dropped = DropList::default();
    for exported in running.schemas() {
        let (kind, v) = (exported.kind(), exported.current());
        match candidate.schema(kind) {
            Some(_) => {}
            None if !exported.is_optional() => {
                return Err(Incompatibility::Unread { kind, exported: v })
            }
            None => dropped.push(Dropped { kind, exported: v }),
        }
    }
    Ok(dropped)
}

/// Records a candidate would drop. It holds one per schema entry of the running
/// identity, which has at most [`EmbeddedIdentity::MAX_SCHEMAS`]: it cannot overflow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropList {
    items: [Option<Dropped>; EmbeddedIdentity::MAX_SCHEMAS],
    len: usize,
}

impl DropList {
    fn push(&mut self, d: Dropped) {
        // One per schema entry of an identity (see the type's doc).
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = Some(d);
            self.len += 1;
        }
    }

    /// The dropped records.
    pub fn iter(&self) -> impl Iterator<Item = Dropped> + '_ {
        self.items[..self.len].iter().flatten().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image_format::{kinds, SchemaEntry};
    use std::string::ToString;

    const CAPS: Capabilities = Capabilities::HANDOFF_V1.union(Capabilities::PARK_STUB_V1);

    fn v1() -> EmbeddedIdentity {
        EmbeddedIdentity::new(
            ImageVersion::new(1, 0, 0),
            "v1",
            VersionRange::new(ImageVersion::new(1, 0, 0), ImageVersion::new(1, 99, 99)),
            CAPS,
            CAPS,
            &[
                SchemaEntry::new(kinds::TASK_TABLE, 1, 1),
                SchemaEntry::new(kinds::TICKER, 1, 1).optional(),
            ],
        )
    }

    fn candidate(
        replaces_min: u16,
        required: Capabilities,
        schemas: &[SchemaEntry],
    ) -> EmbeddedIdentity {
        EmbeddedIdentity::new(
            ImageVersion::new(2, 0, 0),
            "v2",
            VersionRange::new(
                ImageVersion::new(replaces_min, 0, 0),
                ImageVersion::new(2, 99, 99),
            ),
            required,
            CAPS,
            schemas,
        )
    }

    #[test]
    fn a_converting_candidate_is_accepted_and_optional_records_may_be_dropped() {
        let c = candidate(1, CAPS, &[SchemaEntry::new(kinds::TASK_TABLE, 3, 1)]);
        let dropped = check(&v1(), &c).unwrap();
        assert_eq!(
            dropped.iter().collect::<std::vec::Vec<_>>(),
            [Dropped {
                kind: kinds::TICKER,
                exported: SchemaVersion::new(1)
            }]
        );
    }

    #[test]
    fn each_refusal_names_what_is_wrong() {
        let ok = [SchemaEntry::new(kinds::TASK_TABLE, 2, 1)];
        let e = check(&v1(), &candidate(2, CAPS, &ok)).unwrap_err();
        assert!(matches!(e, Incompatibility::Version { .. }), "{e}");
        let e = check(
            &v1(),
            &candidate(1, CAPS | Capabilities::TEST_UNPROVIDED, &ok),
        )
        .unwrap_err();
        assert!(e.to_string().contains("TEST_UNPROVIDED"), "{e}");
        // A version gap is not refused here: the field tables decide (`plan`).
        check(
            &v1(),
            &candidate(1, CAPS, &[SchemaEntry::new(kinds::TASK_TABLE, 5, 5)]),
        )
        .unwrap();
        let e = check(
            &v1(),
            &candidate(1, CAPS, &[SchemaEntry::new(kinds::TICKER, 1, 1)]),
        )
        .unwrap_err();
        assert!(
            matches!(e, Incompatibility::Unread { kind, .. } if kind == kinds::TASK_TABLE),
            "{e}"
        );
    }
}
