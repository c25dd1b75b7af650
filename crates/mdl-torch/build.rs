//! Gives `mdl-torch` (and its test binaries) an rpath to libtorch, so that
//! running them never needs `LD_LIBRARY_PATH`. `LIBTORCH` is set for every cargo
//! invocation in this workspace by `.cargo/config.toml`.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        // tch no longer has `maybe_init_cuda`; with `--as-needed` linking nothing
        // would keep libtorch_cuda, and CUDA would go unseen on a GPU machine.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
    if std::env::var_os("CARGO_FEATURE_LIBTORCH").is_none() {
        return;
    }
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        return; // torch-sys reports the missing libtorch itself, with its own hint.
    };
    let lib = libtorch.join("lib");
    if !lib.join("libtorch_cpu.so").exists() {
        println!(
            "cargo:warning=libtorch was not found at `{}`; run `scripts/setup` to install it, \
             or build without the verifier: `cargo build --no-default-features`",
            lib.display()
        );
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}
