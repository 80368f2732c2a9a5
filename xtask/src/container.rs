//! `cargo xtask container`: a static (musl) release build of the agent,
//! wrapped `FROM scratch` by `Containerfile`, built with podman.

use std::{fs, process::Command};

use anyhow::Context as _;

use crate::{
    build::cargo,
    setup::setup,
    util::{root, run},
};

/// The image the tests run.
pub const IMAGE: &str = "localhost/trafmon:dev";
const TARGET: &str = "x86_64-unknown-linux-musl";

/// Builds the image; returns its name.
pub fn container() -> anyhow::Result<&'static str> {
    let linker = setup()?;
    run(Command::new("rustup").args(["target", "add", TARGET]))
        .context("cannot add the musl target")?;
    let mut build = cargo(&linker)?;
    build.args([
        "build",
        "--release",
        "--target",
        TARGET,
        "--package",
        "trafmon",
        "--bin",
        "trafmon",
    ]);
    run(&mut build)?;
    let context = root().join("target/container-context");
    fs::create_dir_all(&context)?;
    fs::copy(
        root().join("target").join(TARGET).join("release/trafmon"),
        context.join("trafmon"),
    )
    .context("cannot stage the binary")?;
    run(Command::new("podman")
        .args(["build", "--runtime", "runc", "--file"])
        .arg(root().join("Containerfile"))
        .args(["--tag", IMAGE])
        .arg(&context))
    .context("cannot build the image (podman)")?;
    Ok(IMAGE)
}
