//! JSON Schemas of what travels on the wire — command bodies and event
//! payloads — for the OpenAPI document.
//!
//! `#[command]` and `#[derive(Event)]` write these from the type's fields,
//! doc comments and serde attributes (through utoipa), then add what garde
//! checks with [`WireSchema::constrain`], so the published schema says what
//! the server really accepts.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

/// A JSON Schema and the named schemas it refers to as
/// `#/components/schemas/{name}`.
#[derive(Debug, Clone, PartialEq)]
pub struct WireSchema {
    schema: Value,
    components: BTreeMap<String, Value>,
}

/// A rule garde checks, as JSON Schema can say it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Constraint {
    /// `length(mode, min, max)`: characters become `minLength`/`maxLength`,
    /// a collection's size `minItems`/`maxItems`; other string modes are
    /// stated in the description, which is all JSON Schema can do.
    Length {
        /// How garde counts.
        mode: LengthMode,
        /// The least length.
        min: Option<u64>,
        /// The greatest length.
        max: Option<u64>,
    },
    /// `range(min, max)`: `minimum`/`maximum`.
    Range {
        /// The least value.
        min: Option<Value>,
        /// The greatest value.
        max: Option<Value>,
    },
    /// `email`: `format: email`.
    Email,
    /// `url`: `format: uri`.
    Url,
    /// `ipv4`: `format: ipv4`.
    Ipv4,
    /// `ipv6`: `format: ipv6`.
    Ipv6,
    /// `pattern("...")`: `pattern`.
    Pattern(&'static str),
    /// `required`: the field must be present and not null.
    Required,
}

/// What garde's `length` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LengthMode {
    /// `simple`: bytes of a string, items of a collection.
    Simple,
    /// `bytes`: UTF-8 bytes.
    Bytes,
    /// `chars`: Unicode scalar values, as JSON Schema counts.
    Chars,
    /// `graphemes`: extended grapheme clusters.
    Graphemes,
    /// `utf16`: UTF-16 code units.
    Utf16,
}

impl WireSchema {
    /// A schema that refers to nothing else.
    pub fn new(schema: Value) -> Self {
        Self {
            schema,
            components: BTreeMap::new(),
        }
    }

    /// The schema of `T` written inline, with every schema it refers to.
    pub fn of<T: ToSchema>() -> Self {
        let mut referenced = Vec::new();
        T::schemas(&mut referenced);
        let components = referenced
            .into_iter()
            .map(|(name, schema)| (name, to_value(&schema)))
            .collect();
        Self {
            schema: to_value(&T::schema()),
            components,
        }
    }

    /// Adds what garde checks on the property `field` (its wire name).
    pub fn constrain(mut self, field: &str, constraints: &[Constraint]) -> Self {
        if constraints.contains(&Constraint::Required) {
            let required = self
                .schema
                .as_object_mut()
                .map(|object| object.entry("required").or_insert_with(|| json!([])));
            if let Some(Value::Array(required)) = required
                && !required.iter().any(|name| name == field)
            {
                required.push(json!(field));
            }
        }
        if let Some(Value::Object(property)) = self
            .schema
            .get_mut("properties")
            .and_then(|properties| properties.get_mut(field))
        {
            for constraint in constraints {
                constraint.apply(property);
            }
        }
        self
    }

    /// The schema.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// The named schemas it refers to.
    pub fn components(&self) -> &BTreeMap<String, Value> {
        &self.components
    }

    /// The schema as utoipa's model, with the named schemas it refers to,
    /// so a type described by a `WireSchema` can implement utoipa's
    /// `ToSchema` and sit inside other utoipa-derived types.
    #[allow(clippy::type_complexity)]
    pub fn to_utoipa(&self) -> (RefOr<Schema>, Vec<(String, RefOr<Schema>)>) {
        let convert = |value: &Value| {
            serde_json::from_value(value.clone()).expect("a JSON Schema utoipa wrote reads back")
        };
        let components = self
            .components
            .iter()
            .map(|(name, schema)| (name.clone(), convert(schema)))
            .collect();
        (convert(&self.schema), components)
    }

    /// Both parts, to move into a document.
    pub fn into_parts(self) -> (Value, BTreeMap<String, Value>) {
        (self.schema, self.components)
    }
}

fn to_value<T: serde::Serialize>(schema: &T) -> Value {
    serde_json::to_value(schema).expect("a utoipa schema always serializes")
}

impl Constraint {
    fn apply(&self, property: &mut Map<String, Value>) {
        let is_array = is_of_type(property, "array");
        match self {
            Self::Length { mode, min, max } => match mode {
                LengthMode::Simple if is_array => {
                    set(property, "minItems", *min);
                    set(property, "maxItems", *max);
                }
                LengthMode::Chars => {
                    set(property, "minLength", *min);
                    set(property, "maxLength", *max);
                }
                mode => {
                    let bounds = match (min, max) {
                        (Some(min), Some(max)) => format!("{min} to {max}"),
                        (Some(min), None) => format!("at least {min}"),
                        (None, Some(max)) => format!("at most {max}"),
                        (None, None) => return,
                    };
                    let note = format!("Length: {bounds} {}.", mode.unit());
                    let description = match property.get("description").and_then(Value::as_str) {
                        Some(description) => format!("{description}\n\n{note}"),
                        None => note,
                    };
                    property.insert("description".into(), json!(description));
                }
            },
            Self::Range { min, max } => {
                set(property, "minimum", min.clone());
                set(property, "maximum", max.clone());
            }
            Self::Email => set(property, "format", Some("email")),
            Self::Url => set(property, "format", Some("uri")),
            Self::Ipv4 => set(property, "format", Some("ipv4")),
            Self::Ipv6 => set(property, "format", Some("ipv6")),
            Self::Pattern(pattern) => set(property, "pattern", Some(*pattern)),
            Self::Required => {}
        }
    }
}

impl LengthMode {
    fn unit(self) -> &'static str {
        match self {
            Self::Simple | Self::Bytes => "UTF-8 bytes",
            Self::Chars => "characters",
            Self::Graphemes => "grapheme clusters",
            Self::Utf16 => "UTF-16 code units",
        }
    }
}

/// Whether the property is of `type` (alone or with `null`).
fn is_of_type(property: &Map<String, Value>, ty: &str) -> bool {
    match property.get("type") {
        Some(Value::String(t)) => t == ty,
        Some(Value::Array(types)) => types.iter().any(|t| t == ty),
        _ => false,
    }
}

fn set(property: &mut Map<String, Value>, key: &str, value: Option<impl Into<Value>>) {
    if let Some(value) = value {
        property.insert(key.into(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Constraint, LengthMode, WireSchema};

    fn object() -> WireSchema {
        WireSchema::new(json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "tags": {"type": ["array", "null"], "items": {"type": "string"}},
                "amount": {"type": "integer", "format": "int64", "minimum": 0},
                "memo": {"type": ["string", "null"], "description": "A note."}
            },
            "required": ["name", "amount"]
        }))
    }

    #[test]
    fn garde_rules_become_json_schema_keywords() {
        let schema = object()
            .constrain(
                "name",
                &[
                    Constraint::Length {
                        mode: LengthMode::Chars,
                        min: Some(1),
                        max: Some(100),
                    },
                    Constraint::Email,
                    Constraint::Pattern("^[a-z]+$"),
                ],
            )
            .constrain(
                "tags",
                &[Constraint::Length {
                    mode: LengthMode::Simple,
                    min: None,
                    max: Some(3),
                }],
            )
            .constrain(
                "amount",
                &[Constraint::Range {
                    min: Some(json!(1)),
                    max: Some(json!(1_000_000_000u64)),
                }],
            )
            .constrain(
                "memo",
                &[
                    Constraint::Length {
                        mode: LengthMode::Bytes,
                        min: None,
                        max: Some(64),
                    },
                    Constraint::Required,
                ],
            );
        let properties = &schema.schema()["properties"];
        assert_eq!(
            properties["name"],
            json!({"type": "string", "minLength": 1, "maxLength": 100,
                   "format": "email", "pattern": "^[a-z]+$"})
        );
        assert_eq!(properties["tags"]["maxItems"], 3);
        assert_eq!(properties["amount"]["minimum"], 1);
        assert_eq!(properties["amount"]["maximum"], 1_000_000_000u64);
        assert_eq!(
            properties["memo"]["description"],
            "A note.\n\nLength: at most 64 UTF-8 bytes."
        );
        assert_eq!(
            schema.schema()["required"],
            json!(["name", "amount", "memo"])
        );
    }

    #[test]
    fn unknown_properties_are_left_alone() {
        let schema = object().constrain("nope", &[Constraint::Email]);
        assert_eq!(schema, object());
    }
}
