//! Generates the tonic/prost code from `tofuflow/v1/*.proto` with protox (no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "tofuflow/v1/task.proto",
        "tofuflow/v1/agent.proto",
        "tofuflow/v1/workflow.proto",
        "tofuflow/v1/env.proto",
        "tofuflow/v1/drift.proto",
        "tofuflow/v1/policy.proto",
        "tofuflow/v1/user.proto",
        "tofuflow/v1/notify.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
