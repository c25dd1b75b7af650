//! `mdl._native`: the Python module's native half, a thin layer over the
//! `mdl` library (`mdl::api::ModelManager`), as the `mdl` command is. Python
//! code never calls this directly: `python/mdl/__init__.py` wraps it in the
//! seed's functions, typed results and exceptions.
//!
//! Three rules hold for every function here:
//! * the GIL is released while the library works (locking, downloading,
//!   hashing, verifying), so other Python threads run;
//! * a library error becomes the exception class of its stage
//!   (`mdl.ConfigError`, `mdl.DownloadError`, …, defined in `mdl/_errors.py`)
//!   carrying the message, its causes, the hint and the CLI's exit code;
//! * results cross as JSON text that Python turns into `mdl.ModelInfo`, so the
//!   field names are the ones `model_info.json` and `mdl list --json` use.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use mdl::api::ModelManager;
use mdl::config::Requirement;
use mdl::registry::ModelInfo;
use mdl::reporter::{Event, Reporter, Silent};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// One wanted model's outcome, as Python receives it: the id asked for, then
/// either the model's directory and its info (JSON), or the exception.
type Outcome = (String, Option<String>, Option<String>, Option<Py<PyAny>>);

/// A project: its config.yaml (or the default project in a directory), the
/// models it wants, and the ones asked for through Python.
#[pyclass(module = "mdl._native")]
struct Project {
    manager: Mutex<ModelManager>,
}

#[pymethods]
impl Project {
    /// `config`: a config.yaml, or a directory (its config.yaml, else the
    /// default project there); `None`: `$MDL_CONFIG`, else the current directory.
    #[new]
    #[pyo3(signature = (config=None))]
    fn new(py: Python<'_>, config: Option<PathBuf>) -> PyResult<Project> {
        let manager = py
            .detach(|| match &config {
                None => ModelManager::discover(),
                Some(dir) if dir.is_dir() => ModelManager::in_dir(dir),
                Some(path) => ModelManager::open(path),
            })
            .map_err(|e| to_py(py, &e))?;
        Ok(Project {
            manager: Mutex::new(manager),
        })
    }

    /// The config file this project reads (it may not exist: the default project).
    #[getter]
    fn config_path(&self) -> PyResult<PathBuf> {
        Ok(self.lock()?.project().config.path.clone())
    }

    /// Where models are placed (`models/` unless the config says otherwise).
    #[getter]
    fn models_dir(&self) -> PyResult<PathBuf> {
        Ok(self.lock()?.project().config.models_dir())
    }

    /// The effective configuration (as `mdl config` prints it), as JSON.
    fn effective_config(&self) -> PyResult<String> {
        Ok(self.lock()?.effective_config().to_string())
    }

    /// Every synced model (`model_registry.json`), as a JSON list.
    fn list_models(&self) -> PyResult<String> {
        let models: Vec<ModelInfo> = self.lock()?.list_available_models();
        serde_json::to_string(&models).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// The synced model's directory, when every locked file is in place.
    fn model_path(&self, name: &str) -> PyResult<Option<PathBuf>> {
        Ok(self.lock()?.get_model_path(name))
    }

    /// The synced model's info (JSON), whether or not it is complete on disk.
    fn model_info(&self, name: &str) -> PyResult<Option<String>> {
        let manager = self.lock()?;
        Ok(manager
            .list_available_models()
            .into_iter()
            .find(|m| {
                m.name == name
                    || m.id == name
                    || manager
                        .project()
                        .config
                        .specs
                        .iter()
                        .any(|s| s.name == m.name && s.matches(name))
            })
            .and_then(|m| serde_json::to_string(&m).ok()))
    }

    /// Also lay Hub models out in the Hugging Face cache (`download.hf_cache`).
    fn fill_hf_cache(&self) -> PyResult<()> {
        self.lock()?.fill_hf_cache();
        Ok(())
    }

    /// Wants each `(id, name)` (name `None`: the id's default), then locks,
    /// fetches and verifies as `mdl sync` does. One outcome per request.
    #[pyo3(signature = (requests, progress=None))]
    fn download(
        &self,
        py: Python<'_>,
        requests: Vec<(String, Option<String>)>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Vec<Outcome>> {
        let wanted: Vec<Requirement> = requests
            .into_iter()
            .map(|(id, name)| Requirement {
                id,
                name,
                ..Default::default()
            })
            .collect();
        let reporter = reporter(py, progress);
        // The lock is taken with the GIL released: another thread waiting
        // for it must not hold the GIL that this call's progress callback needs.
        let results = py.detach(|| self.with_reporter(reporter, |m| m.download_requirements(&wanted)))?;
        Ok(outcomes(py, results))
    }

    /// Wants a preset's models (built in, or the config's `presets:`), then
    /// syncs. One outcome per model of the preset.
    #[pyo3(signature = (preset, progress=None))]
    fn download_preset(&self, py: Python<'_>, preset: &str, progress: Option<Py<PyAny>>) -> PyResult<Vec<Outcome>> {
        let reporter = reporter(py, progress);
        let results = py.detach(|| self.with_reporter(reporter, |m| m.download_preset(preset)))?;
        results.map(|r| outcomes(py, r)).map_err(|e| to_py(py, &e))
    }
}

impl Project {
    /// Runs `work` on the manager with `reporter` receiving its progress.
    fn with_reporter<T>(&self, reporter: Arc<dyn Reporter>, work: impl FnOnce(&mut ModelManager) -> T) -> PyResult<T> {
        let mut manager = self.lock()?;
        manager.set_reporter(reporter);
        let result = work(&mut manager);
        manager.set_reporter(Arc::new(Silent));
        Ok(result)
    }

    fn lock(&self) -> PyResult<std::sync::MutexGuard<'_, ModelManager>> {
        self.manager
            .lock()
            .map_err(|_| PyRuntimeError::new_err("an earlier call on this mdl.Project panicked; make a new one"))
    }
}

/// The snapshot directory of a Hub repo at a revision in the Hugging Face
/// cache (`$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`).
#[pyfunction]
#[pyo3(signature = (repo, revision="main"))]
fn hf_cache_snapshot(repo: &str, revision: &str) -> Option<PathBuf> {
    mdl::store::HfCache::from_env().snapshot(repo, revision)
}

/// Progress for one call: `None` draws bars on a terminal and nothing
/// otherwise; `False` draws nothing; a callable receives each event as a dict.
fn reporter(py: Python<'_>, progress: Option<Py<PyAny>>) -> Arc<dyn Reporter> {
    match progress {
        None => Arc::new(mdl::progress::Printer::bars_or_nothing()),
        Some(p) if p.bind(py).is_instance_of::<pyo3::types::PyBool>() => match p.bind(py).is_truthy() {
            Ok(true) => Arc::new(mdl::progress::Printer::bars_or_nothing()),
            _ => Arc::new(Silent),
        },
        Some(callback) => Arc::new(Callback(callback)),
    }
}

/// Forwards progress events to a Python callable, taking the GIL for each.
struct Callback(Py<PyAny>);

impl Reporter for Callback {
    fn report(&self, event: Event<'_>) {
        Python::attach(|py| {
            let result = event_dict(py, &event).and_then(|d| self.0.call1(py, (d,)));
            if let Err(e) = result {
                // A broken callback must not fail the download it watches.
                e.write_unraisable(py, Some(self.0.bind(py)));
            }
        });
    }
}

/// `{"event": "download_progress", "id": 3, "bytes": 65536}` and so on: the
/// event's name in snake case, and its fields.
fn event_dict<'py>(py: Python<'py>, event: &Event<'_>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let kind = match *event {
        Event::Resolving { model } => {
            d.set_item("model", model)?;
            "resolving"
        }
        Event::DownloadStarted {
            id,
            label,
            size,
            resumed_from,
        } => {
            d.set_item("id", id)?;
            d.set_item("label", label)?;
            d.set_item("size", size)?;
            d.set_item("resumed_from", resumed_from)?;
            "download_started"
        }
        Event::DownloadProgress { id, bytes } => {
            d.set_item("id", id)?;
            d.set_item("bytes", bytes)?;
            "download_progress"
        }
        Event::DownloadFinished { id, label, ok } => {
            d.set_item("id", id)?;
            d.set_item("label", label)?;
            d.set_item("ok", ok)?;
            "download_finished"
        }
        Event::Retrying {
            label,
            attempt,
            reason,
            wait,
        } => {
            d.set_item("label", label)?;
            d.set_item("attempt", attempt)?;
            d.set_item("reason", reason)?;
            d.set_item("wait_seconds", wait.as_secs_f64())?;
            "retrying"
        }
        Event::Request { method, url } => {
            d.set_item("method", method)?;
            // A signed URL's query is its signature: never handed on.
            d.set_item("url", mdl::http::redact(url))?;
            "request"
        }
        Event::Verifying { model } => {
            d.set_item("model", model)?;
            "verifying"
        }
        Event::WaitingForPeer { model, mirror } => {
            d.set_item("model", model)?;
            d.set_item("mirror", mirror)?;
            "waiting_for_peer"
        }
        Event::VerifyPlan { files, helpers, budget } => {
            d.set_item("files", files)?;
            d.set_item("helpers", helpers)?;
            d.set_item("budget", budget)?;
            "verify_plan"
        }
        Event::Rehashing {
            files,
            bytes,
            threads,
            why,
        } => {
            d.set_item("files", files)?;
            d.set_item("bytes", bytes)?;
            d.set_item("threads", threads)?;
            d.set_item("why", why)?;
            "rehashing"
        }
        Event::UploadStarted { id, label, size } => {
            d.set_item("id", id)?;
            d.set_item("label", label)?;
            d.set_item("size", size)?;
            "upload_started"
        }
        Event::UploadFinished { id, label, ok } => {
            d.set_item("id", id)?;
            d.set_item("label", label)?;
            d.set_item("ok", ok)?;
            "upload_finished"
        }
        Event::Warning { message } => {
            d.set_item("message", message)?;
            "warning"
        }
    };
    d.set_item("event", kind)?;
    Ok(d)
}

fn outcomes(py: Python<'_>, results: Vec<mdl::api::Outcome>) -> Vec<Outcome> {
    results
        .into_iter()
        .map(|(id, result)| match result {
            Ok((path, info)) => {
                let json = serde_json::to_string(&info).ok();
                (id, Some(path.display().to_string()), json, None)
            }
            Err(e) => (id, None, None, Some(to_py(py, &e).into_value(py).into_any())),
        })
        .collect()
}

/// The exception class of the stage an error comes from (`mdl/_errors.py`).
fn class_name(e: &mdl::Error) -> &'static str {
    use mdl::Error as E;
    match e {
        E::Config(_) | E::CaBundle(_) => "ConfigError",
        E::Usage { .. } => "UsageError",
        E::Lock(_) => "LockError",
        E::Resolve(_) => "ResolveError",
        E::Plan(_) | E::Fetch(_) => "DownloadError",
        E::Oci(_) => "RegistryError",
        E::Store(_) | E::Io { .. } => "StoreError",
        E::Verify(_) => "VerifyError",
        E::Shared { source, .. } => class_name(source),
        E::Many { errors, .. } => {
            let first = errors.first().map(class_name).unwrap_or("Error");
            if errors.iter().all(|e| class_name(e) == first) {
                first
            } else {
                "Error"
            }
        }
        E::Watch { .. } | E::Runtime(_) | E::Unrecorded { .. } | E::Doctor => "Error",
    }
}

/// The error as the CLI would say it — the sentence, then each cause — as
/// an instance of its stage's exception class, with `hint` and `exit_code`.
fn to_py(py: Python<'_>, e: &mdl::Error) -> PyErr {
    let mut message = e.to_string();
    if let mdl::Error::Many { errors, .. } = e {
        for inner in errors {
            message.push_str(&format!("\n  {inner}"));
        }
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(&format!("\ncaused by: {text}"));
        }
        source = s.source();
    }
    let hint = e.hint();
    let make = || -> PyResult<PyErr> {
        let errors = py.import("mdl._errors")?;
        let class = errors.getattr(class_name(e))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("hint", hint.clone())?;
        kwargs.set_item("exit_code", e.exit_code())?;
        let instance = class.call((message.clone(),), Some(&kwargs))?;
        Ok(PyErr::from_value(instance))
    };
    make().unwrap_or_else(|import_failed| import_failed)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // pip installed `mdl-torch` in the environment's scripts directory, beside
    // `mdl`; this process is `python`, so the helper is not next to it.
    let scripts: PathBuf = m
        .py()
        .import("sysconfig")?
        .call_method1("get_path", ("scripts",))?
        .extract()?;
    mdl::verify::set_installed_helper(scripts.join("mdl-torch"));
    // Verification uses the torch this interpreter imports (when no
    // `VIRTUAL_ENV` or `MDL_LIBTORCH` says otherwise), not `python3`'s.
    let executable: PathBuf = m.py().import("sys")?.getattr("executable")?.extract()?;
    mdl::verify::libtorch_dir::set_running_python(executable);
    m.add_class::<Project>()?;
    m.add_function(wrap_pyfunction!(hf_cache_snapshot, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
