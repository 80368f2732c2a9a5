//! Empty on the host: the programs are the `trafmon` binary target, built for
//! `bpfel-unknown-none` by `trafmon/build.rs`. This library only lets cargo
//! order that build as a build-dependency.
#![no_std]
