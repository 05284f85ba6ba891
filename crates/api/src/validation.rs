//! fal's validation error shape: `422 {"detail": [{"loc", "msg", "type", ...}]}`.
//!
//! The entries follow the FastAPI/Pydantic v2 conventions fal's endpoints use (`missing`,
//! `int_type`, `greater_than_equal`, `enum`, ...), so clients see the same messages they
//! would get from fal.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One entry of the `detail` array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationError {
    /// Where the error is, e.g. `["body", "num_frames"]`.
    pub loc: Vec<String>,
    /// Human message, e.g. `Input should be greater than or equal to 17`.
    pub msg: String,
    /// Machine code, e.g. `greater_than_equal`.
    #[serde(rename = "type")]
    pub error_type: String,
    /// The offending input value, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// Structured context (limits, expected values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctx: Option<Value>,
}

impl ValidationError {
    /// An error on a body field (`loc = ["body", field]`).
    pub fn field(field: &str, error_type: &str, msg: impl Into<String>) -> Self {
        Self {
            loc: vec!["body".to_owned(), field.to_owned()],
            msg: msg.into(),
            error_type: error_type.to_owned(),
            input: None,
            ctx: None,
        }
    }

    /// An error on the body as a whole (`loc = ["body"]`).
    pub fn body(error_type: &str, msg: impl Into<String>) -> Self {
        Self {
            loc: vec!["body".to_owned()],
            msg: msg.into(),
            error_type: error_type.to_owned(),
            input: None,
            ctx: None,
        }
    }

    /// Attaches the offending input value, shortened by [`bounded_echo`] so that a huge
    /// input is never sent back whole.
    pub fn with_input(mut self, input: Value) -> Self {
        self.input = Some(bounded_echo(&input));
        self
    }

    /// Attaches a context object.
    pub fn with_ctx(mut self, ctx: Value) -> Self {
        self.ctx = Some(ctx);
        self
    }

    /// `missing`: a required field is absent.
    pub fn missing(field: &str) -> Self {
        Self::field(field, "missing", "Field required")
    }

    /// `greater_than_equal` for a numeric lower bound.
    pub fn too_small(field: &str, min: Value, input: Value) -> Self {
        Self::field(
            field,
            "greater_than_equal",
            format!("Input should be greater than or equal to {}", show(&min)),
        )
        .with_input(input)
        .with_ctx(json!({ "ge": min }))
    }

    /// `less_than_equal` for a numeric upper bound.
    pub fn too_large(field: &str, max: Value, input: Value) -> Self {
        Self::field(
            field,
            "less_than_equal",
            format!("Input should be less than or equal to {}", show(&max)),
        )
        .with_input(input)
        .with_ctx(json!({ "le": max }))
    }

    /// `enum`: the value is not one of `options`.
    pub fn not_in_enum(field: &str, options: &[&str], input: Value) -> Self {
        let expected = expected_list(options);
        Self::field(field, "enum", format!("Input should be {expected}"))
            .with_input(input)
            .with_ctx(json!({ "expected": expected }))
    }
}

/// Limits on the `input` a 422 entry echoes back.
pub mod echo_limits {
    /// Characters kept of an echoed string (the rest becomes `…`).
    pub const MAX_STRING_CHARS: usize = 256;
    /// Elements kept of an echoed array, or members of an echoed object.
    pub const MAX_ITEMS: usize = 10;
    /// Nesting levels kept; arrays and objects deeper are replaced by `"…"`.
    pub const MAX_DEPTH: usize = 2;
}

/// `value` shortened for echoing in a 422 body: strings cut to
/// [`echo_limits::MAX_STRING_CHARS`] characters plus `…`, arrays and objects to
/// [`echo_limits::MAX_ITEMS`] entries (an array gets a trailing `"…"`), nesting to
/// [`echo_limits::MAX_DEPTH`] levels. Short values are unchanged. Whatever the input, the
/// result holds at most about 200 strings of 257 characters (under 256 KiB).
pub fn bounded_echo(value: &Value) -> Value {
    echo_at(value, 0)
}

fn echo_at(value: &Value, depth: usize) -> Value {
    use echo_limits::*;
    const MORE: &str = "…";
    match value {
        Value::String(s) => Value::String(short_string(s)),
        Value::Array(_) | Value::Object(_) if depth >= MAX_DEPTH => Value::String(MORE.into()),
        Value::Array(items) => {
            let mut out: Vec<Value> = items
                .iter()
                .take(MAX_ITEMS)
                .map(|v| echo_at(v, depth + 1))
                .collect();
            if items.len() > MAX_ITEMS {
                out.push(Value::String(MORE.into()));
            }
            Value::Array(out)
        }
        Value::Object(members) => Value::Object(
            members
                .iter()
                .take(MAX_ITEMS)
                .map(|(k, v)| (short_string(k), echo_at(v, depth + 1)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `s` cut to [`echo_limits::MAX_STRING_CHARS`] characters plus `…` when longer.
fn short_string(s: &str) -> String {
    match s.char_indices().nth(echo_limits::MAX_STRING_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// Pydantic's `'a', 'b' or 'c'` list.
fn expected_list(options: &[&str]) -> String {
    let quoted: Vec<String> = options.iter().map(|o| format!("'{o}'")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Renders a limit as Pydantic does in messages (integers without a fraction).
fn show(value: &Value) -> String {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// A non-empty list of validation errors: the 422 answer.
#[derive(Debug, Clone, PartialEq, Default, thiserror::Error)]
#[error("{}", summary(.0))]
pub struct ValidationErrors(pub Vec<ValidationError>);

fn summary(errors: &[ValidationError]) -> String {
    let parts: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.loc.join("."), e.msg))
        .collect();
    format!("invalid input: {}", parts.join("; "))
}

impl ValidationErrors {
    /// An empty list.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// Adds one error.
    pub fn push(&mut self, error: ValidationError) {
        self.0.push(error);
    }

    /// Whether there are no errors.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The errors.
    pub fn errors(&self) -> &[ValidationError] {
        &self.0
    }

    /// `Ok(())` when empty, else `Err(self)`.
    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }

    /// The `detail` array as JSON.
    pub fn detail(&self) -> Value {
        serde_json::to_value(&self.0).unwrap_or(Value::Array(Vec::new()))
    }

    /// The full 422 body: `{"detail": [...]}`.
    pub fn to_body(&self) -> Value {
        json!({ "detail": self.detail() })
    }
}

impl From<ValidationError> for ValidationErrors {
    fn from(error: ValidationError) -> Self {
        Self(vec![error])
    }
}

impl Serialize for ValidationErrors {
    /// Serializes as fal's 422 body, `{"detail": [...]}`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("ValidationErrors", 1)?;
        s.serialize_field("detail", &self.0)?;
        s.end()
    }
}

impl<'de> Deserialize<'de> for ValidationErrors {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Body {
            detail: Vec<ValidationError>,
        }
        Body::deserialize(deserializer).map(|b| Self(b.detail))
    }
}

impl From<&longcat_media::input::ValidationDetail> for ValidationError {
    fn from(d: &longcat_media::input::ValidationDetail) -> Self {
        Self {
            loc: d.loc.clone(),
            msg: d.msg.clone(),
            error_type: d.error_type.clone(),
            input: None,
            ctx: d.ctx.clone(),
        }
    }
}

impl From<&longcat_media::ImageInputError> for ValidationErrors {
    /// An image input failure as a 422 on `image_url`.
    fn from(e: &longcat_media::ImageInputError) -> Self {
        Self(vec![ValidationError::from(&e.to_detail())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape_is_fal_422() {
        let errors = ValidationErrors::from(ValidationError::too_small(
            "num_frames",
            json!(17),
            json!(3),
        ));
        let body = serde_json::to_value(&errors).unwrap();
        assert_eq!(
            body,
            json!({"detail": [{
                "loc": ["body", "num_frames"],
                "msg": "Input should be greater than or equal to 17",
                "type": "greater_than_equal",
                "input": 3,
                "ctx": {"ge": 17}
            }]})
        );
        assert_eq!(errors.to_body(), body);
        let back: ValidationErrors = serde_json::from_value(body).unwrap();
        assert_eq!(back, errors);
    }

    #[test]
    fn float_limits_render_like_pydantic() {
        let e = ValidationError::too_large("guidance_scale", json!(10.0), json!(11.5));
        assert_eq!(e.msg, "Input should be less than or equal to 10");
        let e = ValidationError::too_small("x", json!(0.5), json!(0.1));
        assert_eq!(e.msg, "Input should be greater than or equal to 0.5");
    }

    #[test]
    fn enum_message_lists_options() {
        let e = ValidationError::not_in_enum("video_quality", &["low", "high"], json!("x"));
        assert_eq!(e.msg, "Input should be 'low' or 'high'");
        let e = ValidationError::not_in_enum("a", &["x", "y", "z"], json!(1));
        assert_eq!(e.msg, "Input should be 'x', 'y' or 'z'");
        assert_eq!(e.ctx, Some(json!({"expected": "'x', 'y' or 'z'"})));
    }

    #[test]
    fn into_result_and_display() {
        assert!(ValidationErrors::new().into_result().is_ok());
        let err = ValidationErrors::from(ValidationError::missing("image_url"));
        assert_eq!(
            err.to_string(),
            "invalid input: body.image_url: Field required"
        );
        assert!(err.into_result().is_err());
    }
}
