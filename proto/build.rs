//! Compiles `vigil/v1/*.proto` with protox (pure Rust, no system protoc) and
//! writes the encoded descriptor set for gRPC reflection.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["vigil/v1/tokens.proto", "vigil/v1/services.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("vigil_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    // Without the `grpc` feature only the messages are generated.
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    // The codec reserves a message's whole length before encoding it
    // (`src/codec.rs`).
    tonic_prost_build::configure()
        .build_client(grpc)
        .build_server(grpc)
        .bytes(".")
        .codec_path("crate::codec::ReservingCodec")
        .compile_fds(fds)?;
    Ok(())
}
