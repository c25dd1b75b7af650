//! Auto-detection of a bare name (`resnet18`, `bert-base-uncased`), in the
//! seed's order: the torchvision catalog, then PyTorch Hub, then the Hub. The
//! lock records what was found, so sync never guesses again.

use super::{torchvision, ResolveError, ResolvedModel, Resolver};
use crate::config::ModelSpec;

impl Resolver<'_> {
    /// A bare name, in the seed's order: the torchvision catalog, then PyTorch
    /// Hub (which cannot list entries by bare name), then the Hugging Face Hub.
    pub(super) async fn resolve_auto(&self, spec: &ModelSpec, name: &str) -> Result<ResolvedModel, ResolveError> {
        let mut tried = Vec::new();
        let tv = &self.sources.torchvision;
        if !tv.enabled {
            tried.push("torchvision: the source is disabled".to_string());
        } else if torchvision::knows(name, &tv.catalog) {
            return self.resolve_torchvision(spec, name, None).await;
        } else {
            let similar = match torchvision::lookup(name, None, None, &tv.catalog) {
                Err(torchvision::LookupError::UnknownModel { similar }) if !similar.is_empty() => {
                    format!(" (similar: {})", similar.join(", "))
                }
                _ => String::new(),
            };
            tried.push(format!("torchvision catalog: no model `{name}`{similar}"));
        }
        tried.push("PyTorch Hub: not searched; an entry needs `pytorch_hub:owner/repo/entry`".to_string());
        if !self.sources.huggingface.enabled {
            tried.push("Hugging Face Hub: the source is disabled".to_string());
        } else {
            match self.resolve_hub(spec, name, None).await {
                Ok(model) => return Ok(model),
                Err(ResolveError::RepoNotFound { .. }) => {
                    tried.push(format!("Hugging Face Hub ({}): no repository `{name}`", self.endpoint))
                }
                Err(other) => return Err(other),
            }
        }
        Err(ResolveError::Undetected {
            name: name.to_string(),
            tried,
        })
    }
}
