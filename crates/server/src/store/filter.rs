//! Which devices a listing, a count or a bulk change is about: the operator's filter,
//! as one SQL condition that both backends run, each with its own spelling of
//! placeholders and of reading a JSON leaf.

/// What the operator filters devices by; every field set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    /// DevIds that start with this.
    pub dev_id_prefix: Option<String>,
    /// This DevId only (one device's record, as listings show it).
    pub dev_id: Option<String>,
    /// `./DevInfo/Man`, `./DevInfo/Mod` as last reported; `./DevDetail/FwV` as last
    /// read.
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    /// Associated with this gateway.
    pub gateway: Option<String>,
    /// Associated with a gateway by this origin (`server-assisted`, `local-bootstrap`).
    pub origin: Option<String>,
    /// Associated with a gateway this trusted (`full`, `restricted`, `validated`).
    pub trust: Option<String>,
    pub tag: Option<String>,
    /// Last session at or after this time (Unix seconds).
    pub seen_since: Option<i64>,
    /// No session at or after this time (or none ever).
    pub unseen_since: Option<i64>,
}

/// A value the condition binds (an SQL NULL is typed: PostgreSQL checks the type of
/// every parameter, null or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    Text(String),
    Int(i64),
    NullText,
    NullInt,
}

impl Bound {
    pub fn text_or_null(text: Option<String>) -> Bound {
        text.map_or(Bound::NullText, Bound::Text)
    }

    pub fn int_or_null(number: Option<i64>) -> Bound {
        number.map_or(Bound::NullInt, Bound::Int)
    }
}

/// How a backend spells what the condition needs.
pub struct Dialect {
    /// The placeholder of the n-th parameter (1-based).
    pub placeholder: fn(usize) -> String,
    /// Reading leaf `key` of the JSON object in column `column` as text.
    pub json_leaf: fn(&str, &str) -> String,
}

pub const SQLITE: Dialect = Dialect {
    placeholder: |n| format!("?{n}"),
    json_leaf: |column, key| format!("json_extract({column}, '$.\"{key}\"')"),
};

pub const POSTGRES: Dialect = Dialect {
    placeholder: |n| format!("${n}"),
    json_leaf: |column, key| format!("({column}::jsonb ->> '{key}')"),
};

impl DeviceFilter {
    /// The condition on `devices` rows (always true without any field set), and what
    /// it binds, its placeholders numbered from `first`.
    pub fn condition(&self, dialect: &Dialect, first: usize) -> (String, Vec<Bound>) {
        let mut terms = vec!["TRUE".to_owned()];
        let mut bound = Vec::new();
        let mut bind = |value: Bound| {
            bound.push(value);
            (dialect.placeholder)(first + bound.len() - 1)
        };
        let text = |value: &String| Bound::Text(value.clone());
        if let Some(prefix) = &self.dev_id_prefix {
            // A number this code counted: written in the text, typed the same by both.
            let length = prefix.chars().count();
            terms.push(format!(
                "substr(dev_id, 1, {length}) = {}",
                bind(text(prefix))
            ));
        }
        if let Some(dev_id) = &self.dev_id {
            terms.push(format!("dev_id = {}", bind(text(dev_id))));
        }
        // Keys are constants: only values are bound.
        for (value, column, key) in [
            (&self.manufacturer, "devinfo", "./DevInfo/Man"),
            (&self.model, "devinfo", "./DevInfo/Mod"),
            (&self.firmware, "devdetail", "./DevDetail/FwV"),
        ] {
            if let Some(value) = value {
                let leaf = (dialect.json_leaf)(column, key);
                terms.push(format!("{leaf} = {}", bind(text(value))));
            }
        }
        if let Some(gateway) = &self.gateway {
            terms.push(format!(
                "dev_id IN (SELECT dev_id FROM associations WHERE gateway_id = {})",
                bind(text(gateway))
            ));
        }
        if let Some(origin) = &self.origin {
            terms.push(format!(
                "dev_id IN (SELECT dev_id FROM associations WHERE origin = {})",
                bind(text(origin))
            ));
        }
        if let Some(trust) = &self.trust {
            terms.push(format!(
                "dev_id IN (SELECT dev_id FROM associations WHERE trust = {})",
                bind(text(trust))
            ));
        }
        if let Some(tag) = &self.tag {
            terms.push(format!(
                "dev_id IN (SELECT dev_id FROM device_tags WHERE tag = {})",
                bind(text(tag))
            ));
        }
        if let Some(since) = self.seen_since {
            terms.push(format!("last_session_at >= {}", bind(Bound::Int(since))));
        }
        if let Some(since) = self.unseen_since {
            terms.push(format!(
                "(last_session_at IS NULL OR last_session_at < {})",
                bind(Bound::Int(since))
            ));
        }
        (terms.join(" AND "), bound)
    }
}

/// A tag: 1 to 64 letters, digits, `.`, `_`, `-` or `:`.
pub fn valid_tag(tag: &str) -> bool {
    (1..=64).contains(&tag.len())
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_field_is_no_condition_and_each_field_binds_its_value_in_order() {
        assert_eq!(
            DeviceFilter::default().condition(&SQLITE, 1),
            ("TRUE".to_owned(), vec![])
        );
        let filter = DeviceFilter {
            dev_id_prefix: Some("IMEI:35".into()),
            firmware: Some("1.2".into()),
            tag: Some("pilot".into()),
            ..DeviceFilter::default()
        };
        let (sql, bound) = filter.condition(&POSTGRES, 3);
        assert_eq!(
            sql,
            "TRUE AND substr(dev_id, 1, 7) = $3 AND (devdetail::jsonb ->> './DevDetail/FwV') = $4 \
             AND dev_id IN (SELECT dev_id FROM device_tags WHERE tag = $5)"
        );
        assert_eq!(
            bound,
            vec![
                Bound::Text("IMEI:35".into()),
                Bound::Text("1.2".into()),
                Bound::Text("pilot".into())
            ]
        );
    }

    #[test]
    fn a_value_never_reaches_the_sql_text() {
        let hostile = "x' OR '1'='1";
        let filter = DeviceFilter {
            manufacturer: Some(hostile.into()),
            gateway: Some(hostile.into()),
            ..DeviceFilter::default()
        };
        let (sql, _) = filter.condition(&SQLITE, 1);
        assert!(!sql.contains(hostile), "{sql}");
    }

    #[test]
    fn tags_are_short_and_plain() {
        assert!(valid_tag("pilot-2026:wave.1_a"));
        for bad in ["", "a,b", "a b", "é", &"t".repeat(65)] {
            assert!(!valid_tag(bad), "{bad:?}");
        }
    }
}
