//! Fan-out through a gateway (GwMO Fanout): the commands that hand a gateway a
//! command for several of its end devices, and reading the results it reports back in
//! a Generic Alert.

use gwmo_proto::Alert;
use gwmo_proto::codes::alert_type;

use gwmo_tree::gwmo::{FANOUT, fanout};

use crate::command::CommandSpec;

/// The Atomic that creates fan-out `id` on the gateway: its targets and its command.
pub fn request(id: i64, targets: &[String], spec: &CommandSpec) -> CommandSpec {
    let add = |leaf: &str, data: String| CommandSpec::Add {
        target: format!("{FANOUT}/{id}/{leaf}"),
        data: Some(data),
        format: None,
        mime: None,
    };
    CommandSpec::Atomic {
        commands: vec![
            add(fanout::TARGETS, targets.join(",")),
            add(fanout::COMMAND, spec.to_json()),
        ],
    }
}

/// The fan-out results an alert carries: (fan-out id, results JSON).
pub fn results(alert: &Alert) -> impl Iterator<Item = (i64, String)> + '_ {
    alert.items.iter().filter_map(|item| {
        let kind = item.meta.as_ref()?.r#type.as_deref()?;
        if kind != alert_type::FANOUT_RESULTS {
            return None;
        }
        let id = item
            .source
            .as_ref()?
            .uri
            .strip_prefix(FANOUT)?
            .trim_matches('/')
            .parse()
            .ok()?;
        Some((id, item.data.as_ref()?.as_text()?.to_owned()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gwmo_proto::{Data, Item, Location, Meta};

    #[test]
    fn results_are_read_from_fanout_alerts_only() {
        let item = |kind: &'static str, uri: &str| Item {
            source: Some(Location::new(uri)),
            meta: Some(Box::new(Meta {
                r#type: Some(kind.into()),
                ..Meta::default()
            })),
            data: Some(Data::Text("[]".into())),
            ..Item::default()
        };
        let alert = Alert {
            cmd_id: 1,
            code: 1226,
            correlator: None,
            items: vec![
                item(alert_type::FANOUT_RESULTS, "./GwMO/Fanout/7"),
                item(alert_type::LOCATION_UPDATE, "./GwMO/Fanout/8"),
                item(alert_type::FANOUT_RESULTS, "./Elsewhere/9"),
            ],
        };
        assert_eq!(
            results(&alert).collect::<Vec<_>>(),
            vec![(7, "[]".to_owned())]
        );
    }
}
