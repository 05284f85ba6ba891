use serde_json::json;

use super::*;
use crate::input::{limits, DEFAULT_NEGATIVE_PROMPT, DEFAULT_PROMPT};
use longcat_core::Acceleration;
use longcat_media::{VideoOutputType, VideoQuality, VideoWriteMode};

const IMG: &str = "https://example.com/cat.png";

fn parse(v: serde_json::Value) -> Result<I2vInput, ValidationErrors> {
    parse_input(v.to_string().as_bytes())
}

fn only_error(v: serde_json::Value) -> ValidationError {
    let errs = parse(v).expect_err("should fail");
    assert_eq!(errs.0.len(), 1, "{errs:?}");
    errs.0.into_iter().next().unwrap()
}

#[test]
fn defaults_match_the_seed_document() {
    let i = parse(json!({"image_url": IMG})).unwrap();
    assert_eq!(i.image_url, IMG);
    assert_eq!(i.prompt, DEFAULT_PROMPT);
    assert_eq!(i.negative_prompt, DEFAULT_NEGATIVE_PROMPT);
    assert_eq!(i.num_frames, 162);
    assert_eq!(i.num_inference_steps, 40);
    assert_eq!(i.num_refine_inference_steps, 40);
    assert_eq!(i.guidance_scale, 4.0);
    assert_eq!(i.fps, 30);
    assert_eq!(i.seed, None);
    assert!(!i.enable_prompt_expansion);
    assert!(i.enable_safety_checker);
    assert_eq!(i.video_output_type, VideoOutputType::X264Mp4);
    assert_eq!(i.video_quality, VideoQuality::High);
    assert_eq!(i.video_write_mode, VideoWriteMode::Balanced);
    assert!(!i.sync_mode);
    assert_eq!(i.acceleration, Acceleration::Regular);
    // Strict serde gives the same defaults.
    let strict: I2vInput = serde_json::from_value(json!({"image_url": IMG})).unwrap();
    assert_eq!(strict, i);
    assert_eq!(I2vInput::new(IMG), i);
}

#[test]
fn full_example_parses_and_round_trips() {
    let body = json!({
        "image_url": IMG, "prompt": "a cat", "negative_prompt": "blur",
        "num_frames": 17, "num_inference_steps": 8, "num_refine_inference_steps": 50,
        "guidance_scale": 1, "fps": 60, "seed": 916581,
        "enable_prompt_expansion": true, "enable_safety_checker": false,
        "video_output_type": "VP9 (.webm)", "video_quality": "maximum",
        "video_write_mode": "small", "sync_mode": true, "acceleration": "none"
    });
    let i = parse(body).unwrap();
    assert_eq!(i.num_frames, 17);
    assert_eq!(i.num_refine_inference_steps, 50);
    assert_eq!(i.guidance_scale, 1.0);
    assert_eq!(i.fps, 60);
    assert_eq!(i.seed, Some(916581));
    assert!(i.enable_prompt_expansion && !i.enable_safety_checker && i.sync_mode);
    assert_eq!(i.video_output_type, VideoOutputType::Vp9Webm);
    assert_eq!(i.video_quality, VideoQuality::Maximum);
    assert_eq!(i.video_write_mode, VideoWriteMode::Small);
    assert_eq!(i.acceleration, Acceleration::None);
    // Serialized form is the wire form and parses back to the same value.
    let wire = serde_json::to_value(&i).unwrap();
    assert_eq!(wire["video_output_type"], "VP9 (.webm)");
    assert_eq!(parse(wire.clone()).unwrap(), i);
    assert_eq!(serde_json::from_value::<I2vInput>(wire).unwrap(), i);
}

#[test]
fn unknown_fields_are_ignored() {
    let i = parse(json!({"image_url": IMG, "foo": 1, "nested": {"x": []}})).unwrap();
    assert_eq!(i.num_frames, 162);
}

#[test]
fn image_url_missing_wrong_type_empty_or_bad_scheme() {
    let e = only_error(json!({}));
    assert_eq!(e.loc, vec!["body", "image_url"]);
    assert_eq!(e.error_type, "missing");
    assert_eq!(e.msg, "Field required");

    let e = only_error(json!({"image_url": 5}));
    assert_eq!(e.error_type, "string_type");
    assert_eq!(e.input, Some(json!(5)));

    let e = only_error(json!({"image_url": null}));
    assert_eq!(e.error_type, "string_type");

    let e = only_error(json!({"image_url": ""}));
    assert_eq!(e.error_type, "string_too_short");

    let e = only_error(json!({"image_url": "ftp://x/y.png"}));
    assert_eq!(e.loc, vec!["body", "image_url"]);
    assert_eq!(e.error_type, "value_error");

    for ok in [
        "http://a/b.png",
        "HTTPS://a/b.png",
        "data:image/png;base64,AAAA",
    ] {
        assert!(parse(json!({"image_url": ok})).is_ok(), "{ok}");
    }
}

#[test]
fn string_fields_reject_non_strings() {
    for field in ["prompt", "negative_prompt"] {
        let e = only_error(json!({"image_url": IMG, field: 1}));
        assert_eq!(e.loc, vec!["body", field]);
        assert_eq!(e.error_type, "string_type");
        assert_eq!(e.msg, "Input should be a valid string");
    }
    // Empty strings are allowed (fal's schema has no minimum length).
    assert_eq!(
        parse(json!({"image_url": IMG, "prompt": ""}))
            .unwrap()
            .prompt,
        ""
    );
}

fn int_fields() -> [(&'static str, (u32, u32)); 4] {
    [
        ("num_frames", limits::NUM_FRAMES),
        ("num_inference_steps", limits::NUM_INFERENCE_STEPS),
        (
            "num_refine_inference_steps",
            limits::NUM_REFINE_INFERENCE_STEPS,
        ),
        ("fps", limits::FPS),
    ]
}

#[test]
fn integer_ranges_are_inclusive() {
    for (field, (lo, hi)) in int_fields() {
        for ok in [lo, hi] {
            assert!(
                parse(json!({"image_url": IMG, field: ok})).is_ok(),
                "{field}={ok}"
            );
        }
        let e = only_error(json!({"image_url": IMG, field: lo - 1}));
        assert_eq!(e.loc, vec!["body", field]);
        assert_eq!(e.error_type, "greater_than_equal");
        assert_eq!(
            e.msg,
            format!("Input should be greater than or equal to {lo}")
        );
        assert_eq!(e.ctx, Some(json!({"ge": lo})));
        assert_eq!(e.input, Some(json!(lo - 1)));

        let e = only_error(json!({"image_url": IMG, field: hi + 1}));
        assert_eq!(e.error_type, "less_than_equal");
        assert_eq!(e.msg, format!("Input should be less than or equal to {hi}"));
        assert_eq!(e.ctx, Some(json!({"le": hi})));

        let e = only_error(json!({"image_url": IMG, field: -5}));
        assert_eq!(e.error_type, "greater_than_equal");
        assert_eq!(e.input, Some(json!(-5)));

        let e = only_error(json!({"image_url": IMG, field: 1u64 << 40}));
        assert_eq!(e.error_type, "less_than_equal");
        assert_eq!(e.input, Some(json!(1u64 << 40)));
    }
}

#[test]
fn integers_are_lax_like_pydantic() {
    let i = parse(json!({"image_url": IMG, "num_frames": "33", "fps": 24.0})).unwrap();
    assert_eq!(i.num_frames, 33);
    assert_eq!(i.fps, 24);

    let e = only_error(json!({"image_url": IMG, "num_frames": 33.5}));
    assert_eq!(e.error_type, "int_from_float");
    let e = only_error(json!({"image_url": IMG, "num_frames": "many"}));
    assert_eq!(e.error_type, "int_parsing");
    let e = only_error(json!({"image_url": IMG, "num_frames": null}));
    assert_eq!(e.error_type, "int_type");
    let e = only_error(json!({"image_url": IMG, "num_frames": [1]}));
    assert_eq!(e.error_type, "int_type");
    assert_eq!(e.msg, "Input should be a valid integer");
}

#[test]
fn guidance_scale_is_a_ranged_float() {
    let i = parse(json!({"image_url": IMG, "guidance_scale": 7.5})).unwrap();
    assert_eq!(i.guidance_scale, 7.5);
    let i = parse(json!({"image_url": IMG, "guidance_scale": "2.5"})).unwrap();
    assert_eq!(i.guidance_scale, 2.5);
    assert!(parse(json!({"image_url": IMG, "guidance_scale": 10})).is_ok());

    let e = only_error(json!({"image_url": IMG, "guidance_scale": 0.5}));
    assert_eq!(e.error_type, "greater_than_equal");
    assert_eq!(e.msg, "Input should be greater than or equal to 1");
    let e = only_error(json!({"image_url": IMG, "guidance_scale": 10.01}));
    assert_eq!(e.error_type, "less_than_equal");
    let e = only_error(json!({"image_url": IMG, "guidance_scale": "x"}));
    assert_eq!(e.error_type, "float_parsing");
    let e = only_error(json!({"image_url": IMG, "guidance_scale": {}}));
    assert_eq!(e.error_type, "float_type");
}

#[test]
fn seed_is_optional_nullable_and_non_negative() {
    assert_eq!(
        parse(json!({"image_url": IMG, "seed": null})).unwrap().seed,
        None
    );
    assert_eq!(
        parse(json!({"image_url": IMG, "seed": 0})).unwrap().seed,
        Some(0)
    );
    assert_eq!(
        parse(json!({"image_url": IMG, "seed": u64::MAX}))
            .unwrap()
            .seed,
        Some(u64::MAX)
    );
    assert_eq!(
        parse(json!({"image_url": IMG, "seed": "42"})).unwrap().seed,
        Some(42)
    );
    let e = only_error(json!({"image_url": IMG, "seed": -1}));
    assert_eq!(e.loc, vec!["body", "seed"]);
    assert_eq!(e.error_type, "greater_than_equal");
    let e = only_error(json!({"image_url": IMG, "seed": "abc"}));
    assert_eq!(e.error_type, "int_parsing");
    let e = only_error(json!({"image_url": IMG, "seed": 1.5}));
    assert_eq!(e.error_type, "int_from_float");
}

#[test]
fn booleans_are_lax_like_pydantic() {
    for field in [
        "enable_prompt_expansion",
        "enable_safety_checker",
        "sync_mode",
    ] {
        for (v, want) in [
            (json!(true), true),
            (json!(false), false),
            (json!(1), true),
            (json!(0), false),
            (json!("yes"), true),
            (json!("off"), false),
            (json!("True"), true),
        ] {
            let i = parse(json!({"image_url": IMG, field: v})).unwrap();
            let got = match field {
                "enable_prompt_expansion" => i.enable_prompt_expansion,
                "enable_safety_checker" => i.enable_safety_checker,
                _ => i.sync_mode,
            };
            assert_eq!(got, want, "{field}={v}");
        }
        let e = only_error(json!({"image_url": IMG, field: "maybe"}));
        assert_eq!(e.loc, vec!["body", field]);
        assert_eq!(e.error_type, "bool_parsing");
        let e = only_error(json!({"image_url": IMG, field: 2}));
        assert_eq!(e.error_type, "bool_parsing");
        let e = only_error(json!({"image_url": IMG, field: null}));
        assert_eq!(e.error_type, "bool_type");
        assert_eq!(e.msg, "Input should be a valid boolean");
    }
}

#[test]
fn enums_accept_exact_names_only() {
    let cases: [(&str, &[&str]); 4] = [
        (
            "video_output_type",
            &[
                "X264 (.mp4)",
                "VP9 (.webm)",
                "PRORES4444 (.mov)",
                "GIF (.gif)",
            ],
        ),
        ("video_quality", &["low", "medium", "high", "maximum"]),
        ("video_write_mode", &["fast", "balanced", "small"]),
        ("acceleration", &["none", "regular"]),
    ];
    for (field, options) in cases {
        for o in options {
            let i = parse(json!({"image_url": IMG, field: o})).unwrap();
            let back = serde_json::to_value(&i).unwrap();
            assert_eq!(back[field], json!(o));
        }
        for bad in [json!("HIGH"), json!("x264"), json!(1), json!(null)] {
            let e = only_error(json!({"image_url": IMG, field: bad.clone()}));
            assert_eq!(e.loc, vec!["body", field]);
            assert_eq!(e.error_type, "enum");
            assert_eq!(e.input, Some(bad));
            assert!(e.msg.starts_with("Input should be '"), "{}", e.msg);
        }
    }
    let e = only_error(json!({"image_url": IMG, "video_quality": "best"}));
    assert_eq!(
        e.msg,
        "Input should be 'low', 'medium', 'high' or 'maximum'"
    );
}

#[test]
fn all_errors_are_reported_in_schema_order() {
    let errs = parse(json!({
        "acceleration": "fast", "fps": 0, "num_frames": "x", "prompt": 3
    }))
    .unwrap_err();
    let fields: Vec<&str> = errs.0.iter().map(|e| e.loc[1].as_str()).collect();
    assert_eq!(
        fields,
        ["image_url", "prompt", "num_frames", "fps", "acceleration"]
    );
    let body = errs.to_body();
    assert_eq!(body["detail"].as_array().unwrap().len(), 5);
    assert_eq!(
        body["detail"][0],
        json!({"loc": ["body", "image_url"], "msg": "Field required", "type": "missing"})
    );
}

#[test]
fn body_level_errors() {
    let e = parse_input(b"").unwrap_err();
    assert_eq!(e.0[0].loc, vec!["body"]);
    assert_eq!(e.0[0].error_type, "missing");

    let e = parse_input(b"{not json").unwrap_err();
    assert_eq!(e.0[0].loc, vec!["body"]);
    assert_eq!(e.0[0].error_type, "json_invalid");
    assert!(e.0[0].ctx.is_some());

    for body in [&b"[1]"[..], b"\"x\"", b"null", b"3"] {
        let e = parse_input(body).unwrap_err();
        assert_eq!(e.0[0].loc, vec!["body"]);
        assert_eq!(e.0[0].error_type, "model_attributes_type");
    }
}

#[test]
fn validate_checks_a_built_input() {
    let mut i = I2vInput::new(IMG);
    assert!(i.validate().is_ok());
    i.num_frames = 5;
    i.guidance_scale = f64::NAN;
    let errs = i.validate().unwrap_err();
    let fields: Vec<&str> = errs.0.iter().map(|e| e.loc[1].as_str()).collect();
    assert_eq!(fields, ["num_frames", "guidance_scale"]);
}

#[test]
fn cost_follows_num_frames() {
    let i = parse(json!({"image_url": IMG, "num_frames": 150})).unwrap();
    assert!((i.billable_seconds() - 10.0).abs() < 1e-12);
    assert!((i.estimated_cost_usd() - 0.25).abs() < 1e-12);
    let o = i.video_options();
    assert_eq!(o.fps, 30);
}

#[test]
fn text_fields_are_capped_in_characters() {
    let max = limits::MAX_PROMPT_CHARS;
    for field in ["prompt", "negative_prompt"] {
        // Exactly at the cap, in multi-byte characters: accepted.
        let at_cap = "é".repeat(max);
        assert!(parse(json!({"image_url": IMG, field: at_cap})).is_ok());
        let e = only_error(json!({"image_url": IMG, field: "a".repeat(max + 1)}));
        assert_eq!(e.loc, vec!["body", field]);
        assert_eq!(e.error_type, "string_too_long");
        assert_eq!(
            e.msg,
            format!("String should have at most {max} characters")
        );
        assert_eq!(e.ctx, Some(json!({ "max_length": max })));
    }
}

#[test]
fn echoed_inputs_are_truncated() {
    use crate::validation::echo_limits;
    // A 10 MB prompt and a 10 MB bad image_url: the 422 body stays small.
    let huge = "x".repeat(10 << 20);
    let errs = parse(json!({"image_url": format!("ftp://{huge}"), "prompt": huge})).unwrap_err();
    assert_eq!(errs.0.len(), 2, "{errs:?}");
    let body = errs.to_body().to_string();
    assert!(body.len() < 4096, "422 body is {} bytes", body.len());
    for e in &errs.0 {
        let echoed = e.input.as_ref().and_then(|v| v.as_str()).unwrap();
        assert_eq!(echoed.chars().count(), echo_limits::MAX_STRING_CHARS + 1);
        assert!(echoed.ends_with('…'));
    }
    // Wrong-typed huge values (arrays, objects) are bounded too.
    let many: Vec<String> = (0..100_000).map(|i| format!("{i}{huge:.300}")).collect();
    let nested = json!({"a": {"b": {"c": {"d": many.clone()}}}});
    let errs =
        parse(json!({"image_url": IMG, "prompt": many, "negative_prompt": nested})).unwrap_err();
    assert!(errs.to_body().to_string().len() < 64 << 10);
    let arr = errs.0[0].input.as_ref().unwrap().as_array().unwrap();
    assert_eq!(arr.len(), echo_limits::MAX_ITEMS + 1);
    assert_eq!(arr[echo_limits::MAX_ITEMS], json!("…"));
    // A whole huge body that is not an object: its echo is bounded as well.
    let errs = parse(json!(many)).unwrap_err();
    assert!(errs.to_body().to_string().len() < 64 << 10);
    // Short values are echoed unchanged.
    let e = only_error(json!({"image_url": "ftp://x/y.png"}));
    assert_eq!(e.input, Some(json!("ftp://x/y.png")));
}

// ---- the eight apps ---------------------------------------------------------------------

use longcat_core::{App, AspectRatio};

fn app(id: &str) -> App {
    App::from_id(id).unwrap()
}

const T2V_480: &str = "fal-ai/longcat-video/text-to-video/480p";
const I2V_480: &str = "fal-ai/longcat-video/image-to-video/480p";
const D_T2V_720: &str = "fal-ai/longcat-video/distilled/text-to-video/720p";
const D_I2V_480: &str = "fal-ai/longcat-video/distilled/image-to-video/480p";

/// The smallest valid body of `app`.
fn minimal(app: App) -> serde_json::Value {
    if app.takes_image() {
        json!({"image_url": IMG})
    } else {
        json!({"prompt": "a cat"})
    }
}

#[test]
fn every_app_has_fal_defaults() {
    for a in App::ALL {
        let i = parse_value_for(a, &minimal(a)).unwrap();
        assert_eq!(i.app, a);
        assert_eq!(i.fps, if a.refines() { 30 } else { 15 }, "{a}");
        let steps = if a.distilled { 12 } else { 40 };
        assert_eq!(i.num_inference_steps, steps, "{a}");
        assert_eq!(i.num_frames, 162);
        assert_eq!(i.aspect_ratio, AspectRatio::Landscape);
        let wire = serde_json::to_value(&i).unwrap();
        let keys: Vec<&str> = wire
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut want = crate::input::fields(a);
        want.sort_unstable();
        assert_eq!(keys, want, "{a}: only the app's fields");
        if a.refines() {
            assert_eq!(wire["num_refine_inference_steps"], steps, "{a}");
        }
        // The wire form parses back to the same input.
        assert_eq!(parse_value_for(a, &wire).unwrap(), i, "{a}");
    }
}

#[test]
fn text_to_video_requires_a_prompt_and_takes_no_image() {
    let a = app(T2V_480);
    let err = parse_value_for(a, &json!({"image_url": IMG})).unwrap_err();
    assert_eq!(
        err.to_body(),
        json!({"detail": [{"loc": ["body", "prompt"], "msg": "Field required", "type": "missing"}]})
    );
    // An image_url is not a field of text-to-video: ignored like any unknown field.
    let i = parse_value_for(a, &json!({"prompt": "p", "image_url": 5})).unwrap();
    assert_eq!(i.image_url, "");
    assert_eq!(i.prompt, "p");
    // aspect_ratio: the three wire names, anything else a 422 enum error.
    for (name, want) in [
        ("16:9", AspectRatio::Landscape),
        ("9:16", AspectRatio::Portrait),
        ("1:1", AspectRatio::Square),
    ] {
        let i = parse_value_for(a, &json!({"prompt": "p", "aspect_ratio": name})).unwrap();
        assert_eq!(i.aspect_ratio, want);
    }
    let err = parse_value_for(a, &json!({"prompt": "p", "aspect_ratio": "4:3"})).unwrap_err();
    let e = &err.errors()[0];
    assert_eq!(e.loc, ["body", "aspect_ratio"]);
    assert_eq!(e.error_type, "enum");
    assert_eq!(e.msg, "Input should be '16:9', '9:16' or '1:1'");
    // A prompt of the wrong type is a string_type error.
    let err = parse_value_for(a, &json!({"prompt": 3})).unwrap_err();
    assert_eq!(err.errors()[0].error_type, "string_type");
}

#[test]
fn image_to_video_480p_requires_image_and_ignores_aspect_ratio() {
    let a = app(I2V_480);
    let err = parse_value_for(a, &json!({"prompt": "p"})).unwrap_err();
    assert_eq!(err.errors().len(), 1);
    assert_eq!(err.errors()[0].loc, ["body", "image_url"]);
    assert_eq!(err.errors()[0].error_type, "missing");
    let i = parse_value_for(
        a,
        &json!({"image_url": IMG, "aspect_ratio": "bogus",
        "num_refine_inference_steps": 1000}),
    )
    .unwrap();
    // 480p has no refinement field: out-of-range values there are not this app's business.
    assert_eq!(i.num_refine_inference_steps, 40);
    assert_eq!(i.aspect_ratio, AspectRatio::Landscape);
}

#[test]
fn distilled_ranges_and_dropped_fields() {
    let a = app(D_T2V_720);
    for (steps, ok) in [(1, false), (2, true), (16, true), (17, false), (40, false)] {
        let r = parse_value_for(a, &json!({"prompt": "p", "num_inference_steps": steps}));
        assert_eq!(r.is_ok(), ok, "{steps}: {r:?}");
        if let Err(e) = r {
            let e = &e.errors()[0];
            assert_eq!(e.loc, ["body", "num_inference_steps"]);
            let (ty, bound) = if steps < 2 {
                ("greater_than_equal", json!({"ge": 2}))
            } else {
                ("less_than_equal", json!({"le": 16}))
            };
            assert_eq!((e.error_type.as_str(), e.ctx.clone()), (ty, Some(bound)));
        }
    }
    // A huge value is reported with the distilled bound too.
    let err = parse_value_for(a, &json!({"prompt": "p", "num_inference_steps": -5})).unwrap_err();
    assert_eq!(err.errors()[0].ctx, Some(json!({"ge": 2})));
    // Refinement keeps today's range on distilled 720p.
    let err =
        parse_value_for(a, &json!({"prompt": "p", "num_refine_inference_steps": 7})).unwrap_err();
    assert_eq!(err.errors()[0].loc, ["body", "num_refine_inference_steps"]);
    // guidance_scale, negative_prompt and acceleration are not distilled fields: ignored,
    // even when they would be invalid for a base app.
    let i = parse_value_for(
        app(D_I2V_480),
        &json!({"image_url": IMG, "guidance_scale": 99, "acceleration": "turbo",
                "negative_prompt": 1}),
    )
    .unwrap();
    assert_eq!(i.guidance_scale, limits::DEFAULT_GUIDANCE_SCALE);
    let base = parse_value_for(
        App::DEFAULT,
        &json!({"image_url": IMG, "guidance_scale": 99}),
    );
    assert!(base.is_err());
}

#[test]
fn lax_coercions_apply_to_every_app() {
    for a in App::ALL {
        let mut body = minimal(a);
        body["num_frames"] = json!("33");
        body["fps"] = json!(24.0);
        body["sync_mode"] = json!("yes");
        let i = parse_value_for(a, &body).unwrap();
        assert_eq!((i.num_frames, i.fps, i.sync_mode), (33, 24, true), "{a}");
        let mut body = minimal(a);
        body["num_frames"] = json!(5);
        body["fps"] = json!("x");
        let err = parse_value_for(a, &body).unwrap_err();
        let types: Vec<&str> = err.errors().iter().map(|e| e.error_type.as_str()).collect();
        assert_eq!(types, ["greater_than_equal", "int_parsing"], "{a}");
    }
}
