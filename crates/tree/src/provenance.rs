//! The vocabulary of an account's provenance: where it came from and how far it is
//! trusted. Written as these strings in the registry, the `Ext/GwBoot` mirror, the
//! gateway's Device Inventory and the server's store; this is their one spelling.

use serde::{Deserialize, Serialize};

/// Where an account came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    Factory,
    Server,
    ServerAssisted,
    LocalBootstrap,
    ViaGateway,
}

/// How far an account is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trust {
    Full,
    Restricted,
    Validated,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Factory => "factory",
            Origin::Server => "server",
            Origin::ServerAssisted => "server-assisted",
            Origin::LocalBootstrap => "local-bootstrap",
            Origin::ViaGateway => "via-gateway",
        }
    }

    pub fn parse(text: &str) -> Option<Origin> {
        use Origin::*;
        [Factory, Server, ServerAssisted, LocalBootstrap, ViaGateway]
            .into_iter()
            .find(|o| o.as_str() == text)
    }

    /// Whether an account of this origin is a gateway's.
    pub fn is_gateway(self) -> bool {
        matches!(self, Origin::ServerAssisted | Origin::LocalBootstrap)
    }
}

impl Trust {
    pub fn as_str(self) -> &'static str {
        match self {
            Trust::Full => "full",
            Trust::Restricted => "restricted",
            Trust::Validated => "validated",
        }
    }

    pub fn parse(text: &str) -> Option<Trust> {
        [Trust::Full, Trust::Restricted, Trust::Validated]
            .into_iter()
            .find(|t| t.as_str() == text)
    }
}
