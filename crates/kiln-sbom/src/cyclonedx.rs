//! CycloneDX 1.6 JSON. The image is `metadata.component` (a container); it depends on
//! exactly one `operating-system` component, which depends on the OS packages (deb, apk),
//! and on every other package directly. trivy reads OS packages through that chain, so it
//! is not optional. Builder-stage packages carry `scope: excluded` and the property
//! `kiln:build-only`.

use serde_json::{Value, json};

use crate::spdx::{package_hash, resolve_depends};
use crate::{Package, Sbom, TOOL_VERSION, license};

/// The serial number: a name-based UUID (version 5 layout) from the image digest.
fn serial(sbom: &Sbom) -> String {
    let h = kiln_oci::Digest::sha256_of(format!("kiln-cyclonedx:{}", sbom.image).as_bytes());
    let mut b: Vec<u8> = hex::decode(h.hex()).expect("hex digest")[..16].to_vec();
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

fn bom_ref(p: &Package) -> String {
    format!("pkg-{}-{}", p.ecosystem.as_str(), package_hash(p))
}

fn licenses(p: &Package) -> Option<Value> {
    match p.licenses.as_slice() {
        [] => None,
        [one] => Some(match license::single_id(one) {
            Some(id) => json!([{"license": {"id": id}}]),
            None => match license::spdx_expression(one) {
                Some(e) => json!([{"expression": e}]),
                None => json!([{"license": {"name": one}}]),
            },
        }),
        many => Some(Value::Array(
            many.iter()
                .map(|l| match license::single_id(l) {
                    Some(id) => json!({"license": {"id": id}}),
                    None => json!({"license": {"name": l}}),
                })
                .collect(),
        )),
    }
}

/// The BOM as a JSON value.
pub fn document(sbom: &Sbom) -> Value {
    let refs: Vec<String> = sbom.packages.iter().map(bom_ref).collect();
    let mut components = vec![];
    if let Some(os) = &sbom.os {
        let mut c = json!({
            "type": "operating-system",
            "bom-ref": "os",
            "name": os.id,
            "version": os.version,
        });
        if let Some(p) = &os.pretty_name {
            c["description"] = json!(p);
        }
        components.push(c);
    }
    for (p, r) in sbom.packages.iter().zip(&refs) {
        let mut props = vec![json!({"name": "kiln:package-type", "value": p.ecosystem.as_str()})];
        if let Some(l) = &p.layer {
            props.push(json!({"name": "kiln:layer", "value": l.to_string()}));
        }
        for e in &p.evidence {
            props.push(json!({"name": "kiln:evidence", "value": e}));
        }
        for (k, v) in &p.properties {
            props.push(json!({"name": format!("kiln:{k}"), "value": v}));
        }
        if p.build_only {
            props.push(json!({"name": "kiln:build-only", "value": "true"}));
        }
        let mut c = json!({
            "type": "library",
            "bom-ref": r,
            "name": p.name,
            "version": p.version,
            "purl": p.purl,
            "properties": props,
        });
        if let Some(l) = licenses(p) {
            c["licenses"] = l;
        }
        if let Some(s) = p.supplier.as_ref().filter(|s| !s.trim().is_empty()) {
            c["supplier"] = json!({"name": s.lines().next().unwrap_or(s).trim()});
        }
        if p.build_only {
            c["scope"] = json!("excluded");
        }
        if let Some(g) = p
            .properties
            .get("group")
            .filter(|_| p.ecosystem == crate::Ecosystem::Java)
        {
            c["group"] = json!(g);
        }
        components.push(c);
    }
    let mut deps = vec![];
    let mut image_deps: Vec<String> = vec![];
    let mut os_deps: Vec<String> = vec![];
    if sbom.os.is_some() {
        image_deps.push("os".into());
    }
    for (p, r) in sbom.packages.iter().zip(&refs) {
        if p.ecosystem.is_os() && sbom.os.is_some() && !p.build_only {
            os_deps.push(r.clone());
        } else {
            image_deps.push(r.clone());
        }
    }
    image_deps.sort();
    os_deps.sort();
    deps.push(json!({"ref": "image", "dependsOn": image_deps}));
    if sbom.os.is_some() {
        deps.push(json!({"ref": "os", "dependsOn": os_deps}));
    }
    for (i, d) in resolve_depends(&sbom.packages).into_iter().enumerate() {
        let mut on: Vec<String> = d.into_iter().map(|j| refs[j].clone()).collect();
        on.sort();
        deps.push(json!({"ref": refs[i], "dependsOn": on}));
    }
    deps.sort_by(|a, b| a["ref"].as_str().cmp(&b["ref"].as_str()));
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial(sbom),
        "version": 1,
        "metadata": {
            "timestamp": sbom.created,
            "tools": {"components": [{"type": "application", "name": "kiln", "version": TOOL_VERSION}]},
            "component": {
                "type": "container",
                "bom-ref": "image",
                "name": sbom.image.to_string(),
                "version": sbom.image.to_string(),
                "properties": [{"name": "kiln:platform", "value": sbom.platform}],
            },
        },
        "components": components,
        "dependencies": deps,
    })
}

/// The BOM as pretty JSON bytes (keys sorted), ending in a newline.
pub fn to_json(sbom: &Sbom) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(&document(sbom)).expect("JSON values serialise");
    out.push(b'\n');
    out
}
