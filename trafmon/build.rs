//! Builds the eBPF object with aya-build (nightly toolchain, bpf-linker) and
//! leaves it in OUT_DIR for `include_bytes_aligned!`.

use std::{env, path::PathBuf};

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    // `cargo xtask setup` builds bpf-linker into the workspace's .tools/;
    // find it there so a plain `cargo build` works after one setup.
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("..");
    let tools = root.join(".tools/bpf-linker/bin");
    let path = env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = env::split_paths(&path).collect();
    if tools.join("bpf-linker").exists() {
        dirs.insert(0, tools);
    }
    if !dirs.iter().any(|d| d.join("bpf-linker").exists()) {
        bail!("bpf-linker not found in .tools/bpf-linker/bin or PATH: run `cargo xtask setup`");
    }
    let joined = env::join_paths(dirs).context("joining PATH")?;
    // SAFETY: build scripts are single-threaded at this point.
    unsafe { env::set_var("PATH", joined) };
    println!("cargo:rerun-if-env-changed=PATH");

    let ebpf = root.join("trafmon-ebpf");
    let package = aya_build::Package {
        name: "trafmon-ebpf",
        root_dir: ebpf.to_str().context("non-UTF-8 path")?,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::Nightly)
}
