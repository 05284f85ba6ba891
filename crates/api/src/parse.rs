//! Request body → [`AppInput`] of one app, with Pydantic's lax coercions and 422 errors
//! naming the field.
//!
//! fal's endpoints are Pydantic models: `"40"` is a valid integer, `40.0` too, `"true"` a
//! valid boolean, unknown fields are ignored, and every problem is reported at once. This
//! module does the same by walking the JSON object field by field.

use longcat_core::{App, WireEnum};
use serde_json::{Map, Value};

use crate::input::{has_field, AppInput, I2vInput, FIELD_ORDER};
use crate::validation::{ValidationError, ValidationErrors};

/// Parses and validates a raw JSON request body of `fal-ai/longcat-video/image-to-video/720p`.
pub fn parse_input(body: &[u8]) -> Result<I2vInput, ValidationErrors> {
    parse_input_for(App::DEFAULT, body)
}

/// Parses and validates a raw JSON request body of `app`.
pub fn parse_input_for(app: App, body: &[u8]) -> Result<AppInput, ValidationErrors> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ValidationError::body("missing", "Field required").into());
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ValidationErrors::from(
            ValidationError::body("json_invalid", "JSON decode error")
                .with_ctx(serde_json::json!({ "error": e.to_string() })),
        )
    })?;
    parse_value_for(app, &value)
}

/// Parses and validates an already decoded JSON body of
/// `fal-ai/longcat-video/image-to-video/720p`.
pub fn parse_value(value: &Value) -> Result<I2vInput, ValidationErrors> {
    parse_value_for(App::DEFAULT, value)
}

/// Parses and validates an already decoded JSON body of `app`: only the app's fields are
/// read (others are ignored, as Pydantic ignores unknown fields), the rest keep the app's
/// defaults.
pub fn parse_value_for(app: App, value: &Value) -> Result<AppInput, ValidationErrors> {
    let Value::Object(obj) = value else {
        return Err(ValidationError::body(
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
        )
        .with_input(value.clone())
        .into());
    };
    let mut errors = ValidationErrors::new();
    let mut input = AppInput::defaults(app);
    let mut fields = Fields {
        app,
        obj,
        errors: &mut errors,
    };
    for required in crate::input::required_fields(app) {
        if !obj.contains_key(*required) {
            fields.errors.push(ValidationError::missing(required));
        }
    }
    fields.string("image_url", &mut input.image_url);
    fields.string("prompt", &mut input.prompt);
    fields.string("negative_prompt", &mut input.negative_prompt);
    fields.choice("aspect_ratio", &mut input.aspect_ratio);
    fields.uint("num_frames", &mut input.num_frames);
    fields.uint("num_inference_steps", &mut input.num_inference_steps);
    fields.uint(
        "num_refine_inference_steps",
        &mut input.num_refine_inference_steps,
    );
    fields.float("guidance_scale", &mut input.guidance_scale);
    fields.uint("fps", &mut input.fps);
    fields.seed(&mut input.seed);
    fields.boolean(
        "enable_prompt_expansion",
        &mut input.enable_prompt_expansion,
    );
    fields.boolean("enable_safety_checker", &mut input.enable_safety_checker);
    fields.choice("video_output_type", &mut input.video_output_type);
    fields.choice("video_quality", &mut input.video_quality);
    fields.choice("video_write_mode", &mut input.video_write_mode);
    fields.boolean("sync_mode", &mut input.sync_mode);
    fields.choice("acceleration", &mut input.acceleration);

    // Range checks only for fields that had the right type (Pydantic does the same).
    let typed_fields: Vec<String> = errors
        .errors()
        .iter()
        .filter_map(|e| e.loc.get(1).cloned())
        .collect();
    if let Err(range) = input.validate() {
        for e in range.0 {
            let field = e.loc.get(1).cloned().unwrap_or_default();
            if !typed_fields.contains(&field) {
                errors.push(e);
            }
        }
    }
    // Keep the schema order of the fields in the report.
    errors
        .0
        .sort_by_key(|e| field_rank(e.loc.get(1).map(String::as_str)));
    errors.into_result().map(|()| input)
}

fn field_rank(field: Option<&str>) -> usize {
    field
        .and_then(|f| FIELD_ORDER.iter().position(|x| *x == f))
        .unwrap_or(usize::MAX)
}

/// The object being read (only the app's fields of it) and the errors found so far.
struct Fields<'a> {
    app: App,
    obj: &'a Map<String, Value>,
    errors: &'a mut ValidationErrors,
}

impl<'a> Fields<'a> {
    /// The value of `field` when the app has that field and the body sets it.
    fn get(&self, field: &str) -> Option<&'a Value> {
        if has_field(self.app, field) {
            self.obj.get(field)
        } else {
            None
        }
    }

    fn type_error(&mut self, field: &str, error_type: &str, msg: &str, input: &Value) {
        self.errors
            .push(ValidationError::field(field, error_type, msg).with_input(input.clone()));
    }

    fn string_value(&mut self, field: &str, v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            other => {
                self.type_error(
                    field,
                    "string_type",
                    "Input should be a valid string",
                    other,
                );
                None
            }
        }
    }

    fn string(&mut self, field: &str, out: &mut String) {
        if let Some(v) = self.get(field) {
            if let Some(s) = self.string_value(field, v) {
                *out = s;
            }
        }
    }

    /// Pydantic lax integer: ints, integral floats, numeric strings, booleans.
    fn integer(&mut self, field: &str, v: &Value) -> Option<i128> {
        match v {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Some(i as i128)
                } else if let Some(u) = n.as_u64() {
                    Some(u as i128)
                } else {
                    let f = n.as_f64().unwrap_or(f64::NAN);
                    if f.is_finite() && f.fract() == 0.0 {
                        Some(f as i128)
                    } else {
                        self.type_error(
                            field,
                            "int_from_float",
                            "Input should be a valid integer, got a number with a fractional part",
                            v,
                        );
                        None
                    }
                }
            }
            Value::Bool(b) => Some(i128::from(*b)),
            Value::String(s) => match s.trim().parse::<i128>() {
                Ok(i) => Some(i),
                Err(_) => {
                    self.type_error(
                        field,
                        "int_parsing",
                        "Input should be a valid integer, unable to parse string as an integer",
                        v,
                    );
                    None
                }
            },
            other => {
                self.type_error(field, "int_type", "Input should be a valid integer", other);
                None
            }
        }
    }

    /// An integer field stored as `u32`; out-of-range values become range errors.
    fn uint(&mut self, field: &str, out: &mut u32) {
        let Some(v) = self.get(field) else { return };
        let Some(i) = self.integer(field, v) else {
            return;
        };
        // Out-of-u32 values are clamped so `validate` reports the range error on them.
        *out = i.clamp(0, i128::from(u32::MAX)) as u32;
        if i < 0 || i > i128::from(u32::MAX) {
            // Report with the real input value rather than the clamped one.
            let bound = if i < 0 { "lower" } else { "upper" };
            self.range_override(field, v, bound);
        }
    }

    /// Records a range error for values that do not fit the storage type.
    fn range_override(&mut self, field: &str, v: &Value, bound: &str) {
        let l = crate::input::limits::for_app(self.app);
        let (lo, hi) = match field {
            "num_frames" => crate::input::limits::NUM_FRAMES,
            "num_inference_steps" => l.num_inference_steps,
            "num_refine_inference_steps" => l.num_refine_inference_steps,
            _ => crate::input::limits::FPS,
        };
        let e = if bound == "lower" {
            ValidationError::too_small(field, lo.into(), v.clone())
        } else {
            ValidationError::too_large(field, hi.into(), v.clone())
        };
        self.errors.push(e);
    }

    fn float(&mut self, field: &str, out: &mut f64) {
        let Some(v) = self.get(field) else { return };
        match v {
            Value::Number(n) => *out = n.as_f64().unwrap_or(f64::NAN),
            Value::Bool(b) => *out = f64::from(u8::from(*b)),
            Value::String(s) => match s.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => *out = f,
                _ => self.type_error(
                    field,
                    "float_parsing",
                    "Input should be a valid number, unable to parse string as a number",
                    v,
                ),
            },
            other => self.type_error(field, "float_type", "Input should be a valid number", other),
        }
    }

    fn seed(&mut self, out: &mut Option<u64>) {
        let Some(v) = self.get("seed") else {
            return;
        };
        if v.is_null() {
            *out = None;
            return;
        }
        let Some(i) = self.integer("seed", v) else {
            return;
        };
        if i < 0 {
            self.errors.push(ValidationError::too_small(
                "seed",
                serde_json::json!(0),
                v.clone(),
            ));
        } else if i > i128::from(u64::MAX) {
            self.errors.push(ValidationError::too_large(
                "seed",
                serde_json::json!(u64::MAX),
                v.clone(),
            ));
        } else {
            *out = Some(i as u64);
        }
    }

    /// Pydantic lax boolean.
    fn boolean(&mut self, field: &str, out: &mut bool) {
        let Some(v) = self.get(field) else { return };
        let parsed = match v {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => match n.as_f64() {
                Some(0.0) => Some(false),
                Some(1.0) => Some(true),
                _ => {
                    self.type_error(
                        field,
                        "bool_parsing",
                        "Input should be a valid boolean, unable to interpret input",
                        v,
                    );
                    return;
                }
            },
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
                "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
                _ => {
                    self.type_error(
                        field,
                        "bool_parsing",
                        "Input should be a valid boolean, unable to interpret input",
                        v,
                    );
                    return;
                }
            },
            other => {
                self.type_error(field, "bool_type", "Input should be a valid boolean", other);
                return;
            }
        };
        if let Some(b) = parsed {
            *out = b;
        }
    }

    /// One of the enum's wire names (the table in `longcat-core`).
    fn choice<T: WireEnum>(&mut self, field: &str, out: &mut T) {
        let Some(v) = self.get(field) else { return };
        match v.as_str().and_then(|s| s.parse::<T>().ok()) {
            Some(value) => *out = value,
            None => self.errors.push(ValidationError::not_in_enum(
                field,
                T::WIRE_NAMES,
                v.clone(),
            )),
        }
    }
}

#[cfg(test)]
mod tests;
