//! Uses mdl as a library: makes sure models are on disk and verified, then
//! prints where they are. Point it at the hub emulator (or a mirror) with
//! `HF_ENDPOINT`, e.g. after `target/debug/mdl-hub --demo`:
//!
//! ```text
//! HF_ENDPOINT=http://127.0.0.1:PORT cargo run --example ensure_model -- /tmp/proj mdl-demo/tiny-net
//! ```
use mdl::api::ModelManager;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: ensure_model PROJECT_DIR ID...")?;
    let ids: Vec<String> = args.collect();
    std::fs::create_dir_all(&dir)?;
    let mut manager = ModelManager::in_dir(&dir)?;
    let wanted: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut failed = false;
    for (id, result) in manager.download_models(&wanted) {
        match result {
            Ok((path, info)) => {
                let verified = info.verification.map(|v| format!("{:?}", v.status)).unwrap_or_default();
                println!(
                    "{id}: {} files, {} bytes at {} ({verified})",
                    info.files.len(),
                    info.size,
                    path.display()
                );
            }
            Err(e) => {
                failed = true;
                eprintln!("{id}: {e}");
            }
        }
    }
    for model in manager.list_available_models() {
        println!(
            "available: {} (cached: {})",
            model.name,
            manager.is_model_cached(&model.name)
        );
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}
