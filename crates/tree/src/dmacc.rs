//! DM 1.2 DM accounts (`./DMAcc/<X>`, the DMAcc object of the OMA DM 1.2 Standardized
//! Objects): reading and writing them, and keeping the nonces of their AppAuth entries.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use gwmo_proto::auth::AuthType;

use crate::TreeError;
use crate::acl::{Acl, Op};
use crate::node::{Format, Node};
use crate::tree::Tree;

pub const DMACC: &str = "./DMAcc";
/// The same node as the one segment under the root.
pub(crate) const DMACC_NODE: &str = "DMAcc";

/// Which direction an AppAuth entry authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthLevel {
    /// `CLCRED`: the device toward the server.
    Client,
    /// `SRVCRED`: the server toward the device (also keys package 0).
    Server,
}

impl AuthLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthLevel::Client => "CLCRED",
            AuthLevel::Server => "SRVCRED",
        }
    }

    fn parse(text: &str) -> Option<AuthLevel> {
        match text {
            "CLCRED" => Some(AuthLevel::Client),
            "SRVCRED" => Some(AuthLevel::Server),
            _ => None,
        }
    }
}

fn auth_type_name(auth: AuthType) -> &'static str {
    match auth {
        AuthType::Basic => "BASIC",
        AuthType::Md5 => "DIGEST",
        AuthType::Hmac => "HMAC",
    }
}

fn auth_type_parse(text: &str) -> Option<AuthType> {
    match text {
        "BASIC" => Some(AuthType::Basic),
        "DIGEST" => Some(AuthType::Md5),
        "HMAC" => Some(AuthType::Hmac),
        _ => None,
    }
}

/// One AppAuth entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppAuth {
    pub level: AuthLevel,
    pub auth_type: AuthType,
    pub name: String,
    pub secret: String,
    /// AAuthData, base64-decoded: the nonce for the next credential.
    pub nonce: Vec<u8>,
}

/// A DM account as the tree holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmAccount {
    pub server_id: String,
    pub name: Option<String>,
    pub addr: String,
    pub auths: Vec<AppAuth>,
}

impl DmAccount {
    /// An account with a URI address and both AppAuth entries, nonces empty.
    pub fn new(
        server_id: &str,
        addr: &str,
        auth: AuthType,
        client_name: &str,
        client_secret: &str,
        server_name: &str,
        server_secret: &str,
    ) -> DmAccount {
        let entry = |level, name: &str, secret: &str| AppAuth {
            level,
            auth_type: auth,
            name: name.to_owned(),
            secret: secret.to_owned(),
            nonce: Vec::new(),
        };
        DmAccount {
            server_id: server_id.to_owned(),
            name: None,
            addr: addr.to_owned(),
            auths: vec![
                entry(AuthLevel::Client, client_name, client_secret),
                entry(AuthLevel::Server, server_name, server_secret),
            ],
        }
    }

    pub fn address(&self) -> Option<&str> {
        (!self.addr.is_empty()).then_some(self.addr.as_str())
    }

    pub fn credentials(&self, level: AuthLevel) -> Option<&AppAuth> {
        self.auths.iter().find(|a| a.level == level)
    }
}

/// Writes `./DMAcc/<name>` and grants its ServerID the rights to manage it.
pub fn write_dm_account(tree: &mut Tree, name: &str, account: &DmAccount) -> Result<(), TreeError> {
    let base = format!("{DMACC}/{name}");
    tree.ensure_interior(&base)?;
    let leaf = |tree: &mut Tree, path: &str, value: &str| {
        tree.set_leaf(&format!("{base}/{path}"), value, Format::Chr)
    };
    leaf(tree, "AppID", "w7")?;
    leaf(tree, "ServerID", &account.server_id)?;
    if let Some(display) = &account.name {
        leaf(tree, "Name", display)?;
    }
    leaf(tree, "AppAddr/1/Addr", &account.addr)?;
    leaf(tree, "AppAddr/1/AddrType", "URI")?;
    if let Some(first) = account.auths.first() {
        leaf(tree, "AAuthPref", auth_type_name(first.auth_type))?;
    }
    for (index, auth) in account.auths.iter().enumerate() {
        let entry = format!("AppAuth/{}", index + 1);
        leaf(tree, &format!("{entry}/AAuthLevel"), auth.level.as_str())?;
        leaf(
            tree,
            &format!("{entry}/AAuthType"),
            auth_type_name(auth.auth_type),
        )?;
        leaf(tree, &format!("{entry}/AAuthName"), &auth.name)?;
        leaf(tree, &format!("{entry}/AAuthSecret"), &auth.secret)?;
        leaf(
            tree,
            &format!("{entry}/AAuthData"),
            &B64.encode(&auth.nonce),
        )?;
    }
    tree.ensure_interior(&format!("{base}/Ext"))?;
    tree.set_acl(
        &base,
        Acl::granting(
            &account.server_id,
            &[Op::Add, Op::Delete, Op::Get, Op::Replace],
        ),
    )
}

/// Every account under ./DMAcc that names a ServerID, with its node name.
pub fn dm_accounts(tree: &Tree) -> Vec<(String, DmAccount)> {
    let Some(names) = tree.children(DMACC) else {
        return Vec::new();
    };
    names
        .into_iter()
        .filter_map(|name| {
            Some((
                name.to_owned(),
                read_account(tree, &format!("{DMACC}/{name}"))?,
            ))
        })
        .collect()
}

/// Each account's node name and ServerID (the accounts [`dm_accounts`] reads, since an
/// account without a ServerID is none): what finding an account by its server needs,
/// without reading the rest of every account (once per command item, this was a tenth
/// of a gateway's CPU).
pub fn account_server_ids(tree: &Tree) -> Vec<(&str, &str)> {
    let Some(accounts) = tree.node_at(&[DMACC_NODE]).and_then(Node::children) else {
        return Vec::new();
    };
    accounts
        .iter()
        .filter_map(|(name, account)| {
            let server_id = account.children()?.get("ServerID")?.value()?;
            Some((name.as_str(), server_id))
        })
        .collect()
}

/// The one account whose ServerID is `server_id`, with its node name (none when no
/// account or several carry it: a session never guesses which one is meant).
pub fn account_for(tree: &Tree, server_id: &str) -> Option<(String, DmAccount)> {
    let mut matching = account_server_ids(tree)
        .into_iter()
        .filter(|(_, id)| *id == server_id);
    let (name, _) = matching.next()?;
    if matching.next().is_some() {
        return None;
    }
    Some((
        name.to_owned(),
        read_account(tree, &format!("{DMACC}/{name}"))?,
    ))
}

/// The node name of the one account whose ServerID is `server_id`.
pub fn account_of(tree: &Tree, server_id: &str) -> Option<String> {
    account_for(tree, server_id).map(|(name, _)| name)
}

fn read_account(tree: &Tree, base: &str) -> Option<DmAccount> {
    let text = |path: &str| tree.value(&format!("{base}/{path}")).map(str::to_owned);
    let addr = tree
        .children(&format!("{base}/AppAddr"))
        .unwrap_or_default()
        .into_iter()
        .find_map(|x| text(&format!("AppAddr/{x}/Addr")))
        .unwrap_or_default();
    let auths = tree
        .children(&format!("{base}/AppAuth"))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|x| {
            let field = |f: &str| text(&format!("AppAuth/{x}/{f}"));
            Some(AppAuth {
                level: AuthLevel::parse(&field("AAuthLevel")?)?,
                auth_type: auth_type_parse(&field("AAuthType")?)?,
                name: field("AAuthName").unwrap_or_default(),
                secret: field("AAuthSecret").unwrap_or_default(),
                nonce: field("AAuthData")
                    .and_then(|d| B64.decode(d.trim()).ok())
                    .unwrap_or_default(),
            })
        })
        .collect();
    Some(DmAccount {
        server_id: text("ServerID")?,
        name: text("Name"),
        addr,
        auths,
    })
}

/// Stores the nonce of one AppAuth entry of account `<name>` (AAuthData, base64).
pub fn set_account_nonce(
    tree: &mut Tree,
    name: &str,
    level: AuthLevel,
    nonce: &[u8],
) -> Result<(), TreeError> {
    let base = format!("{DMACC}/{name}/AppAuth");
    let entry = tree
        .children(&base)
        .unwrap_or_default()
        .into_iter()
        .find(|x| tree.value(&format!("{base}/{x}/AAuthLevel")) == Some(level.as_str()))
        .map(str::to_owned)
        .ok_or_else(|| TreeError::NotFound(format!("{base}/<{}>", level.as_str())))?;
    tree.set_leaf(
        &format!("{base}/{entry}/AAuthData"),
        &B64.encode(nonce),
        Format::Chr,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> DmAccount {
        DmAccount::new(
            "dms",
            "http://dms/dm",
            AuthType::Md5,
            "dev",
            "cs",
            "dms",
            "ss",
        )
    }

    #[test]
    fn an_account_reads_back_as_written() {
        let mut tree = Tree::default();
        write_dm_account(&mut tree, "A1", &account()).unwrap();
        let accounts = dm_accounts(&tree);
        assert_eq!(accounts, vec![("A1".to_owned(), account())]);
        assert_eq!(tree.value("./DMAcc/A1/AppAuth/1/AAuthType"), Some("DIGEST"));
        assert_eq!(accounts[0].1.address(), Some("http://dms/dm"));
        assert_eq!(
            accounts[0].1.credentials(AuthLevel::Server).unwrap().secret,
            "ss"
        );
    }

    #[test]
    fn the_server_ids_name_the_accounts_dm_accounts_reads_and_account_for_finds_one() {
        let mut tree = Tree::default();
        write_dm_account(&mut tree, "A1", &account()).unwrap();
        let mut other = account();
        other.server_id = "other".into();
        write_dm_account(&mut tree, "A2", &other).unwrap();
        tree.ensure_interior("./DMAcc/NoServerId/AppAddr").unwrap();
        tree.ensure_interior("./DMAcc/InteriorServerId/ServerID")
            .unwrap();
        let read: Vec<(String, String)> = dm_accounts(&tree)
            .into_iter()
            .map(|(name, account)| (name, account.server_id))
            .collect();
        let ids: Vec<(String, String)> = account_server_ids(&tree)
            .into_iter()
            .map(|(name, id)| (name.to_owned(), id.to_owned()))
            .collect();
        assert_eq!(ids, read);
        assert_eq!(ids.len(), 2);
        assert_eq!(
            account_for(&tree, "other"),
            Some(("A2".into(), other.clone()))
        );
        write_dm_account(&mut tree, "A3", &other).unwrap();
        assert_eq!(account_for(&tree, "other"), None, "two accounts carry it");
    }

    #[test]
    fn nonces_are_kept_per_direction() {
        let mut tree = Tree::default();
        write_dm_account(&mut tree, "A1", &account()).unwrap();
        set_account_nonce(&mut tree, "A1", AuthLevel::Client, &[1, 2]).unwrap();
        set_account_nonce(&mut tree, "A1", AuthLevel::Server, b"s").unwrap();
        let (_, read) = &dm_accounts(&tree)[0];
        assert_eq!(
            read.credentials(AuthLevel::Client).unwrap().nonce,
            vec![1, 2]
        );
        assert_eq!(
            read.credentials(AuthLevel::Server).unwrap().nonce,
            b"s".to_vec()
        );
        assert!(set_account_nonce(&mut tree, "Nope", AuthLevel::Client, b"x").is_err());
    }

    #[test]
    fn the_account_server_manages_its_account_and_no_one_else_does() {
        let mut tree = Tree::default();
        write_dm_account(&mut tree, "A1", &account()).unwrap();
        assert!(tree.permits("dms", Op::Replace, &["DMAcc", "A1", "AppAddr", "1", "Addr"]));
        assert!(!tree.permits("other", Op::Get, &["DMAcc", "A1", "ServerID"]));
    }
}
