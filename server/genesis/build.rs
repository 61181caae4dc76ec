//! Nothing is generated here. The script exists so that cargo downloads
//! `protoc-bin-vendored` (its build-dependency) before any build script runs:
//! `scripts/protoc`, the PROTOC of `.cargo/config.toml`, runs the binary that
//! package ships when etcd-client's build script compiles etcd's protos.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Fails only on a platform the package has no binary for, where
    // scripts/protoc falls back to the system's protoc.
    let _ = protoc_bin_vendored::protoc_bin_path();
}
