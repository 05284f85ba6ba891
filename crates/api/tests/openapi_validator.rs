//! Every OpenAPI document (the all-apps one and each app's) validates as the version it
//! declares, checked by `openapi-spec-validator` (PyPI) from the tests' venv
//! (tests/clients/.venv, made by scripts/install-test-venv.sh). Without the venv the test is
//! skipped loudly; `LONGCAT_REQUIRE_OPENAPI_VALIDATOR=1` makes that a failure.

use std::path::PathBuf;
use std::process::Command;

use longcat_api::{openapi_document_for, openapi_document_for_app, App};

const SCRIPT: &str = r#"
import json, sys
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename
failed = 0
for path in sys.argv[1:]:
    spec, _ = read_from_filename(path)
    try:
        validate(spec)
    except Exception as e:
        failed += 1
        print(f"{path}: {e}", file=sys.stderr)
sys.exit(1 if failed else 0)
"#;

fn python() -> Option<PathBuf> {
    let python = std::env::var_os("LONGCAT_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/.venv/bin/python")
        });
    let ok = Command::new(&python)
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return Some(python);
    }
    let why = format!("no openapi-spec-validator in {}", python.display());
    if std::env::var("LONGCAT_REQUIRE_OPENAPI_VALIDATOR").as_deref() == Ok("1") {
        panic!("OpenAPI validation cannot run: {why}");
    }
    eprintln!("\n*** SKIPPED OpenAPI validation: {why} (run scripts/install-test-venv.sh) ***\n");
    None
}

#[test]
fn every_document_validates_as_its_declared_version() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut docs = vec![(
        "all".to_owned(),
        openapi_document_for("http://127.0.0.1:8080/queue"),
    )];
    for app in App::ALL {
        docs.push((
            app.path().replace('/', "_"),
            openapi_document_for_app(app, "http://127.0.0.1:8080/queue"),
        ));
    }
    let mut paths = Vec::new();
    for (name, doc) in &docs {
        assert_eq!(doc["openapi"], "3.1.0", "{name}");
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
        paths.push(path);
    }
    let out = Command::new(&python)
        .arg("-c")
        .arg(SCRIPT)
        .args(&paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator rejected a document:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The validator does reject a broken document (the test above can fail).
#[test]
fn the_validator_rejects_a_3_0_document_with_3_1_forms() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut doc = openapi_document_for("/queue");
    // What the documents used to declare: `type: "null"` in `anyOf` is not 3.0.
    doc["openapi"] = "3.0.4".into();
    let path = dir.path().join("old.json");
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = Command::new(&python)
        .arg("-c")
        .arg(SCRIPT)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a 3.0.4 document with 3.1 forms passed"
    );
}
