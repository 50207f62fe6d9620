//! Records the rustc that builds the crate, so the machine card can name it even where
//! no toolchain is installed (a release binary carried to another machine).
use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CONCLAB_RUSTC_VERSION={version}");
    println!("cargo:rerun-if-changed=build.rs");
}
