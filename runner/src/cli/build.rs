//! `hotkernel build`: build a variant and its boot image, print the ELF's path.

use super::BuildArgs;
use crate::build::{self, CargoOutput, Variant};
use crate::diskimage;
use crate::error::Result;
use crate::term::{errln, outln};
use crate::toolchain::{self, Needs};

pub fn build(args: BuildArgs) -> Result<u8> {
    toolchain::check(Needs::Build)?;
    let variant = Variant::try_new(&args.variant)?;
    let built = build::build_kernel_with(&variant, CargoOutput::Inherit)?;
    let image = diskimage::for_kernel(&built)?;
    errln!("hotkernel: boot image {}", image.display());
    outln!("{}", built.elf.display());
    Ok(0)
}
