//! Compiles the EventStoreDB client protocol with `protox` (pure Rust), so no
//! system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/shared.proto",
        "proto/code.proto",
        "proto/status.proto",
        "proto/streams.proto",
        "proto/persistent.proto",
        "proto/gossip.proto",
        "proto/serverfeatures.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
