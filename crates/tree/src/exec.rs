//! Running the commands a server sends against the tree, with the statuses DM 1.2
//! gives them: one Status per Item (TargetRef naming it), Results after the Status of
//! a Get, Atomic all-or-nothing, Sequence in order.

use gwmo_proto::codes::{StatusCode, alert, content_type, status};
use gwmo_proto::{
    CmdIds, Command, Container, Data, Item, Location, Meta, Results, Status, Word, word,
};

use crate::TreeError;
use crate::acl::{Acl, Op};
use crate::dmacc::DMACC;
use crate::guard::reaches_guarded;
use crate::gwboot::MIRROR;
use crate::node::{Content, Format, Node};
use crate::tree::{ExecRequest, Tree};
use crate::uri::{Query, Uri, join};

/// The kinds of item command, for the one function that runs them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Add,
    Replace,
    Delete,
    Get,
    Copy,
    Exec,
}

/// What one item came to: its status code and, for a Get, the item to return.
type ItemOutcome = (StatusCode, Option<Item>);

impl Tree {
    /// Runs one command `server_id` sent in message `msg_ref`; returns the Status
    /// (and Results) it produced, numbered from `ids`.
    pub fn execute(
        &mut self,
        server_id: &str,
        msg_ref: u32,
        command: &Command,
        ids: &mut CmdIds,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        self.run(server_id, msg_ref, command, ids, &mut out);
        out
    }

    fn run(
        &mut self,
        server: &str,
        msg_ref: u32,
        command: &Command,
        ids: &mut CmdIds,
        out: &mut Vec<Command>,
    ) {
        let (kind, items, meta, correlator) = match command {
            Command::Add(c) => (Kind::Add, &c.items, &c.meta, None),
            Command::Replace(c) => (Kind::Replace, &c.items, &c.meta, None),
            Command::Delete(c) => (Kind::Delete, &c.items, &c.meta, None),
            Command::Get(c) => (Kind::Get, &c.items, &c.meta, None),
            Command::Copy(c) => (Kind::Copy, &c.items, &c.meta, None),
            Command::Exec(e) => (Kind::Exec, &e.items, &e.meta, e.correlator.as_deref()),
            Command::Atomic(c) => return self.atomic(server, msg_ref, c, ids, out),
            Command::Sequence(c) => {
                out.push(reply(ids, msg_ref, command, status::OK, None));
                for member in &c.commands {
                    self.run(server, msg_ref, member, ids, out);
                }
                return;
            }
            Command::Alert(a) => {
                // A server's UI alerts: this device has no user to show them to, but a
                // plain display is harmless to acknowledge.
                let code = if a.code == alert::DISPLAY {
                    status::OK
                } else {
                    status::OPTIONAL_FEATURE_NOT_SUPPORTED
                };
                out.push(reply(ids, msg_ref, command, code, None));
                return;
            }
            Command::Results(_) | Command::Status(_) => {
                out.push(reply(
                    ids,
                    msg_ref,
                    command,
                    status::OPTIONAL_FEATURE_NOT_SUPPORTED,
                    None,
                ));
                return;
            }
        };
        if items.is_empty() {
            out.push(reply(
                ids,
                msg_ref,
                command,
                status::INCOMPLETE_COMMAND,
                None,
            ));
            return;
        }
        let mut results = Vec::new();
        for item in items {
            let (code, result) = self.item(server, kind, item, meta.as_deref(), correlator);
            out.push(reply(ids, msg_ref, command, code, Some(item)));
            results.extend(result);
        }
        if !results.is_empty() {
            out.push(Command::Results(Results {
                cmd_id: ids.next_id(),
                msg_ref: Some(msg_ref),
                cmd_ref: command.cmd_id(),
                meta: None,
                target_ref: None,
                source_ref: None,
                items: results,
            }));
        }
    }

    /// All members, or none: on the first failure the tree is put back as it was.
    fn atomic(
        &mut self,
        server: &str,
        msg_ref: u32,
        atomic: &Container,
        ids: &mut CmdIds,
        out: &mut Vec<Command>,
    ) {
        let own = Command::Atomic(atomic.clone());
        let own_at = out.len();
        out.push(reply(ids, msg_ref, &own, status::OK, None));
        if atomic
            .commands
            .iter()
            .any(|c| matches!(c, Command::Get(_) | Command::Atomic(_)))
        {
            // DM 1.2: a Get or a nested Atomic inside Atomic fails the whole command.
            set_code(&mut out[own_at], status::COMMAND_FAILED);
            return;
        }
        let undo_point = self.undo_point(&atomic.commands);
        let mut failed_at = None;
        for member in &atomic.commands {
            if failed_at.is_some() {
                out.push(reply(ids, msg_ref, member, status::NOT_EXECUTED, None));
                continue;
            }
            let start = out.len();
            self.run(server, msg_ref, member, ids, out);
            let failed = out[start..]
                .iter()
                .any(|c| matches!(c, Command::Status(s) if !status::is_success(s.code)));
            if failed {
                failed_at = Some(start);
            }
        }
        if let Some(failed_at) = failed_at {
            self.undo(undo_point);
            set_code(&mut out[own_at], status::ATOMIC_FAILED);
            // What ran before the failure was undone.
            for reply in &mut out[own_at + 1..failed_at] {
                if let Command::Status(s) = reply {
                    s.code = status::ATOMIC_ROLLBACK_OK;
                }
            }
        }
    }

    fn item(
        &mut self,
        server: &str,
        kind: Kind,
        item: &Item,
        meta: Option<&Meta>,
        correlator: Option<&str>,
    ) -> ItemOutcome {
        let Some(target) = item.target.as_ref().map(|t| t.uri.as_str()) else {
            return (status::INCOMPLETE_COMMAND, None);
        };
        let uri = match Uri::parse(target) {
            Ok(uri) => uri,
            Err(TreeError::UriTooLong(_)) => return (status::URI_TOO_LONG, None),
            Err(_) => return (status::BAD_REQUEST, None),
        };
        let meta = item.meta.as_deref().or(meta);
        let changes = !matches!(kind, Kind::Get | Kind::Exec);
        if changes && let Some((account, field)) = mirror_target(&uri.segments) {
            // The provenance mirror: only what the device takes into its record.
            let written = match (kind, &uri.query, field) {
                (Kind::Add | Kind::Replace, None, Some(field)) => data_text(item, Format::Chr)
                    .and_then(|value| self.write_mirror(server, account, field, &value)),
                _ => Err(status::PERMISSION_DENIED),
            };
            return (written.err().unwrap_or(status::OK), None);
        }
        // What could touch the accounts is judged by its effect (guard.rs); what a
        // restricted gateway creates elsewhere is noted, to go when it lapses.
        let guard = (changes && reaches_guarded(&uri.segments)).then(|| self.guard(server));
        let created = match kind {
            Kind::Add | Kind::Copy if guard.is_none() => self.first_missing(&uri.segments),
            _ => None,
        };
        let outcome = match (kind, &uri.query) {
            (Kind::Get, Some(Query::Prop(prop))) => {
                self.get_property(server, &uri.segments, prop, target)
            }
            (Kind::Replace, Some(Query::Prop(prop))) => {
                self.replace_property(server, &uri.segments, prop, item)
            }
            (Kind::Get, Some(Query::List(list))) if list.split('+').any(|p| p == "TNDS") => {
                self.get_tnds(server, &uri.segments, target).map(Some)
            }
            (_, Some(Query::List(_))) | (_, Some(Query::Prop(_))) => {
                Err(status::OPTIONAL_FEATURE_NOT_SUPPORTED)
            }
            (Kind::Add, None) => self.add(server, &uri.segments, item, meta).map(|()| None),
            (Kind::Replace, None) => self
                .replace(server, &uri.segments, item, meta)
                .map(|()| None),
            (Kind::Delete, None) => self.delete(server, &uri.segments).map(|()| None),
            (Kind::Get, None) => self.get(server, &uri.segments, target).map(Some),
            (Kind::Copy, None) => self.copy(server, &uri.segments, item).map(|()| None),
            (Kind::Exec, None) => self
                .exec(server, &uri.segments, item, correlator)
                .map(|()| None),
        };
        let result = match outcome {
            Ok(result) => result,
            Err(code) => return (code, None),
        };
        if let Some(guard) = guard
            && self.settle(guard).is_err()
        {
            return (status::PERMISSION_DENIED, None);
        }
        if let Some(depth) = created {
            self.record_creation(server, join(&uri.segments[..=depth]));
        }
        // FUMO's operations run long: accepted now, their result comes in a Generic
        // Alert (FUMO 1.0 §10.2.1: the client MUST answer 202).
        if kind == Kind::Exec && crate::fumo::Operation::of_target(&join(&uri.segments)).is_some() {
            return (status::ACCEPTED_FOR_PROCESSING, result);
        }
        (status::OK, result)
    }

    /// The depth of the first node on `segments` that does not exist yet.
    fn first_missing(&self, segments: &[&str]) -> Option<usize> {
        (0..segments.len()).find(|&depth| self.node_at(&segments[..=depth]).is_none())
    }

    fn require(&self, server: &str, op: Op, segments: &[&str]) -> Result<(), StatusCode> {
        if self.permits(server, op, segments) {
            Ok(())
        } else {
            Err(status::PERMISSION_DENIED)
        }
    }

    fn add(
        &mut self,
        server: &str,
        segments: &[&str],
        item: &Item,
        meta: Option<&Meta>,
    ) -> Result<(), StatusCode> {
        let (name, _) = segments.split_last().ok_or(status::ALREADY_EXISTS)?;
        // Add is checked against the deepest node that exists on the way.
        let existing = (0..=segments.len())
            .rev()
            .find(|&depth| self.node_at(&segments[..depth]).is_some())
            .unwrap_or(0);
        let deepest = self
            .node_at(&segments[..existing])
            .ok_or(status::COMMAND_FAILED)?;
        if existing == segments.len() {
            self.require(server, Op::Get, segments)?;
            return Err(status::ALREADY_EXISTS);
        }
        if !deepest.is_interior() {
            return Err(status::COMMAND_NOT_ALLOWED);
        }
        self.require(server, Op::Add, &segments[..existing])?;
        if meta.and_then(|m| m.r#type.as_deref()).is_some_and(is_tnds) {
            // TNDS subtrees come with the local bootstrap work; refuse them cleanly now.
            return Err(status::UNSUPPORTED_MEDIA_TYPE);
        }
        let format = meta_format(meta)?;
        let mut node = if format == Format::Node {
            Node::interior()
        } else {
            Node::leaf(&data_text(item, format)?, format)
        };
        node.mime = meta.and_then(|m| m.r#type.as_deref()).map(str::to_owned);
        // A server can manage what it adds even where the parent grants it only Add.
        let manages = [Op::Delete, Op::Get, Op::Replace]
            .iter()
            .all(|op| self.permits(server, *op, &segments[..existing]));
        let parent = self
            .make_interiors(&segments[..segments.len() - 1])
            .map_err(|_| status::COMMAND_NOT_ALLOWED)?;
        parent
            .children_mut()
            .ok_or(status::COMMAND_NOT_ALLOWED)?
            .insert((*name).to_owned(), node);
        if !manages {
            // On the topmost node this Add created, so the whole new subtree is covered.
            if let Some(created) = self.node_at_mut(&segments[..=existing]) {
                created.acl = Some(Acl::granting(
                    server,
                    &[Op::Add, Op::Delete, Op::Get, Op::Replace],
                ));
            }
        }
        self.grant_account_to_its_server(segments);
        Ok(())
    }

    /// A new `./DMAcc/<X>/ServerID` gives that server Add, Delete, Get and Replace on
    /// `./DMAcc/<X>`, as a bootstrapped account must (DM Bootstrap).
    fn grant_account_to_its_server(&mut self, segments: &[&str]) {
        let [dmacc, account, "ServerID"] = segments else {
            return;
        };
        if *dmacc != &DMACC[2..] {
            return;
        }
        let Some(server) = self
            .node_at(segments)
            .and_then(Node::value)
            .map(str::to_owned)
        else {
            return;
        };
        // Start from the ACL in force there, so no one loses a right they had.
        let mut acl = self
            .effective_acl(&[dmacc, account])
            .cloned()
            .unwrap_or_default();
        for op in [Op::Add, Op::Delete, Op::Get, Op::Replace] {
            acl.grant(op, &server);
        }
        if let Some(node) = self.node_at_mut(&[dmacc, account]) {
            node.acl = Some(acl);
        }
    }

    fn replace(
        &mut self,
        server: &str,
        segments: &[&str],
        item: &Item,
        meta: Option<&Meta>,
    ) -> Result<(), StatusCode> {
        let node = self.node_at(segments).ok_or(status::NOT_FOUND)?;
        self.require(server, Op::Replace, segments)?;
        if node.is_interior() {
            return Err(status::COMMAND_NOT_ALLOWED);
        }
        let format = match meta.and_then(|m| m.format.as_deref()) {
            Some(_) => meta_format(meta)?,
            None => node.format,
        };
        if format == Format::Node {
            return Err(status::COMMAND_NOT_ALLOWED);
        }
        let value = data_text(item, format)?;
        let node = self.node_at_mut(segments).ok_or(status::NOT_FOUND)?;
        node.content = Content::Leaf(value);
        node.format = format;
        if let Some(mime) = meta.and_then(|m| m.r#type.as_deref()) {
            node.mime = Some(mime.to_owned());
        }
        Ok(())
    }

    fn delete(&mut self, server: &str, segments: &[&str]) -> Result<(), StatusCode> {
        let (name, parent) = segments.split_last().ok_or(status::COMMAND_NOT_ALLOWED)?;
        let node = self.node_at(segments).ok_or(status::NOT_FOUND)?;
        self.require(server, Op::Delete, segments)?;
        if node.permanent {
            return Err(status::COMMAND_NOT_ALLOWED);
        }
        self.node_at_mut(parent)
            .and_then(Node::children_mut)
            .and_then(|children| children.remove(*name))
            .map(|_| ())
            .ok_or(status::NOT_FOUND)
    }

    fn get(&self, server: &str, segments: &[&str], target: &str) -> Result<Item, StatusCode> {
        let node = self.node_at(segments).ok_or(status::NOT_FOUND)?;
        self.require(server, Op::Get, segments)?;
        let data = match &node.content {
            Content::Leaf(value) => value.clone(),
            Content::Interior(children) => children
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join("/"),
        };
        Ok(result_item(
            target,
            Some(node.format.as_str()),
            node.mime.as_deref().map(|mime| word(mime.into())),
            data,
        ))
    }

    /// `Get <uri>?list=TNDS+...`: the subtree as one TNDS document, without the nodes
    /// this server may not Get. (The `list` options beyond TNDS change nothing: values,
    /// formats and types always come, ACLs never.)
    fn get_tnds(&self, server: &str, segments: &[&str], target: &str) -> Result<Item, StatusCode> {
        self.node_at(segments).ok_or(status::NOT_FOUND)?;
        self.require(server, Op::Get, segments)?;
        let subtree = self
            .visible_tnds(server, segments)
            .ok_or(status::NOT_FOUND)?;
        // The root has no name of its own: its children are the document's nodes.
        let nodes = match segments {
            [] => subtree.children,
            _ => vec![subtree],
        };
        Ok(result_item(
            target,
            Some("xml"),
            Some(Word::Borrowed(content_type::TNDS_XML)),
            gwmo_proto::tnds::to_xml(&nodes),
        ))
    }

    fn get_property(
        &self,
        server: &str,
        segments: &[&str],
        prop: &str,
        target: &str,
    ) -> Result<Option<Item>, StatusCode> {
        let node = self.node_at(segments).ok_or(status::NOT_FOUND)?;
        self.require(server, Op::Get, segments)?;
        let value = match prop {
            "ACL" => node
                .acl
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            "Format" => node.format.as_str().to_owned(),
            "Type" => node.mime.clone().unwrap_or_default(),
            "Title" => node.title.clone().unwrap_or_default(),
            "Name" => segments
                .last()
                .map(|s| (*s).to_owned())
                .unwrap_or_else(|| ".".into()),
            "Size" => node
                .size()
                .ok_or(status::OPTIONAL_FEATURE_NOT_SUPPORTED)?
                .to_string(),
            _ => return Err(status::OPTIONAL_FEATURE_NOT_SUPPORTED),
        };
        Ok(Some(result_item(target, Some("chr"), None, value)))
    }

    fn replace_property(
        &mut self,
        server: &str,
        segments: &[&str],
        prop: &str,
        item: &Item,
    ) -> Result<Option<Item>, StatusCode> {
        self.node_at(segments).ok_or(status::NOT_FOUND)?;
        let value = data_text(item, Format::Chr)?;
        match prop {
            "ACL" => {
                // Changing who may do what needs Replace on the parent (the root: itself).
                let parent = &segments[..segments.len().saturating_sub(1)];
                self.require(server, Op::Replace, parent)?;
                let acl = Acl::parse(&value).map_err(|_| status::BAD_REQUEST)?;
                self.node_at_mut(segments).ok_or(status::NOT_FOUND)?.acl = Some(acl);
            }
            "Title" => {
                self.require(server, Op::Replace, segments)?;
                self.node_at_mut(segments).ok_or(status::NOT_FOUND)?.title = Some(value);
            }
            "Name" | "Format" | "Type" | "Size" => return Err(status::COMMAND_NOT_ALLOWED),
            _ => return Err(status::OPTIONAL_FEATURE_NOT_SUPPORTED),
        }
        Ok(None)
    }

    fn copy(&mut self, server: &str, target: &[&str], item: &Item) -> Result<(), StatusCode> {
        let source_uri = item.source.as_ref().ok_or(status::INCOMPLETE_COMMAND)?;
        let source = Uri::parse(&source_uri.uri).map_err(|_| status::BAD_REQUEST)?;
        let node = self.node_at(&source.segments).ok_or(status::NOT_FOUND)?;
        self.require(server, Op::Get, &source.segments)?;
        let (Some(value), format, mime) = (
            node.value().map(str::to_owned),
            node.format,
            node.mime.clone(),
        ) else {
            return Err(status::COMMAND_NOT_ALLOWED);
        };
        let copied = Item {
            target: item.target.clone(),
            data: Some(Data::Text(value)),
            ..Item::default()
        };
        let meta = Meta {
            format: Some(format.as_str().into()),
            r#type: mime.map(Word::from),
            ..Meta::default()
        };
        match self.node_at(target) {
            Some(existing) if existing.is_interior() => Err(status::COMMAND_NOT_ALLOWED),
            Some(_) => self.replace(server, target, &copied, Some(&meta)),
            None => self.add(server, target, &copied, Some(&meta)),
        }
    }

    fn exec(
        &mut self,
        server: &str,
        segments: &[&str],
        item: &Item,
        correlator: Option<&str>,
    ) -> Result<(), StatusCode> {
        self.node_at(segments).ok_or(status::NOT_FOUND)?;
        self.require(server, Op::Exec, segments)?;
        if !self.may_exec(server, segments) {
            return Err(status::PERMISSION_DENIED);
        }
        self.exec_requests.push(ExecRequest {
            server_id: server.to_owned(),
            uri: join(segments),
            data: item
                .data
                .as_ref()
                .and_then(Data::as_text)
                .map(str::to_owned),
            correlator: correlator.map(str::to_owned),
        });
        Ok(())
    }
}

/// The account and field a target inside an account's provenance mirror names
/// (`./DMAcc/<X>/Ext/GwBoot[/<field>]`; no field for the mirror itself or below a field).
fn mirror_target<'a>(segments: &[&'a str]) -> Option<(&'a str, Option<&'a str>)> {
    match segments {
        ["DMAcc", account, ext, gwboot, rest @ ..] if [*ext, *gwboot] == MIRROR => Some((
            account,
            if let [field] = rest {
                Some(*field)
            } else {
                None
            },
        )),
        _ => None,
    }
}

fn is_tnds(mime: &str) -> bool {
    mime.eq_ignore_ascii_case(content_type::TNDS_XML)
        || mime.eq_ignore_ascii_case(content_type::TNDS_WBXML)
}

fn meta_format(meta: Option<&Meta>) -> Result<Format, StatusCode> {
    match meta.and_then(|m| m.format.as_deref()) {
        None => Ok(Format::Chr),
        Some(text) => Format::parse(text).ok_or(status::UNSUPPORTED_MEDIA_TYPE),
    }
}

/// An item's data as the text a leaf stores (binary data as base64 for b64/bin).
fn data_text(item: &Item, format: Format) -> Result<String, StatusCode> {
    use base64::Engine;
    Ok(match &item.data {
        None => String::new(),
        Some(Data::Text(text) | Data::Xml(text)) => text.clone(),
        Some(Data::Bytes(bytes)) if matches!(format, Format::B64 | Format::Bin) => {
            base64::engine::general_purpose::STANDARD.encode(bytes)
        }
        Some(Data::Bytes(bytes)) => {
            String::from_utf8(bytes.clone()).map_err(|_| status::UNSUPPORTED_MEDIA_TYPE)?
        }
    })
}

fn result_item(uri: &str, format: Option<&'static str>, mime: Option<Word>, data: String) -> Item {
    Item {
        source: Some(Location::new(uri)),
        meta: Some(Box::new(Meta {
            format: format.map(Word::from),
            r#type: mime,
            ..Meta::default()
        })),
        data: Some(Data::Text(data)),
        ..Item::default()
    }
}

/// The Status answering `command` (for `item`, naming its target and source).
fn reply(
    ids: &mut CmdIds,
    msg_ref: u32,
    command: &Command,
    code: StatusCode,
    item: Option<&Item>,
) -> Command {
    Command::Status(Status {
        cmd_id: ids.next_id(),
        msg_ref,
        cmd_ref: command.cmd_id(),
        cmd: command.name().into(),
        target_refs: item
            .and_then(|i| i.target.as_ref())
            .map(|t| t.uri.clone())
            .into_iter()
            .collect(),
        source_refs: item
            .and_then(|i| i.source.as_ref())
            .map(|s| s.uri.clone())
            .into_iter()
            .collect(),
        chal: None,
        code,
        items: vec![],
    })
}

fn set_code(command: &mut Command, code: StatusCode) {
    if let Command::Status(s) = command {
        s.code = code;
    }
}
