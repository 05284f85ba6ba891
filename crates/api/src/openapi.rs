//! The apps' OpenAPI documents in fal's per-endpoint queue format (OpenAPI 3.1.0: the
//! documents use 3.1 forms such as `type: "null"` in `anyOf` and `examples` arrays).
//!
//! [`openapi_document_for_app`] is one app's document (fal serves it at
//! `/api/openapi/queue/openapi.json?endpoint_id={app id}`); [`openapi_document_for`] lists
//! every app in one document (`/openapi.json`). Ranges, defaults and enum options come
//! from the same constants the validator uses.

use longcat_core::{
    Acceleration, App, AspectRatio, Resolution, Task, VideoOutputType, VideoQuality,
    VideoWriteMode, WireEnum,
};
use serde_json::{json, Map, Value};

use crate::input::{fields, limits, required_fields, DEFAULT_NEGATIVE_PROMPT, DEFAULT_PROMPT};

/// The OpenAPI version the documents declare.
pub const OPENAPI_VERSION: &str = "3.1.0";

/// Schema name prefix of the image-to-video/720p app.
pub const SCHEMA_PREFIX: &str = "LongcatVideoImageToVideo720p";

/// The PascalCase schema prefix of `app`, as fal's clients name its types, e.g.
/// `LongcatVideoDistilledTextToVideo480p`.
pub fn schema_prefix(app: App) -> String {
    format!(
        "LongcatVideo{}{}{}",
        if app.distilled { "Distilled" } else { "" },
        match app.task {
            Task::TextToVideo => "TextToVideo",
            Task::ImageToVideo => "ImageToVideo",
        },
        match app.resolution {
            Resolution::P480 => "480p",
            Resolution::P720 => "720p",
        }
    )
}

/// The all-apps document with `servers` pointing at `/queue` (relative to wherever it is
/// served).
pub fn openapi_document() -> Value {
    openapi_document_for("/queue")
}

/// The document listing every app, with `servers: [{"url": queue_base_url}]`. Its
/// `x-fal-metadata` names the image-to-video/720p app (the one this server has always
/// served) and `x-fal-apps` lists every app id.
pub fn openapi_document_for(queue_base_url: &str) -> Value {
    let mut doc = document(&App::ALL, queue_base_url);
    doc["info"]["title"] = json!("Queue OpenAPI for the LongCat-Video apps");
    doc["info"]["description"] =
        json!("Every LongCat-Video app of this server (self-hosted): text- and image-to-video, 480p and 720p, base and distilled.");
    doc["info"]["x-fal-apps"] = json!(App::ALL.map(App::id));
    doc["info"]["x-fal-metadata"]["endpointId"] = json!(App::DEFAULT.id());
    doc["info"]["x-fal-metadata"]["category"] = json!("image-to-video");
    doc
}

/// The document of one app, in fal's per-endpoint shape.
pub fn openapi_document_for_app(app: App, queue_base_url: &str) -> Value {
    document(&[app], queue_base_url)
}

fn description(app: App) -> String {
    let source = if app.takes_image() { "images" } else { "text" };
    let quality = match app.resolution {
        Resolution::P720 => "in 720p/30fps ",
        Resolution::P480 => "",
    };
    let distilled = if app.distilled { " Distilled" } else { "" };
    format!(
        "Generate long videos {quality}from {source} using LongCat Video{distilled} (self-hosted)."
    )
}

fn document(apps: &[App], queue_base_url: &str) -> Value {
    let first = apps[0];
    let request_id_param = json!({
        "name": "request_id", "in": "path", "required": true,
        "schema": {"type": "string", "description": "Request ID"}
    });
    let mut schemas = Map::new();
    schemas.insert("QueueStatus".into(), queue_status_schema());
    let mut paths = Map::new();
    for &app in apps {
        let id = app.id();
        let prefix = schema_prefix(app);
        let input = format!("{prefix}Input");
        let output = format!("{prefix}Output");
        let input_ref = format!("#/components/schemas/{input}");
        let output_ref = format!("#/components/schemas/{output}");
        schemas.insert(input.clone(), input_schema(app));
        schemas.insert(output.clone(), output_schema(&output));
        paths.insert(format!("/{id}/requests/{{request_id}}/status"), json!({
            "get": {
                "parameters": [request_id_param.clone(), {
                    "name": "logs", "in": "query", "required": false,
                    "schema": {"type": "number", "description": "Whether to include logs (`1`) in the response or not (`0`)."}
                }],
                "responses": {"200": {"description": "The request status.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/QueueStatus"}}}}}
            }
        }));
        paths.insert(format!("/{id}/requests/{{request_id}}/cancel"), json!({
            "put": {
                "parameters": [request_id_param.clone()],
                "responses": {"200": {"description": "The request was cancelled.",
                    "content": {"application/json": {"schema": {"type": "object",
                        "properties": {"success": {"type": "boolean", "description": "Whether the request was cancelled successfully."}}}}}}}
            }
        }));
        paths.insert(format!("/{id}"), json!({
            "post": {
                "requestBody": {"required": true,
                    "content": {"application/json": {"schema": {"$ref": input_ref}}}},
                "responses": {"200": {"description": "The request status.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/QueueStatus"}}}}}
            }
        }));
        paths.insert(
            format!("/{id}/requests/{{request_id}}"),
            json!({
                "get": {
                    "parameters": [request_id_param.clone()],
                    "responses": {"200": {"description": "Result of the request.",
                        "content": {"application/json": {"schema": {"$ref": output_ref}}}}}
                }
            }),
        );
    }
    schemas.insert("File".into(), file_schema());
    schemas.insert(
        "VideoOutputTypeEnum".into(),
        enum_schema::<VideoOutputType>(
            "VideoOutputTypeEnum",
            "The output type of the generated video.",
        ),
    );
    schemas.insert(
        "VideoQualityEnum".into(),
        enum_schema::<VideoQuality>("VideoQualityEnum", "The quality of the generated video."),
    );
    schemas.insert(
        "VideoWriteModeEnum".into(),
        enum_schema::<VideoWriteMode>(
            "VideoWriteModeEnum",
            "The write mode of the generated video.",
        ),
    );
    if apps.iter().any(|a| !a.distilled) {
        schemas.insert(
            "AccelerationEnum".into(),
            enum_schema::<Acceleration>(
                "AccelerationEnum",
                "The acceleration level to use for the video generation.",
            ),
        );
    }
    if apps.iter().any(|a| !a.takes_image()) {
        schemas.insert(
            "AspectRatioEnum".into(),
            enum_schema::<AspectRatio>(
                "AspectRatioEnum",
                "The aspect ratio of the generated video.",
            ),
        );
    }
    json!({
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": format!("Queue OpenAPI for {}", first.id()),
            "version": "1.0.0",
            "description": description(first),
            "x-fal-metadata": {
                "endpointId": first.id(),
                "category": if first.takes_image() { "image-to-video" } else { "text-to-video" },
                "thumbnailUrl": "",
                "playgroundUrl": "",
                "documentationUrl": ""
            }
        },
        "servers": [{"url": queue_base_url}],
        "security": [{"apiKeyAuth": []}],
        "components": {
            "securitySchemes": {
                "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "Authorization", "description": "Fal Key"}
            },
            "schemas": schemas
        },
        "paths": paths
    })
}

fn queue_status_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]},
            "request_id": {"type": "string", "description": "The request id."},
            "response_url": {"type": "string", "description": "The response url."},
            "status_url": {"type": "string", "description": "The status url."},
            "cancel_url": {"type": "string", "description": "The cancel url."},
            "logs": {"type": "object", "description": "The logs.", "additionalProperties": true},
            "metrics": {"type": "object", "description": "The metrics.", "additionalProperties": true},
            "queue_position": {"type": "integer", "description": "The queue position."}
        },
        "required": ["status", "request_id"]
    })
}

fn int_field(title: &str, description: &str, default: u32, (lo, hi): (u32, u32)) -> Value {
    json!({"title": title, "type": "integer", "description": description,
           "default": default, "minimum": lo, "maximum": hi})
}

/// Example prompt of the text-to-video apps (fal's example).
pub const T2V_PROMPT_EXAMPLE: &str = "realistic filming style, a person wearing a dark helmet, a deep-colored jacket, blue jeans, and bright yellow shoes rides a skateboard along a winding mountain road. The skateboarder starts in a standing position, then gradually lowers into a crouch, extending one hand to touch the road surface while maintaining a low center of gravity to navigate a sharp curve. After completing the turn, the skateboarder rises back to a standing position and continues gliding forward. The background features lush green hills flanking both sides of the road, with distant snow-capped mountain peaks rising against a clear, bright blue sky. The camera follows closely from behind, smoothly tracking the skateboarder's movements and capturing the dynamic scenery along the route. The scene is shot in natural daylight, highlighting the vivid outdoor environment and the skateboarder's fluid actions.";

fn input_schema(app: App) -> Value {
    let l = limits::for_app(app);
    let (g_lo, g_hi) = limits::GUIDANCE_SCALE;
    let steps_description = if app.distilled {
        "The number of inference steps to use."
    } else {
        "The number of inference steps to use for the video generation."
    };
    let prompt = if app.takes_image() {
        json!({"title": "Prompt", "type": "string",
            "description": "The prompt to guide the video generation.", "default": DEFAULT_PROMPT,
            "maxLength": limits::MAX_PROMPT_CHARS})
    } else {
        json!({"title": "Prompt", "type": "string",
            "description": "The prompt to guide the video generation.",
            "examples": [T2V_PROMPT_EXAMPLE], "maxLength": limits::MAX_PROMPT_CHARS})
    };
    let all = json!({
        "image_url": {"title": "Image URL", "type": "string",
            "description": "The URL of the image to generate a video from.",
            "examples": ["https://v3b.fal.media/files/b/zebra/trXRsbjJwy4Z3OEgbnB9a.jpg"]},
        "prompt": prompt,
        "negative_prompt": {"title": "Negative Prompt", "type": "string",
            "description": "The negative prompt to use for the video generation.",
            "default": DEFAULT_NEGATIVE_PROMPT, "maxLength": limits::MAX_PROMPT_CHARS},
        "aspect_ratio": {"title": "Aspect Ratio", "allOf": [{"$ref": "#/components/schemas/AspectRatioEnum"}],
            "description": "The aspect ratio of the generated video.",
            "default": AspectRatio::default().wire_name()},
        "num_frames": int_field("Number of Frames", "The number of frames to generate.",
            limits::DEFAULT_NUM_FRAMES, limits::NUM_FRAMES),
        "num_inference_steps": int_field("Number of Inference Steps", steps_description,
            l.default_num_inference_steps, l.num_inference_steps),
        "num_refine_inference_steps": int_field("Number of Refinement Inference Steps",
            "The number of inference steps to use for refinement.",
            l.default_num_refine_inference_steps, l.num_refine_inference_steps),
        "guidance_scale": {"title": "Guidance Scale", "type": "number",
            "description": "The guidance scale to use for the video generation.",
            "default": limits::DEFAULT_GUIDANCE_SCALE, "minimum": g_lo, "maximum": g_hi},
        "fps": int_field("Frames per Second", "The frame rate of the generated video.",
            l.default_fps, limits::FPS),
        "seed": {"title": "Seed", "anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}],
            "description": "The seed for the random number generator."},
        "enable_prompt_expansion": {"title": "Enable Prompt Expansion", "type": "boolean",
            "description": "Whether to enable prompt expansion.", "default": false},
        "enable_safety_checker": {"title": "Enable Safety Checker", "type": "boolean",
            "description": "Whether to enable safety checker.", "default": true},
        "video_output_type": {"title": "Video Output Type", "allOf": [{"$ref": "#/components/schemas/VideoOutputTypeEnum"}],
            "description": "The output type of the generated video.", "default": VideoOutputType::default().wire_name()},
        "video_quality": {"title": "Video Quality", "allOf": [{"$ref": "#/components/schemas/VideoQualityEnum"}],
            "description": "The quality of the generated video.", "default": VideoQuality::default().wire_name()},
        "video_write_mode": {"title": "Video Write Mode", "allOf": [{"$ref": "#/components/schemas/VideoWriteModeEnum"}],
            "description": "The write mode of the generated video.", "default": VideoWriteMode::default().wire_name()},
        "sync_mode": {"title": "Sync Mode", "type": "boolean", "default": false,
            "description": "If `True`, the media will be returned as a data URI and the output data won't be available in the request history."},
        "acceleration": {"title": "Acceleration", "allOf": [{"$ref": "#/components/schemas/AccelerationEnum"}],
            "description": "The acceleration level to use for the video generation.",
            "default": Acceleration::default().wire_name(),
            "examples": [Acceleration::default().wire_name()]}
    });
    let order = fields(app);
    let mut properties = Map::new();
    for name in &order {
        properties.insert((*name).to_owned(), all[*name].clone());
    }
    json!({
        "title": format!("{}Input", schema_prefix(app)),
        "type": "object",
        "x-fal-order-properties": order,
        "required": required_fields(app),
        "properties": properties
    })
}

/// The schema of an enum: its wire names from the one table in `longcat-core`.
fn enum_schema<T: WireEnum>(title: &str, description: &str) -> Value {
    json!({"title": title, "type": "string", "enum": T::WIRE_NAMES, "description": description})
}

fn output_schema(title: &str) -> Value {
    json!({
        "title": title,
        "type": "object",
        "x-fal-order-properties": ["video", "seed", "prompt"],
        "required": ["video", "seed", "prompt"],
        "properties": {
            "video": {"title": "Video", "allOf": [{"$ref": "#/components/schemas/File"}],
                "description": "The generated video file.",
                "examples": [{"content_type": "video/mp4", "url": "https://v3b.fal.media/files/b/panda/4-MoAje_CCMAGH8d-9kmA_nQEkcRc2.mp4"}]},
            "seed": {"title": "Seed", "type": "integer", "description": "The seed used for generation.", "examples": [916581]},
            "prompt": {"title": "Prompt", "type": "string", "description": "The prompt used for generation."}
        }
    })
}

fn file_schema() -> Value {
    json!({
        "title": "File",
        "type": "object",
        "x-fal-order-properties": ["url", "content_type", "file_name", "file_size"],
        "required": ["url"],
        "properties": {
            "url": {"title": "Url", "type": "string", "description": "The URL where the file can be downloaded from."},
            "content_type": {"title": "Content Type", "type": "string", "description": "The mime type of the file."},
            "file_name": {"title": "File Name", "type": "string", "description": "The name of the file."},
            "file_size": {"title": "File Size", "type": "integer", "description": "The size of the file in bytes."}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ENDPOINT_ID;

    #[test]
    fn document_has_fal_queue_shape() {
        let doc = openapi_document_for("http://127.0.0.1:8080/queue");
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"][0]["url"], "http://127.0.0.1:8080/queue");
        assert_eq!(doc["info"]["x-fal-metadata"]["endpointId"], ENDPOINT_ID);
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.contains_key("/fal-ai/longcat-video/image-to-video/720p"));
        assert!(paths.contains_key(
            "/fal-ai/longcat-video/image-to-video/720p/requests/{request_id}/status"
        ));
        assert!(paths.contains_key(
            "/fal-ai/longcat-video/image-to-video/720p/requests/{request_id}/cancel"
        ));
        assert!(
            paths.contains_key("/fal-ai/longcat-video/image-to-video/720p/requests/{request_id}")
        );
        let input = &doc["components"]["schemas"]["LongcatVideoImageToVideo720pInput"];
        assert_eq!(input["required"], json!(["image_url"]));
        assert_eq!(input["properties"]["num_frames"]["minimum"], 17);
        assert_eq!(input["properties"]["num_frames"]["maximum"], 961);
        assert_eq!(input["properties"]["num_frames"]["default"], 162);
        assert_eq!(input["properties"]["guidance_scale"]["maximum"], 10.0);
        for text in ["prompt", "negative_prompt"] {
            assert_eq!(
                input["properties"][text]["maxLength"],
                crate::input::limits::MAX_PROMPT_CHARS
            );
        }
        assert_eq!(
            doc["components"]["schemas"]["VideoOutputTypeEnum"]["enum"],
            json!([
                "X264 (.mp4)",
                "VP9 (.webm)",
                "PRORES4444 (.mov)",
                "GIF (.gif)"
            ])
        );
        // Every property is listed in the display order.
        let props = input["properties"].as_object().unwrap();
        let order = input["x-fal-order-properties"].as_array().unwrap();
        assert_eq!(props.len(), order.len());
        for name in order {
            assert!(props.contains_key(name.as_str().unwrap()));
        }
    }

    /// The enum schema `schema` and the default of input field `field` are `T`'s table.
    fn assert_table<T: WireEnum + Default>(doc: &Value, schema: &str, field: &str) {
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas[schema]["enum"], json!(T::WIRE_NAMES), "{schema}");
        let input = &schemas[format!("{SCHEMA_PREFIX}Input")];
        assert_eq!(
            input["properties"][field]["allOf"][0]["$ref"],
            format!("#/components/schemas/{schema}"),
            "{field}"
        );
        assert_eq!(
            input["properties"][field]["default"],
            T::default().wire_name(),
            "{field}"
        );
    }

    #[test]
    fn enum_arrays_and_defaults_are_the_wire_tables() {
        let doc = openapi_document();
        assert_table::<VideoOutputType>(&doc, "VideoOutputTypeEnum", "video_output_type");
        assert_table::<VideoQuality>(&doc, "VideoQualityEnum", "video_quality");
        assert_table::<VideoWriteMode>(&doc, "VideoWriteModeEnum", "video_write_mode");
        assert_table::<Acceleration>(&doc, "AccelerationEnum", "acceleration");
        // The parser accepts exactly the document's names.
        for (schema, field) in [
            ("VideoOutputTypeEnum", "video_output_type"),
            ("VideoQualityEnum", "video_quality"),
            ("VideoWriteModeEnum", "video_write_mode"),
            ("AccelerationEnum", "acceleration"),
        ] {
            let names = doc["components"]["schemas"][schema]["enum"]
                .as_array()
                .unwrap();
            for name in names {
                let body = json!({"image_url": "https://example.com/a.png", field: name});
                let input = crate::parse_value(&body).unwrap();
                assert_eq!(serde_json::to_value(&input).unwrap()[field], *name);
            }
            let body = json!({"image_url": "https://example.com/a.png", field: "nope"});
            let err = crate::parse_value(&body).unwrap_err();
            assert_eq!(err.errors()[0].loc, ["body", field], "{err:?}");
        }
    }

    #[test]
    fn one_document_per_app_with_fal_fields() {
        let all = openapi_document();
        assert_eq!(all["info"]["x-fal-apps"].as_array().unwrap().len(), 8);
        for app in App::ALL {
            let doc = openapi_document_for_app(app, "/queue");
            assert_eq!(doc["openapi"], OPENAPI_VERSION);
            assert_eq!(doc["info"]["x-fal-metadata"]["endpointId"], app.id());
            let name = format!("{}Input", schema_prefix(app));
            let input = &doc["components"]["schemas"][&name];
            // The all-apps document holds the same schema.
            assert_eq!(all["components"]["schemas"][&name], *input, "{app}");
            assert!(all["paths"][format!("/{}", app.id())]["post"].is_object());
            let props = input["properties"].as_object().unwrap();
            let names: Vec<&str> = props.keys().map(String::as_str).collect();
            let mut order: Vec<&str> = input["x-fal-order-properties"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(order, crate::input::fields(app), "{app}");
            order.sort_unstable();
            assert_eq!(order, names, "{app}");
            assert_eq!(props.contains_key("image_url"), app.takes_image(), "{app}");
            assert_eq!(
                props.contains_key("aspect_ratio"),
                !app.takes_image(),
                "{app}"
            );
            assert_eq!(
                props.contains_key("num_refine_inference_steps"),
                app.refines()
            );
            for f in ["negative_prompt", "guidance_scale", "acceleration"] {
                assert_eq!(props.contains_key(f), !app.distilled, "{app} {f}");
            }
            let required = if app.takes_image() {
                "image_url"
            } else {
                "prompt"
            };
            assert_eq!(input["required"], json!([required]), "{app}");
            assert_eq!(
                input["properties"]["prompt"].get("default").is_some(),
                app.takes_image(),
                "{app}: text-to-video has no default prompt"
            );
            let fps = if app.refines() { 30 } else { 15 };
            assert_eq!(input["properties"]["fps"]["default"], fps, "{app}");
            let (lo, hi, steps) = if app.distilled {
                (2, 16, 12)
            } else {
                (8, 50, 40)
            };
            let s = &input["properties"]["num_inference_steps"];
            assert_eq!(
                (s["minimum"].clone(), s["maximum"].clone()),
                (json!(lo), json!(hi))
            );
            assert_eq!(s["default"], steps, "{app}");
            if app.refines() {
                assert_eq!(
                    input["properties"]["num_refine_inference_steps"]["default"], steps,
                    "{app}"
                );
            }
            // Every $ref resolves inside the document.
            let text = doc.to_string();
            for part in text.split("\"#/components/schemas/").skip(1) {
                let target = part.split('"').next().unwrap();
                assert!(
                    doc["components"]["schemas"].get(target).is_some(),
                    "{app}: dangling $ref {target}"
                );
            }
        }
        assert_eq!(
            schema_prefix(
                App::from_id("fal-ai/longcat-video/distilled/text-to-video/480p").unwrap()
            ),
            "LongcatVideoDistilledTextToVideo480p"
        );
    }
}
