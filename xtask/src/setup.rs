//! `cargo xtask setup`: idempotent; `build`, `run` and `test` call it.
//!
//! The eBPF crate builds with the nightly toolchain (aya-build uses
//! `-Z build-std=core`). bpf-linker has no prebuilt binary here, so it is
//! built from crates.io against that toolchain's own libLLVM, found through
//! an `LLVM_PREFIX` directory of symlinks, into `.tools/` where later runs
//! find it.

use std::{fs, os::unix::fs::symlink, path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

use crate::util::{output, root, run};

/// The toolchain that builds the eBPF crate.
pub const EBPF_TOOLCHAIN: &str = "nightly";
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Makes sure rust-src and bpf-linker are there; returns bpf-linker's bin dir.
pub fn setup() -> anyhow::Result<PathBuf> {
    if !crate::util::on_path("rustup") {
        bail!("rustup is not on PATH: install rustup and the {EBPF_TOOLCHAIN} toolchain");
    }
    let sysroot =
        output(Command::new("rustc").args([&format!("+{EBPF_TOOLCHAIN}"), "--print", "sysroot"]))
            .with_context(|| {
            format!(
                "no {EBPF_TOOLCHAIN} toolchain: run `rustup toolchain install {EBPF_TOOLCHAIN}`"
            )
        })?;
    let sysroot = PathBuf::from(sysroot.trim());
    if !sysroot.join("lib/rustlib/src/rust/library/core").exists() {
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            EBPF_TOOLCHAIN,
        ]))
        .context("cannot add rust-src: run `rustup component add rust-src --toolchain nightly`")?;
    }

    let tools = root().join(".tools");
    let bin = tools.join("bpf-linker/bin");
    let linker = bin.join("bpf-linker");
    // Re-link libLLVM every time: a toolchain update moves the library.
    let lib = sysroot.join("lib");
    let libllvm = fs::read_dir(&lib)
        .with_context(|| format!("cannot read {}", lib.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libLLVM.so."))
        })
        .with_context(|| {
            format!(
                "no libLLVM.so.* in {}: the {EBPF_TOOLCHAIN} toolchain has no shared LLVM",
                lib.display()
            )
        })?;
    let prefix = tools.join("llvm");
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib)
        .with_context(|| format!("cannot create {}", prefix_lib.display()))?;
    let soname = libllvm.file_name().expect("a file").to_owned();
    for name in [std::ffi::OsString::from("libLLVM.so"), soname] {
        let link = prefix_lib.join(name);
        let _ = fs::remove_file(&link);
        symlink(&libllvm, &link).with_context(|| format!("cannot link {}", link.display()))?;
    }

    if linker.exists()
        && Command::new(&linker)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    {
        return Ok(bin);
    }

    let version = output(Command::new("rustc").args([&format!("+{EBPF_TOOLCHAIN}"), "-vV"]))?;
    let major = llvm_major(&version).with_context(|| {
        format!("cannot read the LLVM version from `rustc +{EBPF_TOOLCHAIN} -vV`")
    })?;
    eprintln!("xtask: building bpf-linker {BPF_LINKER_VERSION} against LLVM {major} (once)");
    run(Command::new("cargo")
        .arg(format!("+{EBPF_TOOLCHAIN}"))
        .args([
            "install",
            "bpf-linker",
            "--locked",
            "--version",
            BPF_LINKER_VERSION,
        ])
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .arg("--root")
        .arg(tools.join("bpf-linker"))
        .env("LLVM_PREFIX", &prefix)
        .env_remove("RUSTC")
        .env_remove("CARGO_TARGET_DIR"))
    .context("cannot build bpf-linker (needs crates.io and a C compiler)")?;
    Ok(bin)
}

/// The LLVM major version from `rustc -vV` output.
fn llvm_major(version: &str) -> Option<u32> {
    version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_llvm_major() {
        let v = "rustc 1.97.0-nightly\nhost: x86_64-unknown-linux-gnu\nLLVM version: 22.1.4\n";
        assert_eq!(llvm_major(v), Some(22));
        assert_eq!(llvm_major("rustc 1.0\n"), None);
    }
}
