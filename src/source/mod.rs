//! Source-specific knowledge that is not HTTP: the torchvision catalog and its
//! file-name hash rule.

pub mod torchvision;
mod torchvision_catalog;
