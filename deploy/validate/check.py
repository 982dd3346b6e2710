"""Validates every deployment file in deploy/ offline; exits 1 on any error or warning.

- Kubernetes: each kustomization (the base and every overlay) is built with `kubectl kustomize`;
  every resource is validated with kubernetes-validate (its bundled schemas, --strict: unknown
  fields refused) against KUBERNETES_VERSION, except RabbitmqCluster resources, which are
  validated against the operator's CRD schema kept in schemas/ (check-jsonschema). Every YAML
  file under kubernetes/ must be part of some kustomization, so none escapes validation.
- docker compose: compose/compose.yaml against the compose-spec schema check-jsonschema bundles.

Run with the virtualenv's python (scripts/test does): python deploy/validate/check.py
"""

import pathlib
import subprocess
import sys
import tempfile

import yaml

KUBERNETES_VERSION = "1.33.0"
DEPLOY = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(sys.executable).parent
CRD_SCHEMAS = {"RabbitmqCluster": DEPLOY / "validate/schemas/rabbitmqcluster-v1beta1.json"}


def run(cmd):
    """Runs cmd; returns (ok, output). A warning anywhere in the output counts as a failure."""
    p = subprocess.run(cmd, capture_output=True, text=True)
    out = (p.stdout + p.stderr).strip()
    return p.returncode == 0 and "warn" not in out.lower(), out


def kustomizations():
    return sorted(p.parent for p in (DEPLOY / "kubernetes").rglob("kustomization.yaml"))


def listed_files(k):
    """The files a kustomization names (resources and patches that are files, not dirs)."""
    doc = yaml.safe_load((k / "kustomization.yaml").read_text())
    names = list(doc.get("resources", []))
    names += [p["path"] for p in doc.get("patches", []) if "path" in p]
    return {(k / n).resolve() for n in names if (k / n).is_file()}


def check_kustomization(k, tmp):
    ok, built = run(["kubectl", "kustomize", str(k)])
    if not ok:
        return [f"{k}: kubectl kustomize failed:\n{built}"]
    errors = []
    for i, doc in enumerate(yaml.safe_load_all(built)):
        if not doc:
            continue
        name = f"{doc['kind']}/{doc['metadata'].get('namespace', '-')}/{doc['metadata']['name']}"
        f = pathlib.Path(tmp) / f"{k.name}-{i}.yaml"
        f.write_text(yaml.safe_dump(doc))
        if doc["kind"] in CRD_SCHEMAS:
            schema = str(CRD_SCHEMAS[doc["kind"]])
            cmd = [str(BIN / "check-jsonschema"), "--schemafile", schema, str(f)]
        else:
            cmd = [str(BIN / "kubernetes-validate"), "--strict", "--quiet"]
            cmd += ["-k", KUBERNETES_VERSION, str(f)]
        ok, out = run(cmd)
        if not ok:
            errors.append(f"{k.relative_to(DEPLOY)}: {name}:\n{out}")
    return errors


def main():
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        ks = kustomizations()
        for k in ks:
            errors += check_kustomization(k, tmp)
            print(f"checked {k.relative_to(DEPLOY)}")
        covered = set().union(*(listed_files(k) for k in ks))
        for f in sorted((DEPLOY / "kubernetes").rglob("*.yaml")):
            if f.name != "kustomization.yaml" and f.resolve() not in covered:
                errors.append(f"{f.relative_to(DEPLOY)} is in no kustomization: nothing validates it")
    compose = DEPLOY / "compose/compose.yaml"
    cmd = [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose)]
    ok, out = run(cmd)
    if not ok:
        errors.append(f"{compose.relative_to(DEPLOY)}:\n{out}")
    print(f"checked {compose.relative_to(DEPLOY)}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
