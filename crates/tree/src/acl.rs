//! DM access control lists: `Add=srv1+srv2&Get=*&Replace=srv1`. A node without an
//! ACL inherits its parent's; `*` grants every server.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::TreeError;

/// The operations an ACL grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Add,
    Delete,
    Exec,
    Get,
    Replace,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Add => "Add",
            Op::Delete => "Delete",
            Op::Exec => "Exec",
            Op::Get => "Get",
            Op::Replace => "Replace",
        }
    }

    fn parse(text: &str) -> Option<Op> {
        [Op::Add, Op::Delete, Op::Exec, Op::Get, Op::Replace]
            .into_iter()
            .find(|op| op.as_str() == text)
    }
}

/// An ACL: for each operation, the ServerIDs it is granted to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Acl {
    entries: Vec<(Op, Vec<String>)>,
}

impl Acl {
    /// Parses the DM ACL syntax; an empty string is an empty ACL (nobody).
    pub fn parse(text: &str) -> Result<Acl, TreeError> {
        let mut acl = Acl::default();
        for entry in text.split('&').filter(|e| !e.is_empty()) {
            let (op, servers) = entry
                .split_once('=')
                .ok_or_else(|| TreeError::BadAcl(text.to_owned()))?;
            let op = Op::parse(op).ok_or_else(|| TreeError::BadAcl(text.to_owned()))?;
            for server in servers.split('+') {
                if server.is_empty() || server.contains(['&', '=']) {
                    return Err(TreeError::BadAcl(text.to_owned()));
                }
                acl.grant(op, server);
            }
        }
        Ok(acl)
    }

    /// An ACL granting every operation in `ops` to `server`.
    pub fn granting(server: &str, ops: &[Op]) -> Acl {
        let mut acl = Acl::default();
        for op in ops {
            acl.grant(*op, server);
        }
        acl
    }

    pub fn grant(&mut self, op: Op, server: &str) {
        match self.entries.iter_mut().find(|(o, _)| *o == op) {
            Some((_, servers)) if !servers.iter().any(|s| s == server) => {
                servers.push(server.to_owned())
            }
            Some(_) => {}
            None => {
                self.entries.push((op, vec![server.to_owned()]));
                self.entries.sort_by_key(|(o, _)| *o);
            }
        }
    }

    /// Takes every right away from `server` (an entry left granting no one goes too).
    pub fn revoke(&mut self, server: &str) {
        for (_, servers) in &mut self.entries {
            servers.retain(|s| s != server);
        }
        self.entries.retain(|(_, servers)| !servers.is_empty());
    }

    /// Whether the ACL names `server` itself (not through `*`).
    pub fn names(&self, server: &str) -> bool {
        self.entries
            .iter()
            .any(|(_, servers)| servers.iter().any(|s| s == server))
    }

    pub fn allows(&self, op: Op, server: &str) -> bool {
        self.entries
            .iter()
            .any(|(o, servers)| *o == op && servers.iter().any(|s| s == "*" || s == server))
    }
}

impl fmt::Display for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (op, servers)) in self.entries.iter().enumerate() {
            if index > 0 {
                f.write_str("&")?;
            }
            write!(f, "{}={}", op.as_str(), servers.join("+"))?;
        }
        Ok(())
    }
}

impl Serialize for Acl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Acl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Acl, D::Error> {
        let text = String::deserialize(deserializer)?;
        Acl::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grants_and_prints_back() {
        let acl = Acl::parse("Get=*&Replace=a+b&Add=a").unwrap();
        assert!(acl.allows(Op::Get, "anyone"));
        assert!(acl.allows(Op::Replace, "b"));
        assert!(!acl.allows(Op::Replace, "c"));
        assert!(!acl.allows(Op::Delete, "a"));
        assert_eq!(acl.to_string(), "Add=a&Get=*&Replace=a+b");
        assert_eq!(Acl::parse(&acl.to_string()).unwrap(), acl);
    }

    #[test]
    fn revoking_a_server_leaves_the_others_and_no_empty_entry() {
        let mut acl = Acl::parse("Get=*&Replace=a+b&Add=a").unwrap();
        acl.revoke("a");
        assert_eq!(acl.to_string(), "Get=*&Replace=b");
        assert!(!acl.names("a") && acl.names("b"));
    }

    #[test]
    fn malformed_acls_are_refused() {
        for bad in ["Get", "Get=", "Launch=a", "Get=a++b", "Get=a&=b"] {
            assert!(Acl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Acl::parse("").unwrap(), Acl::default());
    }
}
