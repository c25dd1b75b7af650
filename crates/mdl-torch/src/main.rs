//! `mdl-torch`: the libtorch side of `mdl`'s verifier, run as a separate process.
//!
//! It reads a JSON array of [`mdl::verify::Request`]s on stdin and writes one
//! JSON [`mdl::verify::Answer`] per line on stdout, flushed after each file.
//! Only this binary links libtorch: `mdl` starts in milliseconds, and a crash
//! inside libtorch on a hostile file costs that file, not the sync.
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use mdl::config::Device;
use mdl::verify::{Answer, FileReport, Request, VerifyError};

mod libtorch;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--devices") {
        // For `mdl doctor`: what this libtorch sees.
        println!(
            "{}",
            serde_json::json!({
                "cuda_devices": tch::Cuda::device_count(),
                "cudnn": tch::Cuda::cudnn_is_available(),
                "threads": tch::get_num_threads(),
            })
        );
        return ExitCode::SUCCESS;
    }
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("mdl-torch: could not read requests: {e}");
        return ExitCode::from(2);
    }
    let requests: Vec<Request> = match serde_json::from_slice(&input) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mdl-torch: requests are not valid JSON: {e}");
            return ExitCode::from(2);
        }
    };
    let stdout = std::io::stdout();
    match serve_helper(requests, &mut stdout.lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mdl-torch: {e}");
            ExitCode::from(1)
        }
    }
}

/// The helper's side: answers each request by loading with libtorch, one JSON
/// line per request, flushed as it goes (so a crash loses only the current file).
pub fn serve_helper(requests: Vec<Request>, out: &mut impl std::io::Write) -> std::io::Result<()> {
    let mut devices: std::collections::HashMap<String, Result<Device, VerifyError>> = Default::default();
    for (index, request) in requests.iter().enumerate() {
        let device = devices
            .entry(request.device.clone())
            .or_insert_with(|| match Device::parse(&request.device) {
                Some(d) => libtorch::resolve_device(d),
                None => Err(VerifyError::Load {
                    path: request.path.clone(),
                    format: None,
                    reason: format!("`{}` is not a device", request.device),
                }),
            });
        let answer = match device {
            Err(VerifyError::DeviceUnavailable { what, detail, .. }) => Answer::DeviceUnavailable {
                index,
                what: what.to_string(),
                detail: detail.clone(),
            },
            Err(e) => Answer::LoadFailed {
                index,
                format: None,
                reason: e.to_string(),
            },
            Ok(device) => match load_file(&request.path, *device, request.forward.as_deref(), request.run_code) {
                Ok(report) => Answer::Loaded { index, report },
                Err(VerifyError::Load { format, reason, .. }) => Answer::LoadFailed { index, format, reason },
                Err(e) => Answer::LoadFailed {
                    index,
                    format: None,
                    reason: e.to_string(),
                },
            },
        };
        serde_json::to_writer(&mut *out, &answer)?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
    Ok(())
}

/// Detects a file's format and loads it with libtorch. `Ok(None)` for files
/// that are not weights. `run_code`: a TorchScript module is loaded (and its
/// code run) only when config.yaml asked for it.
pub fn load_file(
    path: &Path,
    device: Device,
    forward: Option<&[i64]>,
    run_code: bool,
) -> Result<Option<FileReport>, VerifyError> {
    let run = libtorch::Run {
        forward,
        code: run_code || forward.is_some(),
    };
    mdl::verify::verify_with(path, |format| libtorch::load(path, format, device, run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_each_request_as_a_json_line() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        let requests = vec![
            Request {
                path: fixtures.join("state_dict.pth"),
                device: "cpu".into(),
                forward: None,
                run_code: false,
                format: None,
                spans: Vec::new(),
            },
            Request {
                path: fixtures.join("broken_missing_record.pth"),
                device: "cpu".into(),
                forward: None,
                run_code: false,
                format: None,
                spans: Vec::new(),
            },
            Request {
                path: fixtures.join("manifest.json"),
                device: "cpu".into(),
                forward: None,
                run_code: false,
                format: None,
                spans: Vec::new(),
            },
            Request {
                path: fixtures.join("state_dict.pth"),
                device: "cuda".into(),
                forward: None,
                run_code: false,
                format: None,
                spans: Vec::new(),
            },
        ];
        let mut out = Vec::new();
        serve_helper(requests, &mut out).unwrap();
        let answers: Vec<Answer> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(matches!(&answers[0], Answer::Loaded { index: 0, report: Some(r) } if r.loaded && r.tensors == 9));
        assert!(matches!(&answers[1], Answer::LoadFailed { index: 1, reason, .. } if reason.contains("no record")));
        assert!(matches!(&answers[2], Answer::Loaded { index: 2, report: None }));
        if !tch::Cuda::is_available() {
            assert!(matches!(&answers[3], Answer::DeviceUnavailable { index: 3, .. }));
        }
    }
}
