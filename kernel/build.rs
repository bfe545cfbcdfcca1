//! Link settings of the kernel that belong to the crate rather than the target.
fn main() {
    // The update entries are called only by another image (found by symbol name in the
    // package): make them roots of the linker's section garbage collection.
    for entry in ["hk_bootstrap", "hk_resume", "hk_ap_resume"] {
        println!("cargo:rustc-link-arg-bins=--undefined={entry}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
