//! The endpoint's OpenAPI document in fal's per-endpoint queue format (OpenAPI 3.0.4).
//!
//! Ranges, defaults and enum options come from the same constants the validator uses.

use longcat_core::{Acceleration, VideoOutputType, VideoQuality, VideoWriteMode, WireEnum};
use serde_json::{json, Value};

use crate::input::{limits, DEFAULT_NEGATIVE_PROMPT, DEFAULT_PROMPT};
use crate::ENDPOINT_ID;

/// Schema name prefix (PascalCase of the endpoint id).
pub const SCHEMA_PREFIX: &str = "LongcatVideoImageToVideo720p";

/// The document with `servers` pointing at `/queue` (relative to wherever it is served).
pub fn openapi_document() -> Value {
    openapi_document_for("/queue")
}

/// The document with `servers: [{"url": queue_base_url}]`.
pub fn openapi_document_for(queue_base_url: &str) -> Value {
    let input = format!("{SCHEMA_PREFIX}Input");
    let output = format!("{SCHEMA_PREFIX}Output");
    let input_ref = format!("#/components/schemas/{input}");
    let output_ref = format!("#/components/schemas/{output}");
    let request_id_param = json!({
        "name": "request_id", "in": "path", "required": true,
        "schema": {"type": "string", "description": "Request ID"}
    });
    json!({
        "openapi": "3.0.4",
        "info": {
            "title": format!("Queue OpenAPI for {ENDPOINT_ID}"),
            "version": "1.0.0",
            "description": "Generate long videos in 720p/30fps from images using LongCat Video (self-hosted).",
            "x-fal-metadata": {
                "endpointId": ENDPOINT_ID,
                "category": "image-to-video",
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
            "schemas": {
                "QueueStatus": queue_status_schema(),
                input.clone(): input_schema(),
                output.clone(): output_schema(),
                "File": file_schema(),
                "VideoOutputTypeEnum": enum_schema::<VideoOutputType>("VideoOutputTypeEnum",
                    "The output type of the generated video."),
                "VideoQualityEnum": enum_schema::<VideoQuality>("VideoQualityEnum",
                    "The quality of the generated video."),
                "VideoWriteModeEnum": enum_schema::<VideoWriteMode>("VideoWriteModeEnum",
                    "The write mode of the generated video."),
                "AccelerationEnum": enum_schema::<Acceleration>("AccelerationEnum",
                    "The acceleration level to use for the video generation.")
            }
        },
        "paths": {
            format!("/{ENDPOINT_ID}/requests/{{request_id}}/status"): {
                "get": {
                    "parameters": [request_id_param.clone(), {
                        "name": "logs", "in": "query", "required": false,
                        "schema": {"type": "number", "description": "Whether to include logs (`1`) in the response or not (`0`)."}
                    }],
                    "responses": {"200": {"description": "The request status.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/QueueStatus"}}}}}
                }
            },
            format!("/{ENDPOINT_ID}/requests/{{request_id}}/cancel"): {
                "put": {
                    "parameters": [request_id_param.clone()],
                    "responses": {"200": {"description": "The request was cancelled.",
                        "content": {"application/json": {"schema": {"type": "object",
                            "properties": {"success": {"type": "boolean", "description": "Whether the request was cancelled successfully."}}}}}}}
                }
            },
            format!("/{ENDPOINT_ID}"): {
                "post": {
                    "requestBody": {"required": true,
                        "content": {"application/json": {"schema": {"$ref": input_ref}}}},
                    "responses": {"200": {"description": "The request status.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/QueueStatus"}}}}}
                }
            },
            format!("/{ENDPOINT_ID}/requests/{{request_id}}"): {
                "get": {
                    "parameters": [request_id_param],
                    "responses": {"200": {"description": "Result of the request.",
                        "content": {"application/json": {"schema": {"$ref": output_ref}}}}}
                }
            }
        }
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

fn input_schema() -> Value {
    let order = crate::parse::FIELD_ORDER;
    let (g_lo, g_hi) = limits::GUIDANCE_SCALE;
    json!({
        "title": format!("{SCHEMA_PREFIX}Input"),
        "type": "object",
        "x-fal-order-properties": order,
        "required": ["image_url"],
        "properties": {
            "image_url": {"title": "Image URL", "type": "string",
                "description": "The URL of the image to generate a video from.",
                "examples": ["https://v3b.fal.media/files/b/zebra/trXRsbjJwy4Z3OEgbnB9a.jpg"]},
            "prompt": {"title": "Prompt", "type": "string",
                "description": "The prompt to guide the video generation.", "default": DEFAULT_PROMPT,
                "maxLength": limits::MAX_PROMPT_CHARS},
            "negative_prompt": {"title": "Negative Prompt", "type": "string",
                "description": "The negative prompt to use for the video generation.",
                "default": DEFAULT_NEGATIVE_PROMPT, "maxLength": limits::MAX_PROMPT_CHARS},
            "num_frames": int_field("Number of Frames", "The number of frames to generate.",
                limits::DEFAULT_NUM_FRAMES, limits::NUM_FRAMES),
            "num_inference_steps": int_field("Number of Inference Steps",
                "The number of inference steps to use for the video generation.",
                limits::DEFAULT_NUM_INFERENCE_STEPS, limits::NUM_INFERENCE_STEPS),
            "num_refine_inference_steps": int_field("Number of Refinement Inference Steps",
                "The number of inference steps to use for refinement.",
                limits::DEFAULT_NUM_REFINE_INFERENCE_STEPS, limits::NUM_REFINE_INFERENCE_STEPS),
            "guidance_scale": {"title": "Guidance Scale", "type": "number",
                "description": "The guidance scale to use for the video generation.",
                "default": limits::DEFAULT_GUIDANCE_SCALE, "minimum": g_lo, "maximum": g_hi},
            "fps": int_field("Frames per Second", "The frame rate of the generated video.",
                limits::DEFAULT_FPS, limits::FPS),
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
        }
    })
}

/// The schema of an enum: its wire names from the one table in `longcat-core`.
fn enum_schema<T: WireEnum>(title: &str, description: &str) -> Value {
    json!({"title": title, "type": "string", "enum": T::WIRE_NAMES, "description": description})
}

fn output_schema() -> Value {
    json!({
        "title": format!("{SCHEMA_PREFIX}Output"),
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

    #[test]
    fn document_has_fal_queue_shape() {
        let doc = openapi_document_for("http://127.0.0.1:8080/queue");
        assert_eq!(doc["openapi"], "3.0.4");
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
}
