fn main() {
    let k = std::path::PathBuf::from(std::env::args().nth(1).unwrap());
    let out = std::path::PathBuf::from(std::env::args().nth(2).unwrap());
    bootloader::BiosBoot::new(&k).create_disk_image(&out).unwrap();
}
