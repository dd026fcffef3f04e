//! Builds the shared object that makes opencode non-dumpable in its jail
//! (`src/sandbox/nodump.c`); kugetsu carries its bytes and writes it at run time.

use std::path::PathBuf;

fn main() {
    let source = "src/sandbox/nodump.c";
    println!("cargo:rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("nodump.so");
    let status = cc::Build::new()
        .get_compiler()
        .to_command()
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&out)
        .arg(source)
        .status()
        .expect("a C compiler (cc) is needed to build kugetsu");
    assert!(status.success(), "compiling {source} failed");
}
