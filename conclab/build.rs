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
    // The profile this crate is built at, for the machine card: the optimisation level,
    // and whether overflow checks are on. rustc has no stable cfg for the latter; it is
    // on in Cargo's dev profile (and evcxr's) unless a config or environment override
    // turns it off (the lab's evcxr/init.evcxr does, with :build_env), off in release.
    let opt = std::env::var("OPT_LEVEL").unwrap_or_else(|_| "?".into());
    let profile = std::env::var("PROFILE").unwrap_or_default();
    let key = if profile == "release" { "RELEASE" } else { "DEV" };
    let overflow = std::env::var(format!("CARGO_PROFILE_{key}_OVERFLOW_CHECKS"))
        .map(|v| v.trim() == "true")
        .unwrap_or(profile != "release");
    println!("cargo:rustc-env=CONCLAB_OPT_LEVEL={opt}");
    println!("cargo:rustc-env=CONCLAB_OVERFLOW_CHECKS={overflow}");
    println!("cargo:rerun-if-env-changed=CARGO_PROFILE_DEV_OVERFLOW_CHECKS");
    println!("cargo:rerun-if-env-changed=CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS");
    println!("cargo:rerun-if-changed=build.rs");
}
