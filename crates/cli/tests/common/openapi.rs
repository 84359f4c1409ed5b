//! Checks admin API responses against the OpenAPI description the server publishes
//! (`crates/server/api/openapi.json`): every call the tests make through [`super::api`]
//! must get a status the description lists for that operation, with a body its schema
//! allows. The checker reads the OpenAPI 3.0 schema keywords the description uses:
//! `$ref`, `allOf`, `oneOf`, `nullable`, `type`, `enum`, `required`, `properties`,
//! `additionalProperties`, `items`, `minItems`, `maxItems`, `minLength`, `maxLength`,
//! `minimum`, `maximum`; a `text/csv` answer is taken as documented where the operation
//! lists that type. Any other keyword in the description fails the check, so that none is
//! silently skipped (`pattern`, `format`, `default` and `description` constrain
//! nothing a response could break here: patterns are on request bodies only).

use serde_json::Value;
use std::sync::OnceLock;

/// The description the server serves.
pub fn description() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        serde_json::from_str(include_str!("../../../server/api/openapi.json"))
            .expect("the OpenAPI description is JSON")
    })
}

/// Panics unless `status` and `body` are a documented answer to `method path`.
pub fn assert_documented(method: &str, path: &str, status: u16, body: &Value) {
    if let Err(why) = check(description(), method, path, status, body) {
        panic!(
            "{method} {path} answered {status} {body}, which the OpenAPI description does not allow: {why}"
        );
    }
}

/// Whether `status` and `body` are a documented answer to `method path` in `spec`.
pub fn check(
    spec: &Value,
    method: &str,
    path: &str,
    status: u16,
    body: &Value,
) -> Result<(), String> {
    let path = path.split('?').next().unwrap_or(path);
    let (template, operation) = operation(spec, &method.to_lowercase(), path)
        .ok_or_else(|| format!("no operation {method} matches {path}"))?;
    let response = operation["responses"]
        .get(status.to_string())
        .ok_or_else(|| format!("{status} is not a documented answer of {method} {template}"))?;
    let response = resolve(spec, response)?;
    if body.is_string() && response["content"].get("text/csv").is_some() {
        return Ok(());
    }
    match response["content"]["application/json"].get("schema") {
        Some(schema) => validate(spec, schema, body, "body"),
        None if body.is_null() || body.as_str() == Some("") => Ok(()),
        None => Err(format!("{status} is documented without a body")),
    }
}

/// The operation whose path template matches `path`: a `{name}` segment matches any
/// one segment; among several matches, the one with the most literal segments wins.
fn operation<'a>(spec: &'a Value, method: &str, path: &str) -> Option<(&'a str, &'a Value)> {
    let segments: Vec<&str> = path.split('/').collect();
    spec["paths"]
        .as_object()?
        .iter()
        .filter_map(|(template, operations)| {
            let parts: Vec<&str> = template.split('/').collect();
            let matches = parts.len() == segments.len()
                && parts.iter().zip(&segments).all(|(part, segment)| {
                    part == segment || (part.starts_with('{') && !segment.is_empty())
                });
            let literal = parts.iter().filter(|p| !p.starts_with('{')).count();
            matches.then(|| Some((literal, template.as_str(), operations.get(method)?)))?
        })
        .max_by_key(|(literal, _, _)| *literal)
        .map(|(_, template, operation)| (template, operation))
}

fn resolve<'a>(spec: &'a Value, node: &'a Value) -> Result<&'a Value, String> {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .ok_or_else(|| format!("external reference {reference}"))?;
            let target = spec
                .pointer(pointer)
                .ok_or_else(|| format!("dangling reference {reference}"))?;
            resolve(spec, target)
        }
        None => Ok(node),
    }
}

const KNOWN: &[&str] = &[
    "$ref",
    "allOf",
    "oneOf",
    "nullable",
    "type",
    "enum",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "minItems",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "pattern",
    "format",
    "default",
    "description",
];

/// Whether `value` (at `at`, for the message) is one `schema` allows.
pub fn validate(spec: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let keywords = schema
        .as_object()
        .ok_or_else(|| format!("{at}: the schema is not an object"))?;
    if let Some(unknown) = keywords.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!(
            "{at}: the checker does not read the keyword {unknown:?}"
        ));
    }
    if value.is_null() {
        return match schema["nullable"].as_bool() == Some(true) {
            true => Ok(()),
            false => match keywords.get("$ref") {
                Some(_) => validate(spec, resolve(spec, schema)?, value, at),
                None => Err(format!("{at} is null, which the schema does not allow")),
            },
        };
    }
    if keywords.contains_key("$ref") {
        return validate(spec, resolve(spec, schema)?, value, at);
    }
    if let Some(all) = schema["allOf"].as_array() {
        for part in all {
            validate(spec, part, value, at)?;
        }
    }
    if let Some(any_one) = schema["oneOf"].as_array() {
        let fits: Vec<Result<(), String>> = any_one
            .iter()
            .map(|s| validate(spec, s, value, at))
            .collect();
        match fits.iter().filter(|f| f.is_ok()).count() {
            1 => {}
            0 => {
                let why: Vec<String> = fits.into_iter().filter_map(Result::err).collect();
                return Err(format!("{at} fits none of oneOf: {}", why.join("; ")));
            }
            n => return Err(format!("{at} fits {n} of oneOf, not one")),
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        return Err(format!("{at} = {value} is not one of {allowed:?}"));
    }
    match schema["type"].as_str() {
        None => Ok(()),
        Some("string") => string(schema, value, at),
        Some("integer") => number(schema, value.as_i64().map(|n| n as f64), value, at),
        Some("number") => number(schema, value.as_f64(), value, at),
        Some("boolean") => value
            .is_boolean()
            .then_some(())
            .ok_or_else(|| format!("{at} = {value} is not a boolean")),
        Some("array") => array(spec, schema, value, at),
        Some("object") => object(spec, schema, value, at),
        Some(other) => Err(format!("{at}: unknown type {other:?}")),
    }
}

fn string(schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let text = value
        .as_str()
        .ok_or_else(|| format!("{at} = {value} is not a string"))?;
    let length = text.chars().count() as u64;
    if schema["minLength"].as_u64().is_some_and(|min| length < min)
        || schema["maxLength"].as_u64().is_some_and(|max| length > max)
    {
        return Err(format!("{at}: {length} characters is out of bounds"));
    }
    Ok(())
}

fn number(schema: &Value, number: Option<f64>, value: &Value, at: &str) -> Result<(), String> {
    let number = number.ok_or_else(|| format!("{at} = {value} is not a {}", schema["type"]))?;
    if schema["minimum"].as_f64().is_some_and(|min| number < min)
        || schema["maximum"].as_f64().is_some_and(|max| number > max)
    {
        return Err(format!("{at} = {number} is out of bounds"));
    }
    Ok(())
}

fn array(spec: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("{at} = {value} is not an array"))?;
    let count = items.len() as u64;
    if schema["minItems"].as_u64().is_some_and(|min| count < min)
        || schema["maxItems"].as_u64().is_some_and(|max| count > max)
    {
        return Err(format!("{at}: {count} items is out of bounds"));
    }
    match schema.get("items") {
        Some(item_schema) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| validate(spec, item_schema, item, &format!("{at}[{i}]"))),
        None => Ok(()),
    }
}

fn object(spec: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let fields = value
        .as_object()
        .ok_or_else(|| format!("{at} = {value} is not an object"))?;
    for required in schema["required"].as_array().into_iter().flatten() {
        let name = required.as_str().unwrap_or_default();
        if !fields.contains_key(name) {
            return Err(format!("{at} lacks the required field {name:?}"));
        }
    }
    let properties = schema["properties"].as_object();
    for (name, field) in fields {
        let at = format!("{at}.{name}");
        match (
            properties.and_then(|p| p.get(name)),
            &schema["additionalProperties"],
        ) {
            (Some(field_schema), _) => validate(spec, field_schema, field, &at)?,
            (None, Value::Bool(false)) => return Err(format!("{at} is not a documented field")),
            (None, Value::Object(_)) => {
                validate(spec, &schema["additionalProperties"], field, &at)?
            }
            (None, _) => {}
        }
    }
    Ok(())
}
