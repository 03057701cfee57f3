#!/usr/bin/env python3
"""Validates the Kubernetes manifests of deploy/k8s (or the directory given) offline.

- Kubernetes kinds: against the Kubernetes OpenAPI JSON schemas shipped in the PyPI package
  `kubernetes-validate` (strict: unknown fields are errors), for Kubernetes KUBERNETES.
- PodMonitor: against deploy/k8s/schemas/podmonitor-monitoring-v1.json, a JSON schema written
  from the Prometheus Operator's CRD (unknown fields are errors there too).
- kustomization.yaml: its `resources` exist and are every manifest of the directory except
  *.example.yaml (kustomize itself is not installable from the registries here).
A resource whose kind has no schema is an error, not a warning: nothing passes unchecked.

With --json, prints every resource of the directory as one JSON array (for tests/k8s_files.rs).
With --sync-rules, copies topology/gamification.toml into deploy/k8s/configmap.yaml.
Installed by scripts/install-deps.sh: pip install kubernetes-validate.
"""
import json
import os
import sys

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES = "1.29.0"
HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = os.path.join(HERE, "..", "deploy", "k8s", "schemas")
CUSTOM = {("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor-monitoring-v1.json"}
KUSTOMIZE_KEYS = {"apiVersion", "kind", "resources", "images", "namespace", "labels",
                  "commonAnnotations", "configMapGenerator", "secretGenerator", "patches"}


def load(directory):
    """(file name, resource) for every YAML document of the directory, sorted by file."""
    out = []
    for name in sorted(os.listdir(directory)):
        if name.endswith((".yaml", ".yml")):
            with open(os.path.join(directory, name)) as f:
                for doc in yaml.safe_load_all(f):
                    if doc:
                        out.append((name, doc))
    return out


def check_kustomization(directory, name, doc, manifests):
    errors = []
    if doc.get("apiVersion") != "kustomize.config.k8s.io/v1beta1":
        errors.append(f"{name}: apiVersion must be kustomize.config.k8s.io/v1beta1")
    unknown = set(doc) - KUSTOMIZE_KEYS
    if unknown:
        errors.append(f"{name}: unknown keys {sorted(unknown)}")
    listed = doc.get("resources", [])
    for r in listed:
        if not os.path.exists(os.path.join(directory, r)):
            errors.append(f"{name}: resource {r} does not exist")
    expected = sorted(m for m in manifests if m != name and not m.endswith(".example.yaml"))
    if sorted(listed) != expected:
        errors.append(f"{name}: resources {sorted(listed)} != the manifests {expected}")
    return errors


def validate(directory):
    resources = load(directory)
    manifests = sorted({name for name, _ in resources})
    errors, checked = [], 0
    for name, doc in resources:
        kind, api = doc.get("kind"), doc.get("apiVersion")
        what = f"{name}: {kind}/{doc.get('metadata', {}).get('name')}"
        if kind == "Kustomization":
            errors += check_kustomization(directory, name, doc, manifests)
        elif (api, kind) in CUSTOM:
            with open(os.path.join(SCHEMAS, CUSTOM[(api, kind)])) as f:
                schema = json.load(f)
            v = jsonschema.Draft202012Validator(schema)
            for e in sorted(v.iter_errors(doc), key=lambda e: list(e.path)):
                path = ".".join(str(p) for p in e.path)
                errors.append(f"{what}: {path}: {e.message}")
        else:
            try:
                kubernetes_validate.validate(doc, KUBERNETES, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                errors.append(f"{what}: {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError:
                errors.append(f"{what}: no schema for {api} {kind} (Kubernetes {KUBERNETES})")
        checked += 1
    return checked, errors


def sync_rules():
    """Rewrites the `gamification.toml: |` block (the last key) of configmap.yaml."""
    path = os.path.join(HERE, "..", "deploy", "k8s", "configmap.yaml")
    with open(os.path.join(HERE, "..", "topology", "gamification.toml")) as f:
        rules = f.read()
    with open(path) as f:
        text = f.read()
    marker = "  gamification.toml: |\n"
    head = text[:text.index(marker) + len(marker)]
    block = "".join(("    " + line if line.strip() else "") + "\n"
                    for line in rules.rstrip("\n").split("\n"))
    with open(path, "w") as f:
        f.write(head + block)
    with open(path) as f:
        assert yaml.safe_load(f)["data"]["gamification.toml"] == rules
    print(f"{path}: rules copied from topology/gamification.toml")


def main(argv):
    if "--sync-rules" in argv:
        sync_rules()
        return 0
    as_json = "--json" in argv
    args = [a for a in argv if a != "--json"]
    directory = args[0] if args else os.path.join(HERE, "..", "deploy", "k8s")
    if as_json:
        json.dump([{"file": n, "resource": d} for n, d in load(directory)], sys.stdout)
        return 0
    checked, errors = validate(directory)
    for e in errors:
        print(f"ERROR {e}")
    print(f"{checked} resources checked against Kubernetes {KUBERNETES} and the PodMonitor "
          f"schema: {len(errors)} errors")
    return 1 if errors or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
